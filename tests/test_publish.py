"""`synthgen publish` and `synthgen export --format mvtec|anomalib|webdataset`, checked by their real consumers.

The published folder is read with ``datasets.load_dataset("parquet", ...)`` and with ``mlcroissant``; the
exports with anomalib's Tabular, Folder and MVTecAD datamodules and with the ``webdataset`` package. No
test touches a network: the Hugging Face libraries run offline and cache under the test's tmp folder.
Bad input (a build failing verify, an unknown or incompatible licence, an occupied target, a key
collision) is refused with one line, and nothing is left half written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from synthgen.generator.cli import main
from synthgen.generator.datasets.demo import render_demo
from synthgen.generator.errors import SynthgenError
from synthgen.generator.pipeline import build
from synthgen.generator.shards.reader import ShardDataset
from synthgen.generator.shards.untrusted import read_manifest
from synthgen.generator.config import BuildConfig

pytest.importorskip("pyarrow", reason="the publish extra is not installed: pip install -e '.[publish]'")
pytest.importorskip("datasets", reason="the publish extra is not installed: pip install -e '.[publish]'")
pytest.importorskip("mlcroissant", reason="the publish extra is not installed: pip install -e '.[publish]'")


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    """The Hugging Face libraries never reach for a network, and cache inside the test's tmp folder."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # croissant's datePublished: fixed, so reruns are equal


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    demo_root = render_demo(tmp_path_factory.mktemp("demo")).parent
    out = tmp_path_factory.mktemp("build") / "b"
    config = BuildConfig(dataset="demo", category="parts_box", root=str(demo_root), strategies=("draem", "cutpaste"),
                         num_samples=20, samples_per_shard=8, batch_size=4, image_size=(64, 64),
                         texture_source="perlin", seed=7)
    build(config, out, progress=False)  # 20 samples of 64x64 in 3 shards; DRAEM keeps some normal
    return out


@pytest.fixture(scope="module")
def published(built, tmp_path_factory) -> Path:
    to = tmp_path_factory.mktemp("pub") / "published"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", "1767225600")
        from synthgen.generator.publish import publish_build

        publish_build(built, to, with_normals=True, rows_per_file=8, progress=False)
    return to


def _run(args: list[str], capsys) -> tuple[int, str]:
    quiet = ["--quiet"] if args[0] in ("publish", "export", "build") else []
    with pytest.raises(SystemExit) as exit_info:
        main(args + quiet)
        sys.exit(0)
    return exit_info.value.code, capsys.readouterr().err


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")]


