"""`synthgen build --dataset mvtec_loco --strategy ...` with no --root and no --category: the data is
found in $SYNTHGEN_DATA/<dataset>, else ./datasets/<dataset>, and every category is built into its
own folder. The fake LOCO layouts are the demo dataset rendered small and renamed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from synthgen.generator.cli import main
from synthgen.generator.datasets import dataset_categories, load_dataset, locate_root
from synthgen.generator.datasets.demo import DemoCounts, render_demo
from synthgen.generator.datasets.locate import DATA_ENV, FOLDER_NAMES
from synthgen.generator.errors import SynthgenError

SMALL = DemoCounts(train=3, validation=0, test_good=0, logical=0, structural=0)


@pytest.fixture(scope="module")
def demo_category(tmp_path_factory) -> Path:
    """A small demo category (MVTec LOCO layout) to copy under other names."""
    return render_demo(tmp_path_factory.mktemp("demo"), counts=SMALL)


def loco_root(folder: Path, demo_category: Path, categories=("box_a", "box_b")) -> Path:
    """``folder`` holding the given categories (copies of the demo) and a stray non-category folder."""
    for name in categories:
        shutil.copytree(demo_category, folder / name)
    (folder / "license_and_readme").mkdir(parents=True)
    return folder


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    """No $SYNTHGEN_DATA and an empty working directory, whatever the machine running the tests has."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_root_from_synthgen_data_first_then_local_datasets(no_data_env, monkeypatch, demo_category):
    data = no_data_env / "data"
    local = loco_root(no_data_env / "datasets" / "mvtec_loco", demo_category)
    assert locate_root("mvtec_loco") == local.absolute()  # $SYNTHGEN_DATA unset: ./datasets, as anomalib
    monkeypatch.setenv(DATA_ENV, str(data))
    assert locate_root("mvtec_loco") == local.absolute()  # $SYNTHGEN_DATA lacks it: still ./datasets
    mine = loco_root(data / "mvtec_loco", demo_category)
    assert locate_root("mvtec_loco") == mine.absolute()  # $SYNTHGEN_DATA wins
    assert load_dataset("mvtec_loco", None, "box_a").root == mine.absolute()  # what precompute and trainers get


def test_the_archive_folder_name_is_found_too(no_data_env, demo_category):
    archive = loco_root(no_data_env / "datasets" / "mvtec_loco_anomaly_detection", demo_category)
    assert locate_root("mvtec_loco") == archive.absolute()
    preferred = loco_root(no_data_env / "datasets" / "mvtec_loco", demo_category)
    assert locate_root("mvtec_loco") == preferred.absolute()  # synthgen's own name comes first


def test_not_found_names_every_place_it_looked(no_data_env, monkeypatch, capsys):
    monkeypatch.setenv(DATA_ENV, str(no_data_env / "data"))
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--dataset", "mvtec_loco", "--strategy", "cutpaste", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    for base in (no_data_env / "data", no_data_env / "datasets"):
        for name in FOLDER_NAMES["mvtec_loco"]:
            assert str(base / name) in err
    assert not (no_data_env / "out").exists()
    monkeypatch.delenv(DATA_ENV)
    with pytest.raises(SynthgenError, match=rf"\${DATA_ENV} is not set"):
        locate_root("mvtec_loco")
    with pytest.raises(SynthgenError, match="your own layout"):
        locate_root("folder")


def test_categories_are_the_folders_holding_train_good(tmp_path, demo_category):
    root = loco_root(tmp_path / "loco", demo_category, categories=("zeta", "alpha"))
    (root / "half_copied" / "train").mkdir(parents=True)  # no train/good/: not a category
    assert dataset_categories("mvtec_loco", root) == ["alpha", "zeta"]
    with pytest.raises(SynthgenError, match="no categories"):
        dataset_categories("mvtec_ad", root / "license_and_readme")
    visa = tmp_path / "visa"
    (visa / "split_csv").mkdir(parents=True)
    (visa / "split_csv" / "1cls.csv").write_text(
        "object,split,label,image,mask\npcb1,train,normal,a.JPG,\ncandle,train,normal,b.JPG,\npcb1,test,normal,c.JPG,\n"
    )
    assert dataset_categories("visa", visa) == ["candle", "pcb1"]


