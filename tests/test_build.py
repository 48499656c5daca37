"""End to end: `synthgen build` on the demo dataset, and what a build promises.

Determinism across worker counts, resumption after a kill (byte-identical), job-array slices,
verify/inspect/export, reading with plain h5py, and the torch Dataset.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from click.testing import CliRunner

from synthgen.generator import code_fingerprint
from synthgen.generator.cli import cli
from synthgen.generator.config import BuildConfig
from synthgen.generator.datasets.demo import render_demo
from synthgen.generator.errors import SynthgenError
from synthgen.generator.pipeline import build
from synthgen.generator.shards.manifest import validate_manifest
from synthgen.generator.shards.reader import ShardDataset, read_manifest
from synthgen.generator.shards.verify import verify_build


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return render_demo(tmp_path_factory.mktemp("demo")).parent


def _config(demo_root: Path, **kw) -> BuildConfig:
    base = dict(
        dataset="demo",
        category="parts_box",
        root=str(demo_root),
        strategies=("draem", "cutpaste"),
        num_samples=20,
        samples_per_shard=8,
        batch_size=4,
        image_size=(64, 64),
        texture_source="perlin",
        seed=7,
    )
    base.update(kw)
    return BuildConfig(**base)


def _hashes(out: Path) -> dict[str, str]:
    return {s["file"]: s["sha256"] for s in read_manifest(out)["shards"]}


@pytest.fixture(scope="module")
def built(demo_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "b"
    report = build(_config(demo_root), out, progress=False)
    assert report.manifest_written and report.num_shards == 3
    return out


def test_manifest_is_complete_and_valid(built, demo_root):
    m = read_manifest(built)
    validate_manifest(m)
    assert [s["file"] for s in m["shards"]] == [f"demo-parts_box-train-{i:05d}-of-00003.h5" for i in range(3)]
    assert [s["num_samples"] for s in m["shards"]] == [8, 8, 4]
    assert m["totals"]["samples"] == 20
    assert m["totals"]["strategies"] == {"draem": 10, "cutpaste": 10}
    assert len(m["dataset"]["sources"]) == 24 and all(len(s["sha256"]) == 64 for s in m["dataset"]["sources"])
    assert m["dataset"]["sources"][0]["file"] == "parts_box/train/good/000.png"
    assert m["environment"]["torch"] and m["environment"]["h5py"]
    assert m["environment"]["synthgen_code"] == code_fingerprint()  # the code that drew the samples


def test_shards_hold_what_the_manifest_says(built):
    m = read_manifest(built)
    for shard in m["shards"]:
        with h5py.File(built / shard["file"], "r") as f:
            labels = f["label"][...]
            masks = f["mask"][...]
            assert np.array_equal(labels, (masks.reshape(len(masks), -1).max(1) == 255).astype(np.uint8))
            assert set(np.unique(masks)) <= {0, 255}
            assert {str(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))} == {
                k: v for k, v in shard["labels"].items() if v
            }
            # every sample's parameters are recorded and name its seed's strategy
            for row in range(len(labels)):
                assert isinstance(json.loads(f["params"].asstr()[row]), dict)


def test_plain_h5py_reader_needs_no_synthgen(built):
    """A third party reads a build with h5py + json alone (checked in a fresh interpreter)."""
    script = f"""
import json, sys, h5py, numpy as np
root = {str(built)!r}
m = json.load(open(root + "/manifest.json"))
n = 0
for s in m["shards"]:
    with h5py.File(root + "/" + s["file"], "r") as f:
        img, mask = f["image"][0], f["mask"][0]
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and mask.shape == (64, 64)
        n += f["image"].shape[0]
assert n == m["totals"]["samples"] == 20
assert not any(k == "synthgen" or k.startswith("synthgen.") for k in sys.modules), "imported synthgen"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_same_seed_same_bytes_with_one_or_two_workers(demo_root, built, tmp_path):
    out = tmp_path / "w2"
    build(_config(demo_root), out, workers=2, progress=False)
    assert _hashes(out) == _hashes(built)