def _shard_rows(built: Path) -> dict[int, dict]:
    ds = ShardDataset(built, fields=("image", "mask"))
    rows = {}
    for i in range(len(ds)):
        s = ds[i]
        rows[s["index"]] = {"image": (s["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                            "mask": (s["mask"][0].numpy() * 255).astype(np.uint8), "strategy": s["strategy"],
                            "label": s["label"]}
    return rows


# ------------------------------------------------------------------------------------------ publish


def test_published_parquet_loads_with_datasets(built, published):
    import datasets
    import pyarrow.parquet as pq

    files = sorted(published.glob("data/train-*-of-*.parquet"))
    assert [f.name for f in files] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]  # 20 rows, 8 a file
    assert all(pq.ParquetFile(f).metadata.row_group(0).num_rows <= 64 for f in files)
    ds = datasets.load_dataset("parquet", data_files={"train": [str(f) for f in files]}, split="train",
                               cache_dir=str(published.parent / "hf-cache"))
    assert len(ds) == 20
    for column in ("image", "mask", "normal"):
        assert isinstance(ds.features[column], datasets.Image)
    assert ds.features["label"].names == ["normal", "anomalous"]
    shards = _shard_rows(built)
    for row in ds:
        want = shards[row["index"]]
        assert np.array_equal(np.asarray(row["image"]), want["image"])
        assert np.array_equal(np.asarray(row["mask"]), want["mask"])  # each row carries its own mask
        assert row["label"] == want["label"] and row["strategy"] == want["strategy"]
        assert row["source_license"] == "cc0-1.0" and row["category"] == "parts_box"
        assert isinstance(json.loads(row["params"]), dict)
    # The folder itself, as the Hub would load it: the card's configs point at the files.
    assert len(datasets.load_dataset(str(published), split="train", cache_dir=str(published.parent / "hf-cache2"))) == 20


def test_dataset_card_header_and_body(built, published):
    text = (published / "README.md").read_text()
    header = yaml.safe_load(text.split("---\n")[1])
    for key in ("license", "pretty_name", "task_categories", "tags", "annotations_creators", "source_datasets",
                "size_categories", "configs"):
        assert key in header, key
    assert header["annotations_creators"] == ["machine-generated"]
    assert header["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    manifest = read_manifest(built)
    for section in ("## Motivation", "## Composition", "## Collection process", "## Uses", "## Distribution",
                    "## Maintenance", "## Citations"):
        assert section in text, section
    assert manifest["config_hash"] in text and "synthgen build --strategy draem,cutpaste" in text
    assert f"synthgen code fingerprint `{manifest['environment']['synthgen_code'][:12]}`" in text
    assert "DRAEM" in text and "CutPaste" in text  # citations of the methods used
    for name, count in manifest["totals"]["strategies"].items():
        assert f"| `{name}` | {count} |" in text  # names from the manifest go in code spans
    with Image.open(published / "images" / "contact_sheet.png") as sheet:
        assert sheet.width > 100
    # no bench: the card says so plainly, croissant.json too
    assert "**No bench was run for this publication**" in text
    croissant = json.loads((published / "croissant.json").read_text())
    assert croissant["synthgen:bench"] == {"run": False} and croissant["@context"]["synthgen"].startswith("https://")


@pytest.fixture(scope="module")
def bench_of_built(built, tmp_path_factory) -> Path:
    """A real, tiny `synthgen bench` of the build (PBAS, CPU preset, 1 step, 1 seed)."""
    from synthgen.trainers.bench import bench

    out = tmp_path_factory.mktemp("bench") / "bench"
    bench(built, dataset="demo", root=None, category="parts_box", out=out, method="pbas", seeds=1, steps=1,
          preset="cpu", device="cpu", progress=False)
    return out


def test_publish_with_bench_puts_the_table_into_card_and_croissant(built, bench_of_built, tmp_path, capsys):
    to = tmp_path / "with-bench"
    code, err = _run(["publish", str(built), "--to", str(to), "--bench", str(bench_of_built)], capsys)
    assert code == 0, err
    text = (to / "README.md").read_text()
    table = (bench_of_built / "bench.md").read_text().strip()
    assert "## Usefulness (measured on real test images)" in text and table in text
    assert "Detector **pbas**" in text and "1 optimizer steps per run, preset cpu" in text and "seeds 0" in text
    assert "No bench was run" not in text and "![bench](bench/bench.png)" in text
    record = json.loads((bench_of_built / "bench.json").read_text())
    prop = json.loads((to / "croissant.json").read_text())["synthgen:bench"]
    assert prop["run"] is True and prop["method"] == "pbas" and prop["budget"]["optimizer_steps"] == 1
    assert prop["seeds"] == [0] and prop["test_split"]["counts"] == record["test_split"]["counts"]
    assert prop["summary"] == record["summary"]
    manifest = read_manifest(to)
    assert {"bench/bench.json", "bench/bench.md", "bench/bench.png"} <= set(manifest["publication"]["files"])
    assert manifest["publication"]["bench"] == prop["sha256"]
    code, err = _run(["verify", str(to)], capsys)
    assert code == 0, err
    import mlcroissant as mlc

    mlc.Dataset(jsonld=str(to / "croissant.json"))  # still a valid Croissant document


def test_bench_of_another_build_is_refused(built, bench_of_built, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(built, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["seed"] = manifest["seed"]  # same content, rewritten with other whitespace: another manifest file
    (other / "manifest.json").write_text(json.dumps(manifest))
    code, err = _run(["publish", str(other), "--to", str(tmp_path / "p"), "--bench", str(bench_of_built)], capsys)
    assert code == 2 and "measured another build" in err and err.count("\n") == 1
    code, err = _run(["publish", str(built), "--to", str(tmp_path / "p"), "--bench", str(tmp_path)], capsys)
    assert code == 2 and "bench.json: missing" in err
    assert not (tmp_path / "p").exists()


def test_rebuild_command_reproduces_the_config_hash(built, tmp_path, capsys):
    """The card's command, run as it stands, makes a build with the same config hash (and bytes)."""
    import shlex

    from synthgen.generator.publish.card import rebuild_command

    manifest = read_manifest(built)
    args = shlex.split(rebuild_command(manifest, out=str(tmp_path / "again")))[1:]
    code, err = _run(args, capsys)
    assert code == 0, err
    again = read_manifest(tmp_path / "again")
    assert again["config_hash"] == manifest["config_hash"]
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in manifest["shards"]]


def test_croissant_reads_records_and_validates(published):
    import mlcroissant as mlc

    doc = json.loads((published / "croissant.json").read_text())
    assert "http://mlcommons.org/croissant/1.0" in doc["conformsTo"]
    for field in ("rai:dataCollection", "rai:dataLimitations", "rai:machineAnnotationTools"):
        assert doc[field], field
    records = list(mlc.Dataset(jsonld=str(published / "croissant.json")).records("samples"))
    assert len(records) == 20
    first = records[0]
    assert first["samples/image"].size == (64, 64) and first["samples/mask"].mode == "L"
    validator = shutil.which("mlcroissant", path=str(Path(sys.executable).parent))
    if validator:  # the command a publisher runs
        result = subprocess.run([validator, "validate", "--jsonld", str(published / "croissant.json")],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]


def test_verify_works_on_a_published_folder(published, tmp_path, capsys):
    manifest = json.loads((published / "manifest.json").read_text())
    files = manifest["publication"]["files"]
    assert set(files) == {p.relative_to(published).as_posix() for p in published.rglob("*")
                          if p.is_file() and p.name != "manifest.json"}
    code, err = _run(["verify", str(published)], capsys)
    assert code == 0, err
    copy = tmp_path / "copy"
    shutil.copytree(published, copy)
    parquet = sorted(copy.glob("data/*.parquet"))[0]
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 1
    parquet.write_bytes(bytes(data))
    (copy / "stray.txt").write_text("x")
    code, _ = _run(["verify", str(copy)], capsys)
    assert code == 1
    from synthgen.generator.shards.verify import verify_build

    problems = verify_build(copy).problems
    assert any("DAMAGED" in p and parquet.name in p for p in problems) and any("UNLISTED stray.txt" in p for p in problems)


def test_republish_same_is_a_no_op_and_occupied_target_is_refused(built, published, tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in published.rglob("*")}
    code, err = _run(["publish", str(built), "--to", str(published), "--with-normals", "--rows-per-file", "8"], capsys)
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in published.rglob("*")} == before
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    code, err = _run(["publish", str(built), "--to", str(occupied)], capsys)
    assert code == 2 and "holds something else" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"] and not _leftovers(tmp_path)


def test_publishing_a_damaged_build_is_refused(built, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(built, damaged)
    shard = sorted(damaged.glob("*.h5"))[1]
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    code, err = _run(["publish", str(damaged), "--to", str(tmp_path / "pub")], capsys)
    assert code == 2 and "fails `synthgen verify`" in err and shard.name in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "pub").exists() and not _leftovers(tmp_path)


def _with_source(built: Path, tmp_path: Path, name: str, licence_text: str | None) -> Path:
    """A copy of the build whose manifest says its sources came from dataset ``name`` under a folder holding
    ``licence_text`` as license.txt (or no licence file)."""
    copy = tmp_path / f"build-{name}"
    shutil.copytree(built, copy)
    root = tmp_path / f"data-{name}"
    (root / "parts_box").mkdir(parents=True)
    if licence_text is not None:
        (root / "parts_box" / "license.txt").write_text(licence_text)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["dataset"].update(name=name, root=str(root))
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_licence_from_the_source_files_and_refusals(built, tmp_path, capsys):
    # A user's folder with no licence statement: --license is required.
    user = _with_source(built, tmp_path, "folder", None)
    code, err = _run(["publish", str(user), "--to", str(tmp_path / "p1")], capsys)
    assert code == 2 and "cannot be determined" in err and "--license" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "p1").exists() and not _leftovers(tmp_path)
    code, err = _run(["publish", str(user), "--to", str(tmp_path / "p1"), "--license", "cc-by-4.0"], capsys)
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "p1" / "README.md").read_text().split("---\n")[1])["license"] == "cc-by-4.0"

    # An NC-SA source (MVTec's wording) keeps its licence, and may never be published more permissively.
    nc_sa = _with_source(built, tmp_path, "folder2", "Attribution-NonCommercial-ShareAlike 4.0 International\n...")
    for looser in ("cc-by-4.0", "cc-by-nc-4.0", "cc0-1.0"):
        code, err = _run(["publish", str(nc_sa), "--to", str(tmp_path / "p2"), "--license", looser], capsys)
        assert code == 2 and "cc-by-nc-sa-4.0" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "p2").exists() and not _leftovers(tmp_path)
    code, err = _run(["publish", str(nc_sa), "--to", str(tmp_path / "p2")], capsys)
    assert code == 0, err
    card = (tmp_path / "p2" / "README.md").read_text()
    assert "license: cc-by-nc-sa-4.0" in card and "Modifications:" in card and "license.txt" in card
    manifest = json.loads((tmp_path / "p2" / "manifest.json").read_text())
    assert manifest["publication"]["source_license"]["id"] == "cc-by-nc-sa-4.0"


