"""The build side treats its own cache as untrusted and refuses bad input before it writes anything.

Cache entries verified on read (a damaged one is rebuilt with a warning and the shards equal a clean
build's), output file modes follow the umask, bad images and names are one-line errors, ``--set`` is
checked before work, the output folder is claimed only for a build that can run, never an input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthgen.generator import diskspace, preflight
from synthgen.generator.cli import main
from synthgen.generator.config import BuildConfig
from synthgen.generator.datasets import demo
from synthgen.generator.pipeline import build
from synthgen.generator.shards.manifest import BUILD_FILE
from synthgen.generator.shards.reader import read_manifest
from test_bad_input import _category, _run  # noqa: I001  (tests/ is on the path: pytest's rootdir import)


def _args(root: Path, out: Path, *extra: str, strategy: str = "cutpaste") -> list[str]:
    return ["build", "--dataset", "mvtec_ad", "--root", str(root), "--category", "widget", "--strategy", strategy,
            "--image-size", "32", "--out", str(out), "--quiet", "--device", "cpu", *extra]


def _one_line_error(code: int, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("synthgen: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def data(tmp_path) -> Path:
    """Dataset root with the widget category; outputs go beside it, in tmp_path."""
    _category(tmp_path / "data")
    return tmp_path / "data"


# ----- cache entries carry their hash ---------------------------------------------------------------


def _damage_truncate(stack: Path) -> None:
    stack.write_bytes(stack.read_bytes()[:-1000])


def _damage_flip(stack: Path) -> None:
    data = bytearray(stack.read_bytes())
    data[len(data) // 2] ^= 0x10
    stack.write_bytes(bytes(data))


def _damage_record(stack: Path) -> None:
    record = stack.with_suffix(".json")
    record.write_text(json.dumps({**json.loads(record.read_text()), "sha256": "0" * 64}))


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_flip, _damage_record], ids=["truncated", "flipped", "wrong-hash"])
def test_damaged_source_stack_is_rebuilt_and_shards_equal_a_clean_build(data, tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("SYNTHGEN_CACHE", str(tmp_path / "cache"))
    main(_args(data, tmp_path / "clean"))
    (stack,) = (tmp_path / "cache" / "sources").glob("*.npy")
    damage(stack)
    capsys.readouterr()
    main(_args(data, tmp_path / "again"))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"synthgen: warning: {stack}: damaged cache entry"), err
    assert [s["sha256"] for s in read_manifest(tmp_path / "again")["shards"]] == \
        [s["sha256"] for s in read_manifest(tmp_path / "clean")["shards"]]
    main(_args(data, tmp_path / "third"))  # the rebuilt entry verifies: no warning
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe not utf-8", b'{"config_hash": '], ids=["a-list", "not-utf8", "broken"])
def test_damaged_sidecar_is_redone_and_damaged_build_record_is_one_line(data, tmp_path, capsys, content):
    """Sidecars and build.json are synthgen's own records, but a folder can be handed around: a damaged
    sidecar makes its shard be rebuilt (same bytes), a damaged build.json is one line, never a traceback."""
    out = tmp_path / "out"
    main(_args(data, out))
    before = {s["file"]: s["sha256"] for s in read_manifest(out)["shards"]}
    (sidecar,) = [p for p in out.glob("*.json") if p.name not in (BUILD_FILE, "manifest.json")][:1]
    sidecar.write_bytes(content)
    (out / "manifest.json").unlink()
    main(_args(data, out))
    assert {s["file"]: s["sha256"] for s in read_manifest(out)["shards"]} == before
    (out / BUILD_FILE).write_bytes(content)
    capsys.readouterr()
    _one_line_error(*_run(capsys, _args(data, out)), str(out / BUILD_FILE), "unreadable")


def test_damaged_cached_demo_is_rendered_again(tmp_path):
    root = demo.ensure_demo(tmp_path)
    image = sorted((root / demo.CATEGORY / "train" / "good").iterdir())[0]
    clean = image.read_bytes()
    image.write_bytes(clean[: len(clean) // 2])
    with pytest.warns(UserWarning, match="damaged cached demo dataset"):
        demo.ensure_demo(tmp_path)
    assert image.read_bytes() == clean


# ----- file modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_build_outputs_get_the_mode_of_an_ordinary_file(data, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        main(_args(data, tmp_path / "out"))
        (tmp_path / "plain").write_text("x")
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        os.umask(old)
    assert (tmp_path / "plain").stat().st_mode & 0o777 == mode
    files = sorted((tmp_path / "out").iterdir())
    assert {p.suffix for p in files} == {".h5", ".json"} and len(files) >= 4  # shard, sidecar, build, manifest
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(mode) for p in files}
    old = os.umask(umask)
    try:
        rendered = demo.render_demo(tmp_path / "demo")
    finally:
        os.umask(old)
    assert rendered.stat().st_mode & 0o777 == 0o777 & ~umask  # a folder, as os.mkdir makes it


# ----- images and names -----------------------------------------------------------------------------


def test_16_bit_rgb_png_is_refused(data, tmp_path, capsys):
    import cv2

    bad = data / "widget" / "train" / "good" / "002.png"
    cv2.imwrite(str(bad), np.random.default_rng(0).integers(0, 65535, (48, 48, 3), dtype=np.uint16))
    assert Image.open(bad).mode == "RGB"  # what PIL says: it would read the file as 8-bit
    code, err = _run(capsys, _args(data, tmp_path / "out"))
    _one_line_error(code, err, str(bad), "16-bit")
    assert not (tmp_path / "out").exists()


def test_dangling_symlink_is_named(data, tmp_path, capsys):
    link = data / "widget" / "train" / "good" / "009.png"
    link.symlink_to(data / "gone.png")
    code, err = _run(capsys, _args(data, tmp_path / "out"))
    _one_line_error(code, err, str(link), "symbolic link to a missing file")
    assert not (tmp_path / "out").exists()


def test_non_utf8_file_name_is_named_by_its_bytes(data, tmp_path, capsys):
    folder = data / "widget" / "train" / "good"
    name = b"caf\xe9.png"  # Latin-1, not UTF-8
    try:
        fd = os.open(os.fsencode(folder) + b"/" + name, os.O_CREAT | os.O_WRONLY, 0o644)
    except OSError as e:  # some filesystems insist on UTF-8 names
        pytest.skip(f"this filesystem refuses a non-UTF-8 name: {e}")
    os.write(fd, (folder / "000.png").read_bytes())
    os.close(fd)
    code, err = _run(capsys, _args(data, tmp_path / "out"))
    _one_line_error(code, err, str(folder), repr(name), "not valid UTF-8")


def test_error_naming_a_non_utf8_path_is_printable(tmp_path, capsys):
    """A path with surrogate escapes (a non-UTF-8 name on disk) is shown escaped, not a crash while reporting."""
    missing = tmp_path / os.fsdecode(b"caf\xe9")
    line = _one_line_error(*_run(capsys, _args(missing, tmp_path / "out")), "dataset root not found")
    assert "caf\\udce9" in line


@pytest.mark.parametrize("limit_factor, kind", [(0.9, "warning"), (0.4, "error")])
def test_decompression_bomb_is_refused(data, tmp_path, capsys, monkeypatch, limit_factor, kind):
    """PIL warns above MAX_IMAGE_PIXELS and raises above twice that: both are one-line errors."""
    bomb = data / "widget" / "train" / "good" / "001.png"
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(300 * 300 * limit_factor))
    code, err = _run(capsys, _args(data, tmp_path / "out"))
    _one_line_error(code, err, str(bomb), "decompression bomb")


# ----- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting, needle", [
    ("nosuch.jitter=0.1", "unknown strategy 'nosuch'"),
    ("draem.beta=0.1", "strategy draem is not in this build"),
    ("cutpaste.nokey=1", "cutpaste.nokey: unknown option of cutpaste"),
    ("cutpaste.jitter=7", "cutpaste.jitter: must be a number in [0.0, 0.5]"),
    ("cutpaste.area_min=0.5", "area_min: 0.5 is above area_max"),
])
def test_bad_set_is_refused_before_anything_is_written(data, tmp_path, capsys, setting, needle):
    code, err = _run(capsys, _args(data, tmp_path / "out", "--set", setting))
    _one_line_error(code, err, needle)
    assert not (tmp_path / "out").exists()


def test_every_strategys_defaults_are_valid_options():
    """read_options with no --set gives each strategy's defaults; given back as --set they pass the check."""
    from synthgen.generator.strategies import get_strategy, strategy_names
    from synthgen.generator.strategies.base import StrategyContext, resolve_strategies

    ctx = StrategyContext(image_size=(64, 64), device=None, dataset="", category="", sources=[],
                          normal_image=None, texture=None, texture_keys=list)
    for name in strategy_names():
        defaults = get_strategy(name).read_options(ctx)
        assert resolve_strategies((name,), {name: defaults}, (64, 64))[name].options == defaults
    assert set(get_strategy("cutpaste").read_options(ctx)) == {"jitter", "area_min", "area_max", "aspect_min"}


