"""Hostile records (issue 26): every record synthgen reads is checked for its meaning, not only its shape,
and every writer refuses to destroy an input.

Two kinds of test: property-based ones (hypothesis) that damage each record at a random place with a
random JSON value and require a one-line refusal (exit 2 from the CLI) or a clean pass, never a
traceback; and one test per example of the issue. Records and readers: generator/records.py.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthgen.generator.cli import main
from synthgen.generator.config import BuildConfig
from synthgen.generator.datasets.demo import render_demo
from synthgen.generator.errors import SynthgenError
from synthgen.generator.pipeline import build
from synthgen.generator.records import SCHEMAS, check_record, check_sidecar, read_record
from synthgen.generator.shards.manifest import BUILD_FILE, MANIFEST_FILE

FEW = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return render_demo(tmp_path_factory.mktemp("demo")).parent


def _config(demo_root: Path) -> BuildConfig:
    return BuildConfig(dataset="demo", category="parts_box", root=str(demo_root), strategies=("draem", "cutpaste"),
                       num_samples=8, samples_per_shard=4, batch_size=4, image_size=(48, 48), seed=5,
                       texture_source="perlin", device="cpu")


@pytest.fixture(scope="module")
def slices(demo_root, tmp_path_factory) -> Path:
    """A job array's folder: both slices built, no manifest merged yet."""
    out = tmp_path_factory.mktemp("array") / "build"
    for index in (0, 1):
        build(_config(demo_root), out, num_shards=2, shard_index=index, progress=False)
    (out / MANIFEST_FILE).unlink()  # the slice that finished last merged it: the merge job's input is without
    return out


@pytest.fixture(scope="module")
def merged(slices, demo_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("merged") / "build"
    shutil.copytree(slices, out)
    build(_config(demo_root), out, merge_only=True, progress=False)
    return out


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def _run(capsys, args: list[str], *, with_out: bool = False):
    """(exit status, stderr) of a command run in-process (0 when it returns without SystemExit)."""
    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    captured = capsys.readouterr()
    return (code, captured.err, captured.out) if with_out else (code, captured.err)


def _one_line(code: int, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    assert lines[0].startswith("synthgen: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _merge_args(demo_root: Path, out: Path) -> list[str]:
    return ["build", "--dataset", "demo", "--root", str(demo_root), "--category", "parts_box", "--strategy",
            "draem,cutpaste", "--num-samples", "8", "--samples-per-shard", "4", "--batch-size", "4", "--image-size",
            "48", "--seed", "5", "--textures", "perlin", "--device", "cpu", "--quiet", "--merge-only", "--out", str(out)]


# ------------------------------------------------------------------------ random damage to a record

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**18, 10**18) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["..", "../x", "/abs", "a\nb", "", "x" * 300, "NaN"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(value, at=()):
    yield at
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*at, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:4]):
            yield from _paths(item, (*at, i))


@st.composite
def damaged(draw, record: dict) -> dict:
    """``record`` with one place (any depth) replaced by a random JSON value, or one key removed."""
    paths = [p for p in _paths(record) if p]
    path = draw(st.sampled_from(paths))
    out = copy.deepcopy(record)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(_JSON)
    return out


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, allow_nan=True))  # NaN and Infinity written as a careless writer would


# ----------------------------------------------------------------------------- property-based tests


def test_every_reader_refuses_a_damaged_manifest_in_one_line(merged, tmp_path_factory, capsys):
    """verify, inspect, export and publish on a manifest damaged anywhere: one line and exit 2, or (a change
    that does not matter) success; never a traceback, never a half-written output."""
    manifest = json.loads((merged / MANIFEST_FILE).read_text())

    @FEW
    @given(damaged(manifest))
    def check(bad):
        folder = tmp_path_factory.mktemp("bad") / "build"
        shutil.copytree(merged, folder)
        _write_json(folder / MANIFEST_FILE, bad)
        for args in (["verify", str(folder)], ["inspect", str(folder)],
                     ["export", str(folder), "--to", str(folder.parent / "export"), "--format", "webdataset"]):
            capsys.readouterr()
            try:
                main(args)
                code = 0
            except SystemExit as e:
                code = e.code
            err = capsys.readouterr().err
            assert "Traceback" not in err and code in (0, 1, 2), (args, code, err)
            if code == 2:
                _one_line(code, err)
                assert not (folder.parent / "export").exists()
        shutil.rmtree(folder.parent)

    check()