def test_real_mvtec_licence_files_are_read(loco_root):
    from synthgen.generator.publish.licence import _attribution_section, licences_from_files, most_restrictive

    found = licences_from_files([loco_root / "juice_bottle"])
    licence, path = most_restrictive(found)
    assert licence == "cc-by-nc-sa-4.0" and path.name in ("license.txt", "readme.txt")
    assert {licence for licence, _ in found} == {"cc-by-nc-sa-4.0"}
    assert "Bergmann" in _attribution_section(path.parent)


# ------------------------------------------------------------------------------------------ exports


@pytest.fixture(scope="module")
def exports(built, tmp_path_factory) -> dict[str, Path]:
    from synthgen.generator.shards.export import export_build

    base = tmp_path_factory.mktemp("exports")
    return {fmt: export_build(built, base / fmt, fmt=fmt, progress=False) for fmt in ("mvtec", "anomalib", "webdataset")}


def test_mvtec_export_has_train_good_no_leak_and_honest_counts(built, exports):
    root = exports["mvtec"]
    manifest = read_manifest(built)
    train = sorted((root / "train" / "good").glob("*.png"))
    assert len(train) == len(manifest["dataset"]["sources"])
    record = json.loads((root / "export.json").read_text())
    for name, count in manifest["totals"]["strategies"].items():
        c = record["counts"][name]
        assert c["anomalous"] + c["normal"] == count
        assert len(list((root / "test" / name).glob("*.png"))) == c["anomalous"]
        assert len(list((root.parent / "synthetic_normal" / "parts_box" / name).glob("*.png"))) == c["normal"]
    assert not (root / "test" / "good").exists()
    # no test image is a training image
    train_pixels = {np.asarray(Image.open(p)).tobytes() for p in train}
    assert not [p for p in (root / "test").rglob("*.png") if np.asarray(Image.open(p)).tobytes() in train_pixels]
    # but the normal samples that are copies of training images exist, outside the MVTec tree
    normals = list((root.parent / "synthetic_normal").rglob("*.png"))
    assert normals and any(np.asarray(Image.open(p)).tobytes() in train_pixels for p in normals)


