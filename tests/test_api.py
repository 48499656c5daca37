"""The public API (synthgen/api.py): what the `synthgen` command does, from Python, and the command as a thin
layer over it; the default image size; the README's example; and what the installed wheel holds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import synthgen
from synthgen.api import SIZE_MULTIPLE, aspect_size, choose_image_size
from synthgen.generator.cli import main
from synthgen.generator.datasets.demo import DemoCounts, render_demo

REPO = Path(__file__).resolve().parents[1]
SMALL = DemoCounts(train=3, validation=0, test_good=0, logical=0, structural=0)
TINY = ["--dataset", "demo", "--strategy", "draem,cutpaste", "--textures", "perlin", "--num-samples", "6",
        "--image-size", "48x64", "--device", "cpu", "--quiet"]


def _shards(folder: Path) -> dict[str, str]:
    return {e["file"]: e["sha256"] for e in json.loads((folder / "manifest.json").read_text())["shards"]}


@pytest.fixture(scope="module")
def loco_like(tmp_path_factory) -> Path:
    """An MVTec LOCO root with two categories of 3 demo images each; box_wide's photos are 2:1 (W:H)."""
    root = tmp_path_factory.mktemp("loco") / "mvtec_loco"
    small = render_demo(tmp_path_factory.mktemp("demo"), counts=SMALL)
    shutil.copytree(small, root / "box_a")
    shutil.copytree(small, root / "box_wide")
    from PIL import Image

    for path in (root / "box_wide").rglob("*.png"):
        with Image.open(path) as im:
            wide = im.resize((im.width * 2, im.height))
        wide.save(path)
    return root


def test_the_package_top_is_the_api():
    for name in ("build", "open_build", "verify", "export", "publish", "BuildConfig", "SynthgenError", "Manifest"):
        assert getattr(synthgen, name) is getattr(synthgen.api, name)
    assert (REPO / "synthgen" / "py.typed").is_file()


def test_python_build_is_the_command_build(tmp_path, capsys):
    """Same options, same bytes: the command is a thin layer over synthgen.build."""
    main(["build", *TINY, "--out", str(tmp_path / "cli")])
    assert capsys.readouterr().out.splitlines() == [f"built 1 shard(s), 0 already complete, into {tmp_path / 'cli'}",
                                                   f"manifest: {tmp_path / 'cli' / 'manifest.json'}"]
    [result] = synthgen.build("draem,cutpaste", textures="perlin", num_samples=6, image_size="48x64", device="cpu",
                              out=tmp_path / "api", progress=False)
    assert result.out_dir == tmp_path / "api" and result.manifest_written and result.built == (0,)
    assert result.config.image_size == (48, 64) and result.category == "parts_box"
    assert _shards(tmp_path / "api") == _shards(tmp_path / "cli")
    again = synthgen.build(["draem", "cutpaste"], textures="perlin", num_samples=6, image_size=(48, 64), device="cpu",
                           out=tmp_path / "api", progress=False)
    assert again[0].built == () and again[0].skipped == (0,)  # resumed: nothing left to do


def test_open_build_gives_a_typed_manifest_and_a_torch_dataset(tmp_path):
    main(["build", *TINY, "--out", str(tmp_path / "b")])
    build = synthgen.open_build(tmp_path / "b")
    m, raw = build.manifest, json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert (m.dataset, m.category, m.split) == ("demo", "parts_box", "train")
    assert m.strategies == ("draem", "cutpaste") and m.image_size == (48, 64) and m.seed == 0
    assert m.config_hash == raw["config_hash"] and m.config == synthgen.BuildConfig.from_dict(raw["config"])
    assert m.totals.samples == 6 and dict(m.totals.strategies) == raw["totals"]["strategies"]
    assert [s.sha256 for s in m.shards] == [s["sha256"] for s in raw["shards"]] and m.num_sources == 24
    with pytest.raises(AttributeError):
        m.seed = 1  # frozen
    samples = build.samples(("image", "mask"), strategies=["cutpaste"])
    import torch

    assert isinstance(samples, torch.utils.data.Dataset) and len(samples) == raw["totals"]["strategies"]["cutpaste"]
    first = samples[0]
    assert first["image"].shape == (3, 48, 64) and first["mask"].shape == (1, 48, 64) and first["strategy"] == "cutpaste"
    assert build.verify().passed and synthgen.verify(tmp_path / "b").passed
    exported = synthgen.export(tmp_path / "b", tmp_path / "mvtec", progress=False)
    assert (exported / "train" / "good").is_dir()