def _shards(folder: Path) -> dict[str, str]:
    return {e["file"]: e["sha256"] for e in json.loads((folder / "manifest.json").read_text())["shards"]}


def test_headline_form_builds_every_category_each_resumable(no_data_env, capsys, demo_category):
    """No --root, no --category, no --out: ./datasets/mvtec_loco, out/mvtec_loco/<category>."""
    loco_root(no_data_env / "datasets" / "mvtec_loco", demo_category)
    args = ["build", "--dataset", "mvtec_loco", "--strategy", "cutpaste", "--image-size", "32", "--num-samples", "2",
            "--device", "cpu", "--quiet"]
    main(args)
    lines = capsys.readouterr().out.strip().splitlines()
    out = Path("out") / "mvtec_loco"
    assert lines == [
        f"box_a: built 1 shard(s), 0 already complete, into {out / 'box_a'} (manifest written)",
        f"box_b: built 1 shard(s), 0 already complete, into {out / 'box_b'} (manifest written)",
    ]
    first = {c: _shards(out / c) for c in ("box_a", "box_b")}
    manifest = json.loads((out / "box_a" / "manifest.json").read_text())
    assert manifest["dataset"]["category"] == "box_a"
    assert manifest["dataset"]["root"] == str((no_data_env / "datasets" / "mvtec_loco").absolute())

    shutil.rmtree(out / "box_b")  # one category lost: the next run rebuilds it alone, the same bytes
    main(args)
    assert capsys.readouterr().out.strip().splitlines() == [
        f"box_a: built 0 shard(s), 1 already complete, into {out / 'box_a'} (manifest written)",
        f"box_b: built 1 shard(s), 0 already complete, into {out / 'box_b'} (manifest written)",
    ]
    assert {c: _shards(out / c) for c in ("box_a", "box_b")} == first


def test_a_failing_category_is_named_and_the_others_are_built(tmp_path, monkeypatch, capsys, demo_category):
    data = tmp_path / "data"
    root = loco_root(data / "mvtec_loco", demo_category, categories=("box_a", "box_b", "broken"))
    next((root / "broken" / "train" / "good").glob("*.png")).write_bytes(b"not a png")
    monkeypatch.setenv(DATA_ENV, str(data))
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--dataset", "mvtec_loco", "--strategy", "cutpaste", "--image-size", "32", "--num-samples", "2",
              "--device", "cpu", "--quiet", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and "Traceback" not in captured.err
    errors = captured.err.strip().splitlines()
    assert errors[0].startswith("synthgen: error: broken: ") and str(root / "broken") in errors[0]
    assert errors[-1] == ("synthgen: error: 1 of 3 categories failed (broken); fix them and run the same command "
                          "again (finished categories are skipped)")
    assert [line.split(":")[0] for line in captured.out.strip().splitlines()] == ["box_a", "box_b"]
    assert (tmp_path / "out" / "box_b" / "manifest.json").is_file()
    assert not list((tmp_path / "out").glob("broken/*.h5"))


def test_root_and_category_keep_working_as_before(tmp_path, capsys, demo_category):
    root = loco_root(tmp_path / "anywhere", demo_category)
    main(["build", "--dataset", "mvtec_loco", "--root", str(root), "--category", "box_b", "--strategy", "cutpaste",
          "--image-size", "32", "--num-samples", "2", "--device", "cpu", "--quiet", "--out", str(tmp_path / "one")])
    assert capsys.readouterr().out.strip().splitlines() == [
        f"built 1 shard(s), 0 already complete, into {tmp_path / 'one'}",
        f"manifest: {tmp_path / 'one' / 'manifest.json'}",
    ]