def _check_masks(samples, shards: dict[int, dict]) -> None:
    """Every anomalous image has its own mask: the file pairs by name, and its pixels are that sample's mask."""
    abnormal = samples[samples.label_index == 1]
    assert len(abnormal) == sum(1 for r in shards.values() if r["label"])
    for image_path, mask_path in zip(abnormal.image_path, abnormal.mask_path):
        index = int(Path(image_path).stem)
        assert Path(mask_path).name == f"{index:06d}_mask.png"
        assert Path(mask_path).parent.name == Path(image_path).parent.name == shards[index]["strategy"]
        assert np.array_equal(np.asarray(Image.open(mask_path)), shards[index]["mask"])
        assert np.array_equal(np.asarray(Image.open(image_path)), shards[index]["image"])


def test_anomalib_datamodules_read_the_exports(built, exports):
    pytest.importorskip("anomalib", reason="anomalib is not installed: pip install -e '.[publish,test-consumers]'")
    import pandas as pd
    from anomalib.data import Folder, MVTecAD, Tabular

    shards = _shard_rows(built)
    n_sources = len(read_manifest(built)["dataset"]["sources"])

    # Tabular reads samples.parquet. anomalib 2.7 assigns Path objects into the table's path columns, which
    # pandas 3's default string dtype refuses: read the table with pandas' object strings (README: exports).
    with pd.option_context("future.infer_string", False):
        tabular = Tabular.from_file(name="parts_box", file_path=exports["anomalib"] / "samples.parquet",
                                    root=exports["anomalib"], num_workers=0, test_split_mode="none",
                                    val_split_mode="none")
    tabular.setup()
    table = tabular.train_data.samples
    assert len(table) == n_sources and (table.label_index == 0).all()
    _check_masks(pd.read_parquet(exports["anomalib"] / "samples.parquet").pipe(
        lambda t: t.assign(image_path=[str(exports["anomalib"] / p) for p in t.image_path],
                           mask_path=[str(exports["anomalib"] / p) if p else "" for p in t.mask_path])), shards)

    folder = Folder(name="parts_box", root=exports["mvtec"], normal_dir="train/good", abnormal_dir="test",
                    mask_dir="ground_truth", num_workers=0, val_split_mode="none")
    folder.setup()
    assert len(folder.train_data) + (folder.test_data.samples.label_index == 0).sum() == n_sources
    _check_masks(folder.test_data.samples, shards)

    mvtec = MVTecAD(root=exports["mvtec"].parent, category="parts_box", num_workers=0, val_split_mode="none")
    mvtec.setup()
    assert len(mvtec.train_data) > 0  # the MVTec habit: train/good exists
    _check_masks(mvtec.test_data.samples, shards)
    item = mvtec.test_data[int(np.flatnonzero(mvtec.test_data.samples.label_index == 1)[0])]
    assert item.gt_mask.shape == (64, 64) and item.gt_mask.any()