@pytest.mark.filterwarnings("ignore:semantic-remove.*stored as normals")  # a 2-step generator paints little
def test_python_build_trains_and_caches_the_logical_generator_like_the_command(tmp_path, pidinet_weights, monkeypatch,
                                                                            capsys):
    """pipeline.build alone needs a generator file; synthgen.build trains one first (a tiny preset here), caches
    it and records it, as `synthgen build` does."""
    import dataclasses

    from synthgen.generator.pipeline import build as pipeline_build
    from synthgen.generator.training import auto, inpaint

    tiny = inpaint.InpaintTrainConfig(network=inpaint.InpaintConfig(ngf=4, n_blocks=1),
                                      discriminator=dataclasses.replace(inpaint.NETWORKS["demo"].discriminator, ndf=4,
                                                                        n_layers=2),
                                      steps=2, batch_size=2, crop=0)
    monkeypatch.setitem(inpaint.NETWORKS, auto.DEMO_NETWORK, tiny)
    options = dict(num_samples=2, image_size=64, regions="classical", weights_dir=pidinet_weights.parent, device="cpu")
    config = synthgen.BuildConfig(dataset="demo", category="parts_box", strategies=("semantic-remove",),
                                  image_size=(64, 64), num_samples=2, regions="classical",
                                  weights_dir=str(pidinet_weights.parent))
    with pytest.raises(synthgen.SynthgenError, match="leave out --e2i"):
        pipeline_build(config, tmp_path / "below", progress=False)
    [result] = synthgen.build("semantic-remove", out=tmp_path / "api", progress=False, **options)
    assert "training an inpainting generator" in capsys.readouterr().err
    generator = Path(result.config.e2i)
    assert generator.is_file() and generator.is_relative_to(os.environ["SYNTHGEN_CACHE"])
    artifacts = synthgen.open_build(result.out_dir).manifest.raw["artifacts"]
    assert any(a["name"] == "e2i" and a["file"] == str(generator) for a in artifacts)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached generator should have been reused")

    monkeypatch.setattr(auto, "train_inpainter", no_training)
    main(["build", "--strategy", "semantic-remove", "--num-samples", "2", "--image-size", "64", "--regions", "classical",
          "--weights-dir", str(pidinet_weights.parent), "--device", "cpu", "--quiet", "--out", str(tmp_path / "cli")])
    assert _shards(tmp_path / "cli") == _shards(tmp_path / "api")


def test_open_build_refuses_what_is_not_a_build_in_one_line(tmp_path):
    with pytest.raises(synthgen.SynthgenError, match="no manifest"):
        synthgen.open_build(tmp_path)


def test_aspect_size_keeps_the_ratio_with_the_short_side_at_256():
    assert aspect_size(1600, 800) == (512, 256)  # juice_bottle's photos (H x W)
    assert aspect_size(256, 256) == (256, 256)  # the demo: the size it always had
    assert aspect_size(900, 900) == (256, 256)  # MVTec AD
    assert aspect_size(1000, 1333) == (256, 336)  # 341.2 rounded to a multiple of 16
    assert aspect_size(100, 3000, short_side=32) == (32, 960)


def test_size_multiple_suits_every_network_a_build_runs():
    from synthgen.generator.models.e2i import GeneratorConfig
    from synthgen.generator.training import e2i, inpaint

    multiples = [GeneratorConfig().size_multiple] + [c.network.size_multiple for c in inpaint.NETWORKS.values()]
    multiples += [make().generator.size_multiple for make in e2i.NETWORKS.values()]
    assert all(SIZE_MULTIPLE % m == 0 for m in multiples), multiples


