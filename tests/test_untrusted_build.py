"""A build is untrusted input: hostile artefacts made from a real tiny build, one test per vector.

Every refusal must be: a non-zero exit, exactly one line on stderr naming the file and the problem, no
traceback, nothing written outside the target, nothing of the input changed or deleted. The build is
made once per module (a tiny MVTec AD layout, 64 px, 3 shards); each test copies it and breaks the copy.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from synthgen.generator.cli import main
from synthgen.generator.errors import SynthgenError
from synthgen.generator.shards.reader import ShardDataset
from synthgen.generator.shards.untrusted import resolve_inside
from synthgen.trainers.cli import eval_main, train_main

SIZE = 64


# ------------------------------------------------------------------------------------------ helpers


def _run(capsys, entry, args: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a command line run in-process."""
    with pytest.raises(SystemExit) as exit_info:
        entry(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _one_line_error(code: int, err: str, *needles) -> str:
    """The single stderr line of a refused command, checked: exit 2, one line, no traceback, needles in it."""
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and ": error: " in lines[0], err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def _snapshot(root: Path, skip: Path | None = None) -> dict[str, bytes | None]:
    """Every path under ``root`` (but ``skip``) with its bytes (None for folders and links): a change
    anywhere (written, deleted, modified) shows as a difference."""
    state: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        state[str(path.relative_to(root))] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return state


def _sample_build(root: Path) -> Path:
    good = root / "data" / "widget" / "train" / "good"
    good.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(good / f"{i:03d}.png")
    out = root / "build"
    main(["build", "--dataset", "mvtec_ad", "--root", str(root / "data"), "--category", "widget", "--strategy", "cutpaste",
          "--num-samples", "6", "--samples-per-shard", "2", "--image-size", str(SIZE), "--out", str(out), "--quiet",
          "--device", "cpu"])
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """The real tiny build every hostile artefact starts from (never modified)."""
    return _sample_build(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def world(tmp_path, pristine) -> Path:
    """tmp_path/build: a fresh copy of the pristine build; tmp_path/outside: a folder beside it."""
    shutil.copytree(pristine, tmp_path / "build")
    (tmp_path / "outside").mkdir()
    return tmp_path


def _manifest(build: Path) -> dict:
    return json.loads((build / "manifest.json").read_text())


def _write_manifest(build: Path, manifest: dict) -> None:
    (build / "manifest.json").write_text(json.dumps(manifest))


def _shards(build: Path) -> list[Path]:
    return [build / s["file"] for s in _manifest(build)["shards"]]


def _readers(capsys, build: Path, tmp_path: Path) -> dict[str, tuple[int, str]]:
    """Run every reader of a build on ``build``: {reader: (exit status, stderr)}; ShardDataset's
    SynthgenError is mapped to exit 2 and its message to the stderr line."""
    results = {}
    for name, entry, args in [
        ("inspect", main, ["inspect", str(build), "--sheet", str(tmp_path / "sheet.png")]),
        ("export", main, ["export", str(build), "--to", str(tmp_path / "exported"), "--quiet"]),
        ("train", train_main, ["reconstruction", "--shards", str(build), "--out", str(tmp_path / "run"), "--epochs", "1",
                               "--base-width", "4", "--workers", "0", "--quiet", "--device", "cpu"]),
    ]:
        code, _, err = _run(capsys, entry, args)
        results[name] = (code, err)
    try:
        ShardDataset(build)
        results["ShardDataset"] = (0, "")
    except SynthgenError as e:
        results["ShardDataset"] = (2, f"ShardDataset: error: {e}\n")
    return results


def _all_refused(capsys, world: Path, build: Path, *needles) -> None:
    """Every reader refuses ``build`` in one line holding ``needles``, writes nothing and changes nothing."""
    before = _snapshot(world)
    for reader, (code, err) in _readers(capsys, build, world).items():
        try:
            _one_line_error(code, err, *needles)
        except AssertionError as e:
            raise AssertionError(f"{reader}: {e}") from None
    assert _snapshot(world) == before


# --------------------------------------------------------------------------------- path traversal


@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_manifest_shard_file_outside_the_build_is_refused(capsys, world, how):
    build = world / "build"
    manifest = _manifest(build)
    shard = build / manifest["shards"][0]["file"]
    decoy = world / "outside" / shard.name  # a valid shard with the right hash, outside the build
    shutil.move(shard, decoy)
    manifest["shards"][0]["file"] = str(decoy) if how == "absolute" else f"../outside/{shard.name}"
    _write_manifest(build, manifest)

    before = _snapshot(world)
    code, out, err = _run(capsys, main, ["verify", str(build)])
    _one_line_error(code, err, build / "manifest.json", "shard file name", "contains '/'")
    assert "ok" not in out
    _all_refused(capsys, world, build, build / "manifest.json", "shard file")
    assert _snapshot(world) == before


def test_shard_symlinked_out_of_the_build_is_refused(capsys, world):
    build = world / "build"
    shard = _shards(build)[0]
    decoy = world / "outside" / shard.name
    shutil.move(shard, decoy)
    shard.symlink_to(decoy)
    code, out, err = _run(capsys, main, ["verify", str(build)])
    _one_line_error(code, err, build / "manifest.json", "leads outside", "symbolic link")
    _all_refused(capsys, world, build, "leads outside")


@pytest.mark.parametrize("bad", ["../x", "/abs/x", "..", "a\\b", "x\ny", ".hidden"])
def test_strategy_name_in_a_shard_cannot_place_files(capsys, world, bad):
    build = world / "build"
    for shard in _shards(build):
        with h5py.File(shard, "r+") as f:
            strategies = f["strategy"]
            strategies[0] = bad
    before = _snapshot(world)
    code, _, err = _run(capsys, main, ["export", str(build), "--to", str(world / "exported"), "--quiet"])
    _one_line_error(code, err, _shards(build)[0], "strategy name")
    assert _snapshot(world) == before  # --to not created, nothing at ../x or /abs/x
    assert not Path("/abs").exists()
    with pytest.raises(SynthgenError, match="strategy name"):
        ShardDataset(build)


@pytest.mark.parametrize("key", ["category", "name", "split"])
def test_category_or_dataset_name_in_the_manifest_cannot_place_files(capsys, world, key):
    build = world / "build"
    manifest = _manifest(build)
    manifest["dataset"][key] = "../../escaped"
    _write_manifest(build, manifest)
    _all_refused(capsys, world, build, build / "manifest.json", "name '../../escaped'")
    assert not (world.parent / "escaped").exists()


def test_source_id_in_a_shard_is_checked(world):
    build = world / "build"
    with h5py.File(_shards(build)[0], "r+") as f:
        f["source_id"][0] = "train/../../etc/passwd"
    with pytest.raises(SynthgenError, match="source id") as info:
        ShardDataset(build)
    assert "\n" not in str(info.value)


def test_resolve_inside_refuses_every_way_out(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    for bad in ["/etc/passwd", "../x", "a/../../x", "C:\\x", "\\\\server\\x", "link/x", ""]:
        with pytest.raises(SynthgenError):
            resolve_inside(tmp_path / "root", bad, what="file", where="test")
    assert resolve_inside(tmp_path / "root", "a/b.h5", what="file", where="test") == (tmp_path / "root" / "a" / "b.h5").resolve()


def test_names_are_checked_where_they_are_written(capsys, tmp_path):
    """A build can never produce a name its readers refuse: the same rule refuses it at build time."""
    from synthgen.generator.config import BuildConfig

    for field, value in [("category", "../x"), ("category", "/abs"), ("dataset", "a/b"), ("strategies", ("x/../y",))]:
        kwargs = {"dataset": "demo", "category": "parts_box", "strategies": ("cutpaste",), field: value}
        with pytest.raises(SynthgenError, match="name"):
            BuildConfig(**kwargs)


# ------------------------------------------------------------------------ code in a checkpoint


class _Payload:
    """Unpickling this object calls open(marker, "w"): the marker file shows that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, pristine) -> Path:
    """A real reconstruction run (1 epoch, tiny network) with its last.ckpt and model.pt."""
    out = tmp_path_factory.mktemp("trained") / "run"
    train_main(["reconstruction", "--shards", str(pristine), "--out", str(out), "--epochs", "1", "--base-width", "4",
                "--batch-size", "4", "--workers", "0", "--quiet", "--device", "cpu"])
    assert (out / "model.pt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    return out


def _poisoned_copy(trained_run: Path, tmp_path: Path, name: str) -> tuple[Path, Path]:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    marker = tmp_path / "PWNED"
    target = run / name
    blob = torch.load(target, map_location="cpu", weights_only=True)
    blob["payload"] = _Payload(marker)
    torch.save(blob, target)
    return run, marker


def _resume_args(pristine: Path, run: Path) -> list[str]:
    return ["reconstruction", "--shards", str(pristine), "--out", str(run), "--epochs", "1", "--base-width", "4",
            "--batch-size", "4", "--workers", "0", "--quiet", "--device", "cpu", "--resume"]


def test_resume_from_a_checkpoint_with_code_is_refused(capsys, trained_run, pristine, tmp_path):
    run, marker = _poisoned_copy(trained_run, tmp_path, "checkpoints/last.ckpt")
    code, _, err = _run(capsys, train_main, _resume_args(pristine, run))
    _one_line_error(code, err, run / "checkpoints" / "last.ckpt", "refused", "could run code", "io.open")
    assert not marker.exists()


@pytest.mark.slow  # a fresh process imports torch and Lightning: ~10-40 s on a busy 2-core machine
def test_resume_from_a_checkpoint_with_code_is_one_line_in_a_real_process(trained_run, pristine, tmp_path):
    """As the user runs it: Lightning's own stderr output (printed when a Trainer is made) counts too."""
    run, marker = _poisoned_copy(trained_run, tmp_path, "checkpoints/last.ckpt")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", "from synthgen.trainers.cli import train_main; train_main()", *_resume_args(pristine, run)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    _one_line_error(proc.returncode, proc.stderr, run / "checkpoints" / "last.ckpt", "refused", "could run code", "io.open")
    assert not marker.exists()


def test_lightning_itself_loads_resume_checkpoints_weights_only(trained_run, tmp_path):
    """Even past our own check, the loader Lightning uses for ckpt_path gets weights_only=True."""
    from lightning.fabric.utilities.cloud_io import _load

    from synthgen.generator.safe_load import LIGHTNING_WEIGHTS_ONLY

    run, marker = _poisoned_copy(trained_run, tmp_path, "checkpoints/last.ckpt")
    with pytest.raises(Exception, match="GLOBAL"):
        _load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=LIGHTNING_WEIGHTS_ONLY)
    assert not marker.exists()


def test_eval_of_a_model_file_with_code_is_refused(capsys, trained_run, tmp_path):
    run, marker = _poisoned_copy(trained_run, tmp_path, "model.pt")
    code, _, err = _run(capsys, eval_main, [str(run), "--dataset", "mvtec_ad", "--root", str(tmp_path), "--category", "x"])
    _one_line_error(code, err, run / "model.pt", "refused")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "random", "wrong_shape", "not_a_dict", "empty"])