def test_webdataset_shards_read_with_webdataset(built, exports):
    wds = pytest.importorskip("webdataset", reason="webdataset is not installed: pip install -e '.[publish]'")
    tars = sorted(str(p) for p in exports["webdataset"].glob("*.tar"))
    assert [Path(t).name for t in tars] == ["demo-parts_box-00000-of-00001.tar"]
    shards = _shard_rows(built)
    seen = set()
    for sample in wds.WebDataset(tars, shardshuffle=False).decode("rgb8"):
        meta = sample["json"]
        index = int(sample["__key__"])
        assert meta["index"] == index and meta["strategy"] == shards[index]["strategy"]
        assert np.array_equal(sample["png"], shards[index]["image"])
        assert np.array_equal(sample["mask.png"][..., 0], shards[index]["mask"])
        seen.add(index)
    assert seen == set(shards)


def test_export_key_collision_is_one_line_and_leaves_nothing(built, tmp_path, capsys):
    collided = tmp_path / "collided"
    shutil.copytree(built, collided)
    shards = sorted(collided.glob("*.h5"))
    with h5py.File(shards[0], "r") as f:
        first = int(f["index"][0])
    with h5py.File(shards[1], "r+") as f:
        f["index"][1] = first
    for fmt in ("webdataset", "mvtec"):
        code, err = _run(["export", str(collided), "--format", fmt, "--to", str(tmp_path / fmt)], capsys)
        assert code == 2 and f"key {first:06d} would collide" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / fmt).exists() and not _leftovers(tmp_path)


def test_export_needs_the_training_images(built, tmp_path, capsys):
    moved = _with_source(built, tmp_path, "folder", None)
    code, err = _run(["export", str(moved), "--to", str(tmp_path / "out")], capsys)
    assert code == 2 and "--source-root" in err and not (tmp_path / "out").exists()
    manifest = read_manifest(built)
    code, err = _run(["export", str(moved), "--to", str(tmp_path / "out"), "--source-root",
                      manifest["dataset"]["root"]], capsys)
    assert code == 0, err


def test_publish_without_the_extra_is_one_line(monkeypatch, built, tmp_path):
    monkeypatch.setitem(sys.modules, "mlcroissant", None)  # import fails as if not installed
    from synthgen.generator.publish import publish_build

    with pytest.raises(SynthgenError, match=r"synthgen\[publish\]"):
        publish_build(built, tmp_path / "p")


def test_push_to_hub_uploads_the_folder_as_is(published, monkeypatch):
    """No network: huggingface_hub's HfApi is replaced by a recorder; the folder goes up unchanged."""
    import huggingface_hub

    calls = []

    class Recorder:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw["repo_id"], kw))

    monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
    from synthgen.generator.publish import push_to_hub

    assert push_to_hub(published, "me/parts") == "https://huggingface.co/datasets/me/parts"
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][2]["repo_type"] == calls[1][2]["repo_type"] == "dataset"
    assert calls[1][2]["folder_path"] == str(published)
