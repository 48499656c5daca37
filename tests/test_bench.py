"""synthgen bench (trainers/bench.py): both arms train at the same budget and are evaluated on the real
test split; bench.json / bench.md / bench.png and the eval sheets are written; a finished bench is not
repeated; misuse is a one-line error. Tiny budgets (64 px demo build, 2 steps, CPU preset)."""

from __future__ import annotations

import json

import pytest
from cli_run import run_main

from synthgen.cli import main  # the synthgen command with bench (the package top adds it)
from synthgen.generator.config import BuildConfig
from synthgen.generator.pipeline import build

SIZE = 64


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory):
    config = BuildConfig(dataset="demo", category="parts_box", root=None, strategies=("cutpaste",), num_samples=16,
                         samples_per_shard=16, batch_size=8, image_size=(SIZE, SIZE), seed=3)
    out = tmp_path_factory.mktemp("build") / "demo"
    build(config, out, progress=False)
    return out


def _bench(build_dir, out, capsys, *extra):
    argv = ["bench", str(build_dir), "--dataset", "demo", "--category", "parts_box", "--out", str(out),
            "--steps", "2", "--preset", "cpu", "--device", "cpu", "--quiet", *extra]
    return run_main(main, argv, capsys)


@pytest.fixture(scope="module")
def glass_bench(demo_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "glass"
    from synthgen.trainers.bench import bench

    bench(demo_build, dataset="demo", root=None, category="parts_box", out=out, method="glass", seeds=2, steps=2,
          preset="cpu", device="cpu", progress=False)
    return out


def test_synthgen_lists_bench_as_a_command(capsys):
    """bench lives in synthgen.trainers; the package top (synthgen/cli.py) adds it to the synthgen command."""
    main(["--help"])
    assert "\n  bench " in capsys.readouterr().out


def test_bench_trains_both_arms_and_evaluates_on_the_real_test_split(glass_bench, demo_build):
    record = json.loads((glass_bench / "bench.json").read_text())
    assert [(r["arm"], r["seed"]) for r in record["runs"]] == [
        ("with-build", 0), ("without-build", 0), ("with-build", 1), ("without-build", 1)]
    assert all(r["optimizer_steps"] == 2 for r in record["runs"])  # the same budget for both arms
    assert record["settings"]["steps"] == 2 and record["settings"]["preset"] == "cpu"
    assert record["test_split"]["counts"] == {"test/good": 8, "test/logical_anomalies": 8, "test/structural_anomalies": 8}
    for arm in ("with-build", "without-build"):
        entry = record["summary"][arm]["pixel_auroc"]
        values = [r["metrics"]["pixel_auroc"] for r in record["runs"] if r["arm"] == arm]
        assert entry["n"] == 2 and entry["mean"] == pytest.approx(sum(values) / 2)
        assert record["summary"][arm]["au_spro"]["n"] == 2  # LOCO layout: AU-sPRO reported
    # the baseline: GLASS's own Perlin synthesis, as many samples as the build, at its image size
    own = json.loads((glass_bench / "own-synthesis" / "manifest.json").read_text())
    assert own["strategies"] == ["draem"] and own["totals"]["samples"] == 16 and own["config"]["image_size"] == [SIZE, SIZE]
    runs = {r["arm"]: json.loads((glass_bench / r["run"] / "run.json").read_text()) for r in record["runs"] if r["seed"] == 0}
    assert runs["with-build"]["data"]["shards_config_hash"] == record["build"]["config_hash"]
    assert runs["without-build"]["data"]["strategies"] == ["draem"]
    table = (glass_bench / "bench.md").read_text()
    assert "| pixel AUROC |" in table and "AU-sPRO logical" in table and "2 optimizer steps per run" in table
    assert (glass_bench / "bench.png").stat().st_size > 1000
    assert all((glass_bench / r["sheet"]).is_file() for r in record["runs"])


def test_a_finished_bench_is_not_repeated(glass_bench, demo_build, capsys):
    before = {p: p.stat().st_mtime_ns for p in glass_bench.glob("runs/*/model.pt")}
    code, out, err = _bench(demo_build, glass_bench, capsys, "--seeds", "2")
    assert code == 0, err
    assert "| image AUROC (official: max of map) |" in out
    assert {p: p.stat().st_mtime_ns for p in glass_bench.glob("runs/*/model.pt")} == before
    record = json.loads((glass_bench / "bench.json").read_text())
    assert all(r["seconds_this_session"] is None for r in record["runs"])


def test_more_seeds_extend_a_finished_bench(glass_bench, demo_build, capsys):
    """bench.json holds the seeds done; a larger --seeds trains only the new seed's runs."""
    before = {p: p.stat().st_mtime_ns for p in glass_bench.glob("runs/*/model.pt")}
    code, _, err = _bench(demo_build, glass_bench, capsys, "--seeds", "3")
    assert code == 0, err
    record = json.loads((glass_bench / "bench.json").read_text())
    assert record["seeds"] == [0, 1, 2] and record["summary"]["with-build"]["pixel_auroc"]["n"] == 3
    assert [r["seconds_this_session"] is None for r in record["runs"]] == [True] * 4 + [False] * 2
    assert {p: p.stat().st_mtime_ns for p in glass_bench.glob("runs/*/model.pt") if p in before} == before


def test_pbas_bench_compares_with_the_plain_paper_method(demo_build, tmp_path, capsys):
    code, out, err = _bench(demo_build, tmp_path / "pbas", capsys, "--method", "pbas", "--seeds", "1")
    assert code == 0, err
    record = json.loads((tmp_path / "pbas" / "bench.json").read_text())
    runs = {r["arm"]: json.loads((tmp_path / "pbas" / r["run"] / "run.json").read_text()) for r in record["runs"]}
    assert runs["with-build"]["config"]["anomaly_shards"] is True
    assert "anomaly_shards" not in runs["without-build"]["config"]
    assert not (tmp_path / "pbas" / "own-synthesis").exists()


@pytest.mark.parametrize("extra, message", [
    (["--category", "bolts"], "the build was made from demo/parts_box, not demo/bolts"),
    (["--steps", "0"], "--steps: must be at least 1"),
    (["--seeds", "0"], "--seeds: must be at least 1"),
])
def test_bench_misuse_is_a_one_line_error(demo_build, tmp_path, capsys, extra, message):
    code, _, err = _bench(demo_build, tmp_path / "b", capsys, *extra)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_another_comparison_in_a_finished_bench_folder_is_refused(glass_bench, demo_build, capsys):
    code, _, err = _bench(demo_build, glass_bench, capsys, "--steps", "3")
    assert code == 2 and "holds a bench with steps = 2, not 3" in err


def test_a_build_defined_like_the_own_synthesis_is_recognised(demo_build):
    """A draem build with GLASS's own settings makes both arms the same: bench says so (warning + table note)."""
    import copy

    from synthgen.generator.shards.reader import read_manifest
    from synthgen.trainers.bench import _same_definition

    manifest = read_manifest(demo_build)
    assert _same_definition(manifest, copy.deepcopy(manifest))
    other = copy.deepcopy(manifest)
    other["config"]["seed"] += 1
    assert not _same_definition(manifest, other)
    other = copy.deepcopy(manifest)
    other["dataset"]["sources"][0]["sha256"] = "0" * 64
    assert not _same_definition(manifest, other)