def test_other_seed_other_bytes(demo_root, built, tmp_path):
    out = tmp_path / "s8"
    build(_config(demo_root, seed=8), out, progress=False)
    assert set(_hashes(out).values()).isdisjoint(_hashes(built).values())


def test_job_array_slices_merge_into_the_same_build(demo_root, built, tmp_path):
    out = tmp_path / "slices"
    first = build(_config(demo_root), out, num_shards=2, shard_index=0, progress=False)
    assert first.built == [0, 2] and not first.manifest_written and not (out / "manifest.json").exists()
    second = build(_config(demo_root), out, num_shards=2, shard_index=1, progress=False)
    assert second.built == [1] and second.manifest_written
    assert _hashes(out) == _hashes(built)


def test_rerun_skips_verified_shards_and_redoes_damaged_ones(demo_root, built, tmp_path):
    out = tmp_path / "again"
    build(_config(demo_root), out, progress=False)
    again = build(_config(demo_root), out, progress=False)
    assert again.built == [] and again.skipped == [0, 1, 2]
    victim = out / read_manifest(out)["shards"][1]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    repaired = build(_config(demo_root), out, progress=False)
    assert repaired.built == [1]
    assert _hashes(out) == _hashes(built)


def test_killed_build_resumes_to_identical_bytes(demo_root, built, tmp_path):
    """SIGKILL a real build process after its first shard, run it again, compare with a clean build."""
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "synthgen.generator.cli", "build", "--dataset", "demo", "--root", str(demo_root),
            "--category", "parts_box", "--strategy", "draem,cutpaste", "--num-samples", "20",
            "--samples-per-shard", "8", "--batch-size", "4", "--image-size", "64", "--textures", "perlin",
            "--seed", "7", "--device", "cpu", "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first_sidecar = out / "demo-parts_box-train-00000-of-00003.json"
    deadline = time.time() + 120
    while not first_sidecar.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists() or proc.returncode == 0
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _hashes(out) == _hashes(built)
    assert not list(out.glob(".tmp-*"))


def test_verify_reports_damage_and_missing(demo_root, tmp_path):
    out = tmp_path / "v"
    build(_config(demo_root), out, progress=False)
    assert verify_build(out).passed
    shards = read_manifest(out)["shards"]
    victim = out / shards[0]["file"]
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0x01  # one flipped bit
    victim.write_bytes(bytes(data))
    (out / shards[2]["file"]).unlink()
    report = verify_build(out)
    assert not report.passed
    assert any(p.startswith("DAMAGED") and shards[0]["file"] in p for p in report.problems)
    assert any(p.startswith("MISSING") and shards[2]["file"] in p for p in report.problems)
    result = CliRunner().invoke(cli, ["verify", str(out)])
    assert result.exit_code == 1 and "DAMAGED" in result.output


def test_different_build_in_the_same_folder_is_refused(demo_root, built):
    before = _hashes(built)
    with pytest.raises(SynthgenError, match="holds a different build"):
        build(_config(demo_root, seed=99), built, progress=False)
    assert _hashes(built) == before


def test_build_started_by_other_code_is_refused_not_mixed(demo_root, built, monkeypatch):
    """Same options, other synthgen code (its defaults or algorithms may differ): resuming would mix
    samples of both versions, so the folder is refused with a line that says why."""
    import synthgen.generator.pipeline
    import synthgen.generator.plan

    record = json.loads((built / "build.json").read_text())
    assert len(record["code"]) == 64
    before = _hashes(built)
    for module in (synthgen.generator.plan, synthgen.generator.pipeline):
        monkeypatch.setattr(module, "code_fingerprint", lambda: "f" * 64)
    with pytest.raises(SynthgenError, match=r"was started by other synthgen code \(code [0-9a-f]{12} != ffffffffffff\)") as err:
        build(_config(demo_root), built, progress=False)
    assert "\n" not in str(err.value)
    assert _hashes(built) == before
    monkeypatch.undo()
    # a build from before code fingerprints: no "code" in build.json, and a hash computed without it
    old = dict(record, config_hash="0" * 64)
    del old["code"]
    (built / "build.json").write_text(json.dumps(old))
    try:
        with pytest.raises(SynthgenError, match=r"was started by other synthgen code \(code unrecorded != "):
            build(_config(demo_root), built, progress=False)
    finally:
        (built / "build.json").write_text(json.dumps(record))
    assert _hashes(built) == before