def test_merge_only_refuses_any_damaged_sidecar_before_writing(slices, demo_root, tmp_path_factory, capsys):
    side = sorted(p for p in slices.glob("*.json") if p.name != BUILD_FILE)[0]
    sidecar = json.loads(side.read_text())

    @FEW
    @given(damaged(sidecar))
    def check(bad):
        folder = tmp_path_factory.mktemp("bad") / "build"
        shutil.copytree(slices, folder)
        _write_json(folder / side.name, bad)
        try:
            main(_merge_args(demo_root, folder))
            code = 0
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        if code == 0:  # the damage did not matter (a count of zero removed ...): the manifest must verify
            assert main_ok(["verify", str(folder)], capsys)
        else:
            _one_line(code, err)
            assert not (folder / MANIFEST_FILE).exists()
        shutil.rmtree(folder.parent)

    check()


def main_ok(args, capsys) -> bool:
    try:
        main(args)
    except SystemExit as e:
        capsys.readouterr()
        return e.code == 0
    return True


@pytest.mark.parametrize("record", ["build record", "generator record", "run record", "cost table",
                                    "feature cache header", "source stack record"])
def test_each_record_is_checked_or_refused_in_one_line(record, tmp_path):
    """Every typed record (generator/records.py): a damaged copy of a valid one is either valid or a
    one-line SynthgenError naming the file; never another exception."""
    valid = {
        "build record": {"config_hash": "a" * 64, "config": {"seed": 1}, "synthgen_version": "0.1.0", "code": "b" * 64},
        "generator record": {"sha256": "c" * 64, "file": "inpaint_generator.pt", "data": {"key": "d" * 64}},
        "run record": {"method": "glass", "status": "complete", "config": {"epochs": 2}},
        "cost table": json.loads((Path(__file__).parents[1] / "generator" / "cost_table.json").read_text()),
        "feature cache header": {"format": 1, "key": "k", "payload_sha256": "e" * 64,
                                 "arrays": [{"name": "grid", "dtype": "<i8", "shape": [2]}]},
        "source stack record": {"sha256": "f" * 64, "shape": [20, 256, 256, 3]},
    }[record]
    check_record(valid, record, "x.json")
    path = tmp_path / "record.json"

    @FEW
    @given(damaged(valid))
    def check(bad):
        _write_json(path, bad)
        try:
            read_record(path, record)
        except SynthgenError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)

    check()


# ------------------------------------------------------------------------- the examples


def test_manifest_totals_of_ten_to_the_fifteen_are_refused_before_any_allocation(merged, tmp_path, capsys):
    build_dir = _copy(merged, tmp_path)
    manifest = json.loads((build_dir / MANIFEST_FILE).read_text())
    manifest["totals"]["samples"] = 10**15
    _write_json(build_dir / MANIFEST_FILE, manifest)
    for args in (["export", str(build_dir), "--to", str(tmp_path / "wds"), "--format", "webdataset"],
                 ["publish", str(build_dir), "--to", str(tmp_path / "pub")], ["verify", str(build_dir)]):
        _one_line(*_run(capsys, args), "totals claim 1000000000000000 samples but the shards hold 8")
    assert not (tmp_path / "wds").exists() and not (tmp_path / "pub").exists()


def test_a_billion_samples_are_refused_at_once_with_an_estimate(demo_root, tmp_path, capsys):
    import time

    args = _merge_args(demo_root, tmp_path / "out")
    args.remove("--merge-only")
    args[args.index("--num-samples") + 1] = "1000000000"
    start = time.monotonic()
    line = _one_line(*_run(capsys, args), "--num-samples 1000000000", "shards")
    assert time.monotonic() - start < 20, "refused only after planning"
    args[args.index("--samples-per-shard") + 1] = "100000"  # few enough shards: now the memory of the plan
    line = _one_line(*_run(capsys, args), "--num-samples 1000000000", "memory", "GiB")
    assert not (tmp_path / "out").exists(), line


def test_manifest_claiming_more_samples_than_its_shards_hold_fails_verify_and_publish(merged, tmp_path, capsys):
    from test_untrusted_build import claim_samples

    build_dir = _copy(merged, tmp_path)
    manifest = json.loads((build_dir / MANIFEST_FILE).read_text())
    claim_samples(manifest, 1, 3)  # every count consistent, within the bounds: 7 claimed, 8 held
    _write_json(build_dir / MANIFEST_FILE, manifest)
    code, err, out = _run(capsys, ["verify", str(build_dir)], with_out=True)
    assert code != 0 and "WRONG" in out + err, (code, out, err)
    _one_line(*_run(capsys, ["publish", str(build_dir), "--to", str(tmp_path / "pub")]), "fails `synthgen verify`")
    assert not (tmp_path / "pub").exists()