def test_without_image_size_the_aspect_ratio_is_kept_and_said(loco_like, capsys):
    assert choose_image_size(None, "mvtec_loco", loco_like, "box_wide") == (256, 512)
    assert "image size 256x512 (HxW): mvtec_loco/box_wide's 256x512 photos" in capsys.readouterr().err
    assert choose_image_size("64", "mvtec_loco", loco_like, "box_wide") == (64, 64)  # explicit N: square, as always
    assert choose_image_size("64x32", "mvtec_loco", loco_like, "box_wide") == (64, 32)


def test_dry_run_without_category_predicts_every_category(loco_like, tmp_path, capsys):
    main(["build", "--dataset", "mvtec_loco", "--root", str(loco_like), "--strategy", "cutpaste", "--device", "cpu",
          "--out", str(tmp_path / "out"), "--dry-run", "--quiet"])
    out = capsys.readouterr().out
    assert out.startswith("box_a:\n") and "\nbox_wide:\n" in out
    assert not (tmp_path / "out").exists()  # nothing written
    results = synthgen.build("cutpaste", dataset="mvtec_loco", root=loco_like, device="cpu", dry_run=True,
                             out=tmp_path / "out", progress=False)
    assert [(r.category, r.config.image_size) for r in results] == [("box_a", (256, 256)), ("box_wide", (256, 512))]
    assert all(r.prediction and not r.built for r in results)


def test_move_stale_moves_a_build_of_other_code_aside_and_nothing_else(tmp_path, capsys):
    out = tmp_path / "demo-out"
    main(["build", *TINY, "--out", str(out)])
    first = _shards(out)
    record = json.loads((out / "build.json").read_text())
    (out / "build.json").write_text(json.dumps({**record, "code": "0" * 64, "config_hash": "1" * 64}))
    with pytest.raises(SystemExit):  # without the option: refused, as before
        main(["build", *TINY, "--out", str(out)])
    assert "was started by other synthgen code" in capsys.readouterr().err
    main(["build", *TINY, "--out", str(out), "--move-stale"])
    assert "moved it to" in capsys.readouterr().err
    assert _shards(out) == first  # a fresh build, the same bytes
    stale = tmp_path / "demo-out.stale-000000000000"
    assert json.loads((stale / "build.json").read_text())["code"] == "0" * 64 and list(stale.glob("*.h5"))

    # a different build by this code, and a folder that is no build: refused and left where they are
    with pytest.raises(SystemExit):
        main(["build", *TINY, "--seed", "1", "--out", str(out), "--move-stale"])
    assert "holds a different build" in capsys.readouterr().err and _shards(out) == first
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        main(["build", *TINY, "--out", str(mine), "--move-stale"])
    assert (mine / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-out", "demo-out.stale-000000000000", "mine"]


def _readme_api_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_api_example_runs(tmp_path):
    """The README's example, as a user runs it: a fresh process in an empty folder (the demo dataset)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _readme_api_example()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "api-demo" / "manifest.json").is_file()
    assert "demo parts_box (64, 64) 8" in done.stdout


def _wheel_top_level(source: Path, tmp: Path) -> set[str]:
    """The top-level names of the wheel built from ``source`` (built in a copy: no build/ in the checkout)."""
    copy = tmp / "src"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns(".venv*", ".git", "*.egg-info", "build", "dist",
                                                                "__pycache__", "out", "demo-out", "tests", "benchmarks"))
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(copy)], check=True, capture_output=True, timeout=600)
    [wheel] = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        return {name.split("/", 1)[0] for name in z.namelist()}


def test_the_wheel_holds_one_top_level_package(tmp_path):  # about 5 s: pip builds the wheel from a copy
    top = _wheel_top_level(REPO, tmp_path)
    dist_info = {name for name in top if name.endswith(".dist-info")}
    assert len(dist_info) == 1 and top - dist_info == {"synthgen"}, sorted(top)