def test_eval_of_a_damaged_model_file_is_one_line(capsys, trained_run, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    model = run / "model.pt"
    if damage == "truncated":
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    elif damage == "random":
        model.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif damage == "wrong_shape":
        blob = torch.load(model, weights_only=True)
        key = next(iter(blob["state_dict"]))
        blob["state_dict"][key] = torch.zeros(3, 3)
        torch.save(blob, model)
    elif damage == "not_a_dict":
        torch.save([1, 2, 3], model)
    else:
        model.write_bytes(b"")
    code, _, err = _run(capsys, eval_main, [str(run), "--dataset", "mvtec_ad", "--root", str(tmp_path), "--category", "x"])
    _one_line_error(code, err, model)


def test_every_loader_of_user_files_refuses_code(tmp_path):
    """PiDiNet, backbone, SAM-style, VGG19, e2i generator and plain-loop checkpoints all load through
    generator.safe_load: none of them runs the payload."""
    from synthgen.generator.models.e2i import read_generator_file
    from synthgen.generator.training.gan import load_vgg19_features
    from synthgen.generator.models.pidinet import read_checkpoint
    from synthgen.trainers.epoch_log import read_epoch_checkpoint

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Payload(marker), "log": []}, evil)
    for load in (read_checkpoint, load_vgg19_features, read_generator_file, read_epoch_checkpoint):
        with pytest.raises(SynthgenError, match="could run code") as info:
            load(evil)
        assert "\n" not in str(info.value) and str(evil) in str(info.value)
    assert not marker.exists()