@pytest.mark.parametrize("damage, needle", [
    (lambda s, other: s.update(num_samples="4"), "num_samples"),
    (lambda s, other: s.update(file="../outside-00000-of-00002.h5"), "'../outside"),
    (lambda s, other: s.update(file=other["file"]), "the build's plan says"),
    (lambda s, other: s["strategies"].update({"..evil": 0}), "'..'"),
    (lambda s, other: s.update(sha256="0" * 64), "bytes differ from its sidecar"),
    (lambda s, other: s.update(config_hash="f" * 64), "config_hash"),
])
def test_merge_only_refuses_what_verify_would_refuse(slices, demo_root, tmp_path, capsys, damage, needle):
    folder = _copy(slices, tmp_path)
    sides = sorted(p for p in folder.glob("*.json") if p.name != BUILD_FILE)
    first, second = (json.loads(p.read_text()) for p in sides[:2])
    damage(first, second)
    _write_json(sides[0], first)
    _one_line(*_run(capsys, _merge_args(demo_root, folder)), needle)
    assert not (folder / MANIFEST_FILE).exists()


def test_merge_only_refuses_a_shard_whose_bytes_changed(slices, demo_root, tmp_path, capsys):
    folder = _copy(slices, tmp_path)
    shard = sorted(folder.glob("*.h5"))[1]
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    _one_line(*_run(capsys, _merge_args(demo_root, folder)), shard.name, "bytes differ")
    assert not (folder / MANIFEST_FILE).exists()


def test_export_never_writes_over_the_builds_own_dataset(merged, demo_root, tmp_path, capsys):
    before = sorted(p.relative_to(demo_root) for p in demo_root.rglob("*"))
    for to in (demo_root, demo_root / "parts_box", demo_root / "parts_box" / "train" / "good"):
        code, err = _run(capsys, ["export", str(merged), "--to", str(to), "--overwrite"])
        _one_line(code, err, "must not write")
    assert sorted(p.relative_to(demo_root) for p in demo_root.rglob("*")) == before


