"""``--executor ray`` (generator/executors/ray_executor.py) on a local Ray cluster started here.

What it promises: shards byte-identical to a local ``--workers 1`` build (an image-level strategy with
a texture folder, and LogicAL strategies with cached maps and a generator), a partial build resumed by
Ray, precompute on Ray equal to a local precompute, a bad input inside a task reported as its one line,
and GPU requests scheduled on a logical GPU. The cluster's workers start with the session's cache
folder; each test then points this process at a fresh cache, so a worker that read the cache instead
of the shipped inputs would fail.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synthgen.generator.cli import main
from synthgen.generator.config import BuildConfig
from synthgen.generator.datasets.demo import render_demo
from synthgen.generator.errors import SynthgenError
from synthgen.generator.executors.ray_executor import task_resources
from synthgen.generator.pipeline import build
from synthgen.generator.precompute import MapSettings, precompute_category

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'synthgen[ray]'; make test installs it)")

from synthgen.generator.executors.ray_executor import RayExecutor  # noqa: E402  (needs ray)


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module: 2 CPUs and 1 logical GPU (no device behind it)."""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return render_demo(tmp_path_factory.mktemp("demo")).parent


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHGEN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def texture_dir(tmp_path_factory) -> Path:
    """Three random-noise texture images (a DTD-style folder the workers never see)."""
    root = tmp_path_factory.mktemp("textures")
    rng = np.random.default_rng(0)
    for name in ("a/one.png", "a/two.png", "b/three.jpg"):
        (root / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / name)
    return root


def _image_config(demo_root: Path, textures: Path) -> BuildConfig:
    return BuildConfig(dataset="demo", category="parts_box", root=str(demo_root), strategies=("draem", "cutpaste"),
                       num_samples=20, samples_per_shard=6, batch_size=4, image_size=(48, 48), seed=5,
                       texture_source="dtd", texture_root=str(textures))