# ----- command line mistakes ------------------------------------------------------------------------


def test_out_that_is_a_file_or_under_one(data, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    _one_line_error(*_run(capsys, _args(data, afile)), str(afile), "is a file")
    _one_line_error(*_run(capsys, _args(data, afile / "sub")), "lies under the file")
    assert afile.read_text() == "keep me"


def test_huge_image_size_is_refused_before_allocating(data, tmp_path, capsys):
    args = _args(data, tmp_path / "out")
    args[args.index("--image-size") + 1] = "99999"
    line = _one_line_error(*_run(capsys, args), "--image-size 99999x99999", "of memory")
    assert "TiB" in line  # the memory it would need, stated
    assert not (tmp_path / "out").exists()


def test_memory_for_every_workers_batch_is_checked(data, tmp_path, capsys, monkeypatch):
    """Each worker process renders its own batch: memory for one batch but not for two refuses
    --workers 2 with one line (and no claim left), while one worker builds."""
    from synthgen.generator import preflight

    monkeypatch.setattr(preflight, "physical_memory", lambda: int(preflight.BYTES_PER_BATCH_PIXEL * 32 * 32 * 4 * 1.5))
    out = tmp_path / "out"
    args = _args(data, out, "--num-samples", "8", "--samples-per-shard", "4", "--batch-size", "4")
    _one_line_error(*_run(capsys, [*args, "--workers", "2"]), "a batch of 4 in each of 2 workers", "fewer --workers")
    assert not out.exists()
    main(args)
    assert (out / "manifest.json").is_file()


def test_negative_seed_is_refused(data, tmp_path, capsys):
    _one_line_error(*_run(capsys, _args(data, tmp_path / "out", "--seed", "-1")), "--seed", "-1")
    assert not (tmp_path / "out").exists()


def test_failure_after_the_claim_leaves_no_claim(data, tmp_path, capsys):
    """An unreadable texture is met while rendering, after the folder was claimed: the claim goes, and
    the corrected command builds into the same folder."""
    textures = tmp_path / "textures"
    textures.mkdir()
    (textures / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    args = _args(data, out, "--textures", str(textures), strategy="opaque")
    _one_line_error(*_run(capsys, args), str(textures / "a.png"))
    assert not out.exists()  # this build made the folder: it is gone with its claim
    out.mkdir()  # the same in a folder the user made: the folder stays, empty
    _one_line_error(*_run(capsys, args), str(textures / "a.png"))
    assert list(out.iterdir()) == []
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(textures / "a.png")
    main(args)
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize("where", ["category", "source folder", "textures", "dataset root"])
def test_build_never_writes_into_its_input(data, tmp_path, capsys, where):
    textures = tmp_path / "textures"
    textures.mkdir()
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(textures / "a.png")
    out = {"category": data / "widget" / "out", "source folder": data / "widget" / "train" / "good",
           "textures": textures / "out", "dataset root": data}[where]
    before = sorted(p for p in tmp_path.rglob("*"))
    code, err = _run(capsys, _args(data, out, "--textures", str(textures), strategy="opaque"))
    _one_line_error(code, err, "a build must not write")
    assert sorted(p for p in tmp_path.rglob("*")) == before


# ----- output folder: lock and free space -----------------------------------------------------------


def test_second_build_into_a_locked_folder_is_refused(data, tmp_path, capsys):
    out = tmp_path / "out"
    with preflight.claimed_out_dir(out, BUILD_FILE):  # what a running build holds
        _one_line_error(*_run(capsys, _args(data, out)), str(out), "another synthgen build is writing")
    main(_args(data, out))  # the lock went with its holder
    assert (out / "manifest.json").is_file()


def test_job_array_slices_share_the_folder_a_whole_build_does_not(data, tmp_path, capsys):
    out = tmp_path / "out"
    slices = ("--num-samples", "8", "--samples-per-shard", "2", "--num-shards", "2")
    with preflight.claimed_out_dir(out, BUILD_FILE, shared=True):  # what a running slice holds
        main(_args(data, out, *slices, "--shard-index", "1"))  # another slice of the build runs alongside
        assert sorted(p.name for p in out.glob("*.h5")) == ["mvtec_ad-widget-train-00001-of-00004.h5",
                                                           "mvtec_ad-widget-train-00003-of-00004.h5"]
        _one_line_error(*_run(capsys, _args(data, out, "--num-samples", "8", "--samples-per-shard", "2")),
                        "another synthgen build is writing")
    main(_args(data, out, *slices, "--shard-index", "0"))
    assert (out / "manifest.json").is_file()


def test_too_little_free_space_is_refused_before_writing(data, tmp_path, capsys, monkeypatch):
    """What a full disk looks like to the free-space check, without needing a small filesystem."""
    real = diskspace.shutil.disk_usage

    def nearly_full(path):
        usage = real(path)
        return usage._replace(free=2 << 20)  # room for the cached sources, not for 400 samples

    monkeypatch.setattr(diskspace.shutil, "disk_usage", nearly_full)
    monkeypatch.setenv("SYNTHGEN_CACHE", str(tmp_path / "cache"))
    line = _one_line_error(*_run(capsys, _args(data, tmp_path / "out", "--num-samples", "400")),
                           str(tmp_path / "out"), "not enough free disk space", "free")
    assert "needs about" in line
    assert not (tmp_path / "out").exists()


def test_full_cache_disk_is_refused_before_writing(data, tmp_path, capsys, monkeypatch):
    real = diskspace.shutil.disk_usage
    cache = tmp_path / "cache"
    cache.mkdir()

    def cache_full(path):
        path = Path(path)
        return real(path)._replace(free=1024) if path == cache or cache in path.parents else real(path)

    monkeypatch.setattr(diskspace.shutil, "disk_usage", cache_full)
    monkeypatch.setenv("SYNTHGEN_CACHE", str(cache))
    _one_line_error(*_run(capsys, _args(data, tmp_path / "out")), str(cache), "synthgen cache", "not enough free disk space")
    assert not (tmp_path / "out").exists()


def test_estimate_covers_the_written_shards(data, tmp_path):
    """The free-space estimate is not below what a build really writes (uncompressed images)."""
    config = BuildConfig(dataset="mvtec_ad", category="widget", root=str(data), strategies=("cutpaste",),
                         image_size=(64, 64), num_samples=40, samples_per_shard=16)
    build(config, tmp_path / "out", progress=False)
    written = sum(p.stat().st_size for p in (tmp_path / "out").glob("*.h5"))
    estimate = preflight.shard_bytes(40, (64, 64), {})
    assert written <= estimate < 2 * written, (written, estimate)


def test_a_build_parses_each_strategys_options_once(data, tmp_path, monkeypatch):
    """The plan resolves every strategy and parses its --set options once; draws, redraws and renders read
    the parsed values (before, each draw parsed them again)."""
    from synthgen.generator.strategies.cutpaste import _CutPasteBase

    calls = []
    real = _CutPasteBase.read_options  # both CutPaste strategies extend it (super().read_options)

    def counted(self, ctx):
        calls.append(self.name)
        return real(self, ctx)

    monkeypatch.setattr(_CutPasteBase, "read_options", counted)
    config = BuildConfig(dataset="mvtec_ad", category="widget", root=str(data), strategies=("cutpaste", "cutpaste-scar"),
                         image_size=(32, 32), num_samples=12, options={"cutpaste": {"jitter": 0.05}})
    build(config, tmp_path / "out", progress=False)
    assert sorted(calls) == ["cutpaste", "cutpaste-scar"]
    assert read_manifest(tmp_path / "out")["totals"]["strategies"] == {"cutpaste": 6, "cutpaste-scar": 6}