def test_inspect_and_export(built, tmp_path):
    result = CliRunner().invoke(cli, ["inspect", str(built), "--sheet", str(tmp_path / "sheet.png")])
    assert result.exit_code == 0, result.output
    assert "draem" in result.output and "cutpaste" in result.output
    assert (tmp_path / "sheet.png").stat().st_size > 1000
    from synthgen.generator.shards.inspect import SAMPLES_PER_ROW, strategy_label_counts, write_contact_sheet
    from synthgen.generator.viz import PAD

    # More samples than fit a row wrap onto further rows, all rows of one height.
    anomalous = [a for a, _ in strategy_label_counts(built).values()]
    rows = sum(-(-min(a, SAMPLES_PER_ROW + 1) // SAMPLES_PER_ROW) for a in anomalous)
    assert rows > len(anomalous)
    with Image.open(write_contact_sheet(built, tmp_path / "one.png", per_strategy=1, tile=32)) as one:
        row_height = (one.height - PAD) // len(anomalous)
    with Image.open(write_contact_sheet(built, tmp_path / "wide.png", per_strategy=SAMPLES_PER_ROW + 1, tile=32)) as wide:
        assert wide.height == rows * row_height + PAD
    every = sum(-(-a // SAMPLES_PER_ROW) for a in anomalous)  # --per-strategy all: every anomalous sample
    result = CliRunner().invoke(cli, ["inspect", str(built), "--sheet", str(tmp_path / "all.png"), "--per-strategy", "all"])
    assert result.exit_code == 0, result.output
    with Image.open(write_contact_sheet(built, tmp_path / "all32.png", per_strategy=None, tile=32)) as all_samples:
        assert all_samples.height == every * row_height + PAD
    result = CliRunner().invoke(cli, ["inspect", str(built), "--per-strategy", "0"])
    assert "--per-strategy: expected a number" in str(result.exception)
    to = tmp_path / "mvtec"
    result = CliRunner().invoke(cli, ["export", str(built), "--to", str(to), "--quiet"])
    assert result.exit_code == 0, result.output
    root = to / "parts_box"
    exported = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    m = read_manifest(built)
    anomalous = m["totals"]["labels"].get("1", 0)
    assert len([p for p in exported if p.startswith("ground_truth/")]) == anomalous
    for p in exported:
        if p.startswith("test/") and not p.startswith("test/good/"):
            strategy, name = p.split("/")[1:]
            assert f"ground_truth/{strategy}/{name[:-4]}_mask.png" in exported
    # refuses to overwrite without --overwrite
    result = CliRunner().invoke(cli, ["export", str(built), "--to", str(to), "--quiet"])
    assert result.exit_code != 0


def test_torch_dataset_over_a_build(built):
    ds = ShardDataset(built, fields=("image", "mask", "normal"))
    assert len(ds) == 20
    sample = ds[5]
    assert sample["image"].shape == (3, 64, 64) and sample["mask"].shape == (1, 64, 64)
    assert sample["index"] == 5


def test_unchanged_normals_are_the_sources_pixels(built):
    """Where a strategy leaves the normal alone (cutpaste), the shard's normal is the resized source itself."""
    from synthgen.generator.imageio import read_rgb, resize_rgb

    manifest = read_manifest(built)
    root = Path(manifest["dataset"]["root"])
    files = {s["id"]: root / s["file"] for s in manifest["dataset"]["sources"]}
    ds = ShardDataset(built, fields=("normal",), with_params=True)
    checked = 0
    for i in range(len(ds)):
        sample = ds[i]
        if sample["strategy"] == "cutpaste":
            source = resize_rgb(read_rgb(files[sample["source_id"]]), (64, 64))
            stored = (sample["normal"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            assert np.array_equal(stored, source), sample["source_id"]
            checked += 1
    assert checked > 0