def test_overwrite_replaces_only_an_earlier_export(merged, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    _one_line(*_run(capsys, ["export", str(merged), "--to", str(mine), "--overwrite"]), "not a synthgen export")
    assert (mine / "thesis.tex").read_text() == "precious"
    out = tmp_path / "export"
    for _ in range(2):  # an export replaces an export
        assert _run(capsys, ["export", str(merged), "--to", str(out), "--overwrite", "--format", "webdataset"])[0] == 0


def test_source_ids_that_differ_only_in_slash_and_underscore_are_refused(merged, tmp_path, capsys):
    from synthgen.generator.shards.samples import source_file_names

    manifest = json.loads((merged / MANIFEST_FILE).read_text())
    sources = manifest["dataset"]["sources"]
    sources.append({**sources[0], "id": sources[0]["id"].replace("/", "_", 1)})
    with pytest.raises(SynthgenError, match="would both be exported as"):
        source_file_names(manifest, "manifest.json")


def test_leftover_temp_folders_of_killed_runs_are_removed(merged, tmp_path, capsys):
    out = tmp_path / "export"
    dead = tmp_path / ".tmp-export-export-999999999"  # no such process
    dead.mkdir()
    (dead / "half.tar").write_bytes(b"x")
    live = tmp_path / f".tmp-export-export-{1}"  # pid 1 is alive: a run still writing keeps its folder
    live.mkdir()
    assert _run(capsys, ["export", str(merged), "--to", str(out), "--format", "webdataset"])[0] == 0
    assert not dead.exists() and live.exists()


def _licence_build(merged: Path, tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "root"
    (root / "parts_box").mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return merged, root


def test_the_most_restrictive_licence_file_wins_or_publish_stops(merged, tmp_path, capsys):
    from synthgen.generator.publish.licence import source_licence

    manifest = json.loads((merged / MANIFEST_FILE).read_text())
    _, root = _licence_build(merged, tmp_path, {
        "parts_box/license.txt": "Attribution-NonCommercial-ShareAlike 4.0 International", "LICENSE": "CC0 1.0"})
    assert source_licence(manifest, root).id == "cc-by-nc-sa-4.0"
    code, err = _run(capsys, ["publish", str(merged), "--to", str(tmp_path / "pub"), "--source-root", str(root),
                              "--license", "cc0-1.0"])
    _one_line(code, err, "--license cc0-1.0", "cc-by-nc-sa-4.0")
    (root / "parts_box" / "license.txt").write_text("Attribution-ShareAlike 4.0 International")
    (root / "LICENSE").write_text("Attribution-NonCommercial 4.0 International")
    code, err = _run(capsys, ["publish", str(merged), "--to", str(tmp_path / "pub"), "--source-root", str(root)])
    _one_line(code, err, "license.txt", "LICENSE", "neither licence permits the other")
    assert not (tmp_path / "pub").exists()


def test_text_from_records_cannot_add_structure_to_the_card():
    from markdown_it import MarkdownIt

    from synthgen.generator.publish.card import dataset_card
    from synthgen.generator.publish.licence import SourceLicence

    hostile = "1.0\n\n## Licence\nCC0 <script>alert(1)</script>\n```\n# x"
    manifest = {
        "synthgen_version": hostile, "config_hash": "a" * 64, "seed": 0, "strategies": ["draem"],
        "config": {"strategies": ["draem"], "image_size": [48, 48], "root": hostile, "dataset": "demo",
                   "category": "parts_box", "seed": 0},
        "dataset": {"name": "demo", "category": "parts_box", "split": "train", "root": hostile},
        "totals": {"samples": 2}, "artifacts": [{"name": hostile, "role": hostile, "sha256": "b" * 64, "file": "x"}],
        "environment": {"synthgen_code": hostile},
    }
    card = dataset_card(manifest, licence="cc0-1.0", source=SourceLicence("cc0-1.0", hostile, hostile), split="train",
                        counts={"draem": {"anomalous": 1, "normal": 1}}, with_normals=False, sheet="s.png",
                        parquet_files=["data/x.parquet"])
    body = card.split("---\n", 2)[2]
    tokens = MarkdownIt("commonmark").enable("table").parse(body)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert [h for h in headings if h != headings[0]] == ["Motivation", "Composition", "Collection process",
                                                          "Usefulness (measured on real test images)", "Uses",
                                                          "Distribution", "Maintenance", "Citations"]
    assert not [t for t in tokens if t.type.startswith("html")]
    assert sum(t.type == "fence" for t in tokens) == 1
    inline_html = [c for t in tokens if t.children for c in t.children if c.type.startswith("html")]
    assert not inline_html


def test_cost_table_with_nan_or_zero_image_size_is_one_line(tmp_path):
    from synthgen.generator.cost_model import load_cost_table

    table = json.loads((Path(__file__).parents[1] / "generator" / "cost_table.json").read_text())
    for damage, needle in (({"seconds": {**table["seconds"], "render:draem": math.nan}}, "not a number"),
                           ({"image_size": [0, 256]}, "/image_size/0")):
        path = tmp_path / "costs.json"
        _write_json(path, {**table, **damage})
        with pytest.raises(SynthgenError, match=needle):
            load_cost_table(path)


@pytest.mark.parametrize("damage, needle", [({"image_size": ["256", "256"]}, "/image_size/"),
                                            ({"hole_dilation": -3}, "/hole_dilation")])
def test_generator_file_with_meaningless_numbers_is_one_line(tmp_path, damage, needle):
    import torch

    from synthgen.generator.models.inpaint import InpaintConfig, InpaintGenerator, read_inpainter_file, save_inpainter

    path = tmp_path / "g.pt"
    save_inpainter(InpaintGenerator(InpaintConfig()), path, image_size=(64, 64), training={})
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, **damage}, path)
    with pytest.raises(SynthgenError, match=needle):
        read_inpainter_file(path, "train one")


def test_sidecar_cross_checks_against_the_plan():
    good = {"file": "demo-parts_box-train-00000-of-00002.h5", "sha256": "a" * 64, "bytes": 1000, "shard_index": 0,
            "num_shards": 2, "first_index": 0, "num_samples": 4, "config_hash": "b" * 64,
            "strategies": {"draem": 2, "cutpaste": 2}, "labels": {"0": 1, "1": 3}, "redraws": {}, "fallback_normal": {}}
    expected = dict(file=good["file"], shard_index=0, num_shards=2, first_index=0, num_samples=4,
                    config_hash="b" * 64, strategies=("draem", "cutpaste"))
    check_sidecar(good, "s.json", **expected)
    for bad, needle in (({"labels": {"0": 1, "1": 1}}, "'labels'"), ({"strategies": {"draem": 4, "rotation": 0}}, "rotation"),
                        ({"fallback_normal": {"draem": 3}}, "fallback"), ({"num_samples": "4"}, "num_samples")):
        with pytest.raises(SynthgenError, match=needle):
            check_sidecar({**good, **bad}, "s.json", **expected)