# -------------------------------------------------------------------------------------- data loss


@pytest.mark.parametrize("where", ["itself", "inside", "parent", "symlink"])
def test_export_never_deletes_or_writes_into_its_input(capsys, world, where):
    build = world / "build"
    (world / "link").symlink_to(build)
    to = {"itself": build, "inside": build / "sub", "parent": world, "symlink": world / "link"}[where]
    before = _snapshot(world)
    code, _, err = _run(capsys, main, ["export", str(build), "--to", str(to), "--overwrite", "--quiet"])
    _one_line_error(code, err, "--to", "input build")
    assert _snapshot(world) == before


def test_export_to_a_file_is_one_line(capsys, world):
    target = world / "outside" / "notes.txt"
    target.write_text("precious")
    code, _, err = _run(capsys, main, ["export", str(world / "build"), "--to", str(target), "--overwrite", "--quiet"])
    _one_line_error(code, err, target, "is a file")
    assert target.read_text() == "precious"


def test_export_overwrite_replaces_an_old_export_only(capsys, world):
    build, to = world / "build", world / "exported"
    main(["export", str(build), "--to", str(to), "--quiet"])
    (to / "old.txt").write_text("old")  # an earlier export, with something added to it
    main(["export", str(build), "--to", str(to), "--overwrite", "--quiet"])
    assert not (to / "old.txt").exists() and (to / "widget" / "export.json").is_file()
    # a folder that is not an export is never replaced (tests/test_hostile_records.py)
    assert not [p for p in world.iterdir() if p.name.startswith(".tmp-")]