def _same_build(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def local_image_build(demo_root, texture_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "b"
    assert build(_image_config(demo_root, texture_dir), out, workers=1, progress=False).manifest_written
    return out


def test_image_level_build_is_byte_identical_to_a_local_one(cluster, demo_root, texture_dir, local_image_build,
                                                            tmp_path, fresh_cache):
    out = tmp_path / "ray"
    report = build(_image_config(demo_root, texture_dir), out, executor=RayExecutor(), progress=False)
    assert report.manifest_written and report.built == [0, 1, 2, 3]
    _same_build(local_image_build, out)


def test_ray_resumes_a_partial_build(cluster, demo_root, texture_dir, local_image_build, tmp_path, fresh_cache):
    """A build that lost two shards (one file, one sidecar) and its manifest, with a killed write's
    leftover: Ray rebuilds exactly those two, and the folder equals the uninterrupted build."""
    out = tmp_path / "partial"
    shutil.copytree(local_image_build, out)
    (out / "manifest.json").unlink()
    (out / "demo-parts_box-train-00001-of-00004.h5").unlink()
    (out / "demo-parts_box-train-00003-of-00004.json").unlink()
    (out / ".tmp-demo-parts_box-train-00001-of-00004.h5.x").write_bytes(b"half a shard")
    report = build(_image_config(demo_root, texture_dir), out, executor=RayExecutor(), progress=False)
    assert report.built == [1, 3] and report.skipped == [0, 2]
    _same_build(local_image_build, out)


def test_bad_input_inside_a_task_is_its_one_line(cluster, demo_root, tmp_path, fresh_cache):
    """A truncated texture file is found only when a task decodes it: the build stops with the same
    one-line error a local build gives, not a Ray traceback."""
    textures = tmp_path / "textures"
    textures.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(textures / "t.png")
    (textures / "t.png").write_bytes((textures / "t.png").read_bytes()[:60])
    config = BuildConfig(dataset="demo", category="parts_box", root=str(demo_root), strategies=("draem",),
                         num_samples=4, samples_per_shard=2, image_size=(48, 48), texture_source="dtd",
                         texture_root=str(textures))
    with pytest.raises(SynthgenError, match=r"t\.png: truncated or corrupt image") as local:
        build(config, tmp_path / "local", progress=False)
    with pytest.raises(SynthgenError) as remote:
        build(config, tmp_path / "ray", executor=RayExecutor(), progress=False)
    assert type(remote.value) is SynthgenError and str(remote.value) == str(local.value)


def test_logical_build_with_cached_maps_is_byte_identical(cluster, demo_root, pidinet_weights, tmp_path, fresh_cache):
    """LogicAL strategies: maps precomputed into this process's cache and an inpainter file; the tasks
    ask for half a (logical) GPU each, so Ray schedules them on the GPU resource."""
    from synthgen.generator.models.inpaint import InpaintConfig, InpaintGenerator, save_inpainter

    e2i = tmp_path / "e2i.pt"  # an untrained tiny inpainter (the default renderer): output only has to be repeatable
    torch.manual_seed(0)
    save_inpainter(InpaintGenerator(InpaintConfig(ngf=4, n_blocks=1)), e2i, image_size=(64, 64), training={})
    config = BuildConfig(dataset="demo", category="parts_box", root=str(demo_root),
                         strategies=("semantic-remove", "arbitrary-replace"), num_samples=8, samples_per_shard=4,
                         batch_size=4, image_size=(64, 64), regions="classical", edge_model="pidinet-tiny",
                         weights_dir=str(pidinet_weights), e2i=str(e2i))
    local = build(config, tmp_path / "local", progress=False)  # computes and caches the maps
    assert local.manifest_written
    gpu = RayExecutor(resources={"num_cpus": 0, "num_gpus": 0.5})
    assert build(config, tmp_path / "ray", executor=gpu, progress=False).built == [0, 1]
    _same_build(tmp_path / "local", tmp_path / "ray")


def test_precompute_on_ray_equals_a_local_precompute(cluster, demo_root, pidinet_weights, tmp_path, monkeypatch):
    settings = MapSettings(edge_model="pidinet-tiny", regions="classical", weights_dir=str(pidinet_weights))
    caches = {}
    for name, executor in (("local", None), ("ray", RayExecutor(regions_per_task=5))):
        monkeypatch.setenv("SYNTHGEN_CACHE", str(tmp_path / name))
        lines = precompute_category("demo", demo_root, "parts_box", "train", (48, 48), settings, executor=executor)
        assert "edges computed 24 (cached 0), regions computed 24 (cached 0)" in lines[0], lines[0]
        caches[name] = tmp_path / name / "maps"
    local = sorted(p.relative_to(caches["local"]) for p in caches["local"].rglob("*.npz"))
    assert len(local) == 48 and local == sorted(p.relative_to(caches["ray"]) for p in caches["ray"].rglob("*.npz"))
    for rel in local:
        with np.load(caches["local"] / rel) as a, np.load(caches["ray"] / rel) as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), rel
    # A second run finds everything cached and starts no task.
    again = precompute_category("demo", demo_root, "parts_box", "train", (48, 48), settings, executor=RayExecutor())
    assert "edges computed 0 (cached 24), regions computed 0 (cached 24)" in again[0]


def test_resources_follow_the_device():
    assert task_resources("cpu") == {"num_cpus": 1}
    assert task_resources("cuda") == {"num_cpus": 1, "num_gpus": 1}


# ----- the CLI without Ray (no cluster needed) ------------------------------------------------------------


def test_cli_without_ray_says_how_to_get_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    build_args = ["build", "--strategy", "draem", "--textures", "perlin", "--out", str(tmp_path / "o")]
    for args in (build_args, ["precompute", "--quiet"]):
        with pytest.raises(SystemExit) as exit:
            main([*args, "--executor", "ray"])
        err = capsys.readouterr().err.strip()
        assert exit.value.code == 2 and "\n" not in err
        assert err == "synthgen: error: --executor ray: Ray is not installed; pip install 'synthgen[ray]' (or pip install ray)"
    assert not (tmp_path / "o").exists()