def test_schemas_name_every_record():
    assert set(SCHEMAS) == {"shard sidecar", "build record", "generator record", "inpainting generator file",
                            "source stack record", "feature cache header", "run record", "cost table", "publication"}


def test_a_run_that_failed_before_its_first_epoch_does_not_block_the_corrected_rerun(tmp_path):
    from synthgen.trainers.lightning_utils import CHECKPOINT_DIR, start_run

    out = tmp_path / "run"
    assert start_run(out, "glass", {"epochs": 1}, {}, resume=False) is None  # claimed; then its input check fails
    assert start_run(out, "glass", {"epochs": 2}, {}, resume=False) is None  # the corrected command takes it over
    (out / CHECKPOINT_DIR).mkdir()  # an epoch was trained: never taken over
    with pytest.raises(SynthgenError, match="already holds a training run"):
        start_run(out, "glass", {"epochs": 2}, {}, resume=False)


def test_a_run_record_replaced_by_a_folder_is_one_line(tmp_path):
    from synthgen.trainers.base import RUN_FILE
    from synthgen.trainers.lightning_utils import start_run

    out = tmp_path / "run"
    (out / RUN_FILE).mkdir(parents=True)
    with pytest.raises(SynthgenError, match="run record is a folder"):
        start_run(out, "glass", {"epochs": 1}, {}, resume=False)


def test_feature_cache_entry_that_is_a_folder_or_points_past_its_end(tmp_path, capsys):
    import numpy as np

    from synthgen.trainers import shard_features as sf

    path = tmp_path / "entry.feat"
    arrays = {"anomalous": np.zeros((2, 4, 3), np.float16), "masks": np.zeros((2, 4), np.uint8),
              "sources": np.array([0, 5]), "normals": np.zeros((1, 4, 3), np.float16), "grid": np.array([2, 2])}
    sf._write_entry(path, "k", arrays)
    assert sf._read_entry(path, "k") is None  # source row 5 of 1 normal image: recomputed, with a warning
    assert "point outside" in capsys.readouterr().err
    arrays["sources"] = np.array([0, 0])
    sf._write_entry(path, "k", arrays)
    assert set(sf._read_entry(path, "k")) == set(arrays)


def test_a_ray_that_fails_to_import_is_one_line(tmp_path, monkeypatch):
    import sys

    from synthgen.generator.executors.ray_executor import import_ray

    fake = tmp_path / "ray"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise RuntimeError('protobuf version mismatch\\nmore detail')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(SynthgenError, match="importing ray failed .RuntimeError: protobuf version mismatch"):
        import_ray()


def test_a_ray_address_where_nothing_listens_is_refused_at_once(tmp_path):
    import socket
    import time

    from synthgen.generator.executors.ray_executor import RayExecutor

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(SynthgenError, match=f"--ray-address 127.0.0.1:{port}: no Ray cluster answers"):
        RayExecutor(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 15


@pytest.fixture(scope="module")
def published(merged, tmp_path_factory) -> Path:
    from synthgen.generator.publish import publish_build

    return publish_build(merged, tmp_path_factory.mktemp("published") / "pub", progress=False)


def test_verify_refuses_a_damaged_publication_record_in_one_line(published, tmp_path_factory, capsys):
    """The file list of a publication (its manifest's "publication" record) damaged anywhere: verify says
    one line (exit 2) or reports the files (exit 1) or passes; never a traceback."""
    manifest = json.loads((published / MANIFEST_FILE).read_text())

    @FEW
    @given(damaged(manifest["publication"]))
    def check(bad):
        folder = tmp_path_factory.mktemp("bad") / "pub"
        shutil.copytree(published, folder)
        _write_json(folder / MANIFEST_FILE, {**manifest, "publication": bad})
        code, err = _run(capsys, ["verify", str(folder)])
        assert "Traceback" not in err and code in (0, 1, 2), (code, err)
        if code == 2:
            _one_line(code, err)
        shutil.rmtree(folder.parent)

    check()


def test_sigterm_while_connected_to_ray_stops_like_ctrl_c():
    import os
    import signal

    from synthgen.generator.executors.ray_executor import _sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with _sigterm_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next bytecode
    assert signal.getsignal(signal.SIGTERM) is before