# ------------------------------------------------------------------- damaged builds: one line each


def test_truncated_shard(capsys, world):
    build = world / "build"
    shard = _shards(build)[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    _all_refused(capsys, world, build, shard)


@pytest.mark.parametrize("field, array", [
    ("image", np.zeros((2, SIZE, SIZE, 3), np.float32)),  # wrong dtype
    ("image", np.zeros((2, SIZE, SIZE), np.uint8)),  # wrong shape
    ("mask", np.zeros((2, SIZE, SIZE, 1), np.uint8)),  # wrong shape
    ("label", np.zeros((2, 2), np.uint8)),  # not a column
    ("strategy", np.zeros(2, np.int64)),  # numbers where names belong
])
def test_shard_dataset_of_the_wrong_dtype_or_shape(capsys, world, field, array):
    build = world / "build"
    shard = _shards(build)[0]
    with h5py.File(shard, "r+") as f:
        del f[field]
        f[field] = array
    _all_refused(capsys, world, build, shard, repr(field))


def test_shard_with_text_that_is_not_utf8(capsys, world):
    build = world / "build"
    shard = _shards(build)[0]
    with h5py.File(shard, "r+") as f:
        del f["strategy"]
        f.create_dataset("strategy", data=np.array([b"\xff\xfe", b"ok"], dtype=object), dtype=h5py.string_dtype("utf-8"))
    _all_refused(capsys, world, build, shard, "UTF-8")


@pytest.mark.parametrize("damage", ["missing_key", "not_json", "a_list", "deep", "wrong_type"])
def test_damaged_manifest(capsys, world, damage):
    build = world / "build"
    path = build / "manifest.json"
    manifest = _manifest(build)
    if damage == "missing_key":
        del manifest["shards"]
        _write_manifest(build, manifest)
    elif damage == "not_json":
        path.write_text("{not json")
    elif damage == "a_list":
        path.write_text("[]")
    elif damage == "deep":
        path.write_text("[" * 100000 + "]" * 100000)
    else:
        manifest["shards"][0]["num_samples"] = "two"
        _write_manifest(build, manifest)
    code, _, err = _run(capsys, main, ["verify", str(build)])
    _one_line_error(code, err, path)
    _all_refused(capsys, world, build, path)


def test_manifest_listing_a_missing_shard(capsys, world):
    build = world / "build"
    shard = _shards(build)[2]
    shard.unlink()
    code, out, _ = _run(capsys, main, ["verify", str(build)])
    assert code == 1 and f"MISSING  {shard.name}" in out
    _all_refused(capsys, world, build, shard, "missing")


def test_shard_sample_count_differs_from_the_manifest(capsys, world):
    build = world / "build"
    manifest = _manifest(build)
    last = len(manifest["shards"]) - 1
    claim_samples(manifest, last, 1)  # consistently (the last shard may be short): only the shard itself can tell
    _write_manifest(build, manifest)
    _all_refused(capsys, world, build, _shards(build)[last], "manifest says 1")


def claim_samples(manifest: dict, index: int, n: int) -> None:
    """Make shard ``index`` of ``manifest`` claim ``n`` samples with every count of the manifest kept
    consistent (per-shard tables, later shards' first_index, totals): a forgery only the shard can expose."""
    shard = manifest["shards"][index]
    delta = n - shard["num_samples"]
    strategy = max(shard["strategies"], key=shard["strategies"].get)  # one whose count can shrink
    label = max(shard["labels"], key=shard["labels"].get)
    for table in ("redraws", "fallback_normal"):  # keep them within the strategy's new count
        if table in shard and strategy in shard[table]:
            manifest["totals"][table][strategy] -= shard[table].pop(strategy)
    shard["num_samples"] = n
    for entry in (shard, manifest["totals"]):
        entry["strategies"][strategy] += delta
        entry["labels"][label] += delta
    for later in manifest["shards"][index + 1:]:
        later["first_index"] += delta
    manifest["totals"]["samples"] += delta


def test_build_folder_that_is_a_file(capsys, world):
    target = world / "outside" / "file.txt"
    target.write_text("x")
    _all_refused(capsys, world, target, target)


@pytest.mark.parametrize("where", ["folder", "under_a_file", "not_png"])
def test_inspect_sheet_that_cannot_be_written(capsys, world, where):
    build = world / "build"
    (world / "outside" / "file.txt").write_text("x")
    sheet = {"folder": world / "outside", "under_a_file": world / "outside" / "file.txt" / "sheet.png",
             "not_png": build / "manifest.json"}[where]
    before = _snapshot(world)
    code, out, err = _run(capsys, main, ["inspect", str(build), "--sheet", str(sheet)])
    _one_line_error(code, err, "--sheet")
    assert out == ""  # refused before printing anything
    assert _snapshot(world) == before


def test_damaged_chunk_in_a_dataloader_worker_is_one_line(world):
    """A read error inside a DataLoader worker process reaches the user as the worker's one line."""
    from torch.utils.data import DataLoader

    build = world / "build"
    data = ShardDataset(build)
    shard = data.files[0]
    os.truncate(shard, 4000)  # damaged after the index was made: the pixels are gone
    with pytest.raises(SynthgenError) as info:
        list(DataLoader(data, num_workers=1, batch_size=2))
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message and str(shard) in message


def test_resolve_inside_survives_link_loops_and_nul_bytes(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "loop").symlink_to(root / "loop")
    for bad in ["loop/x", "a\0b"]:
        with pytest.raises(SynthgenError) as info:
            resolve_inside(root, bad, what="shard file", where="manifest.json")
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("how", ["external_link", "external_storage", "virtual"])
def test_shard_dataset_pointing_at_another_file_is_refused(capsys, world, how):
    """HDF5 can place a dataset's bytes in another file: a shard that does would read outside the build."""
    build = world / "build"
    shard = _shards(build)[0]
    secret = world / "outside" / "secret.bin"
    secret.write_bytes(bytes(range(256)) * 200)
    with h5py.File(shard, "r+") as f:
        shape, dtype = f["image"].shape, f["image"].dtype
        del f["image"]
        if how == "external_link":
            with h5py.File(world / "outside" / "other.h5", "w") as other:
                other["image"] = np.zeros(shape, dtype)
            f["image"] = h5py.ExternalLink(str(world / "outside" / "other.h5"), "image")
        elif how == "external_storage":
            f.create_dataset("image", shape=shape, dtype=dtype, external=[(str(secret), 0, h5py.h5f.UNLIMITED)])
        else:
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            with h5py.File(world / "outside" / "other.h5", "w") as other:
                other["image"] = np.zeros(shape, dtype)
            layout[...] = h5py.VirtualSource(str(world / "outside" / "other.h5"), "image", shape=shape)
            f.create_virtual_dataset("image", layout)
    _all_refused(capsys, world, build, shard, "'image'")


def test_shard_claiming_huge_samples_is_refused_before_allocating(capsys, world):
    """An HDF5 header can claim any shape while storing nothing: no reader may allocate what it claims."""
    build = world / "build"
    shard = _shards(build)[0]
    with h5py.File(shard, "r+") as f:
        del f["image"], f["mask"]
        f.create_dataset("image", shape=(2, 200_000, 200_000, 3), dtype=np.uint8, chunks=(1, 256, 256, 3))
        f.create_dataset("mask", shape=(2, 200_000, 200_000), dtype=np.uint8, chunks=(1, 256, 256))
    assert shard.stat().st_size < 10_000_000
    _all_refused(capsys, world, build, shard, "'image'")


def test_shard_images_of_another_size_than_the_manifest_says(capsys, world):
    build = world / "build"
    manifest = _manifest(build)
    manifest["config"]["image_size"] = [SIZE * 2, SIZE * 2]
    _write_manifest(build, manifest)
    _all_refused(capsys, world, build, _shards(build)[0], "manifest says")


def test_manifest_too_large_to_be_one_is_refused_unparsed(capsys, world, monkeypatch):
    import synthgen.generator.shards.untrusted as untrusted

    monkeypatch.setattr(untrusted, "MAX_MANIFEST_BYTES", 1000)  # stands for a multi-GB file
    build = world / "build"
    code, _, err = _run(capsys, main, ["verify", str(build)])
    _one_line_error(code, err, build / "manifest.json", "larger than")


def test_a_real_shard_passes_every_check(pristine):
    """The checks accept everything the writer makes (every metadata column, S64 hashes included)."""
    from synthgen.generator.shards.format import CORE_FIELDS, META_FIELDS
    from synthgen.generator.shards.untrusted import check_shard, open_shard, read_manifest

    manifest = read_manifest(pristine)
    for entry in manifest["shards"]:
        path = pristine / entry["file"]
        with open_shard(path) as f:
            n = check_shard(f, path, (*META_FIELDS, *CORE_FIELDS), entry["num_samples"], manifest["config"]["image_size"])
        assert n == entry["num_samples"]
