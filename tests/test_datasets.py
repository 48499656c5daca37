"""Dataset readers: the real shared copies, a tiny fixture in every documented layout, every user error."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthgen.generator.datasets import get_reader, load_dataset, reader_names
from synthgen.generator.datasets.folder import is_loco_layout
from synthgen.generator.errors import SynthgenError

# --------------------------------------------------------------------------------------------------
# helpers


def _image(path: Path, *, size=(32, 24), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shade = sum(path.as_posix().encode()) % 200  # some content; files differ from each other
    Image.new(mode, size, shade if mode == "L" else (shade, 100, 50)).save(path)
    return path


def _mask(path: Path, value: int, *, size=(32, 24), box=(4, 4, 12, 10)) -> Path:
    arr = np.zeros((size[1], size[0]), np.uint8)
    arr[box[1] : box[3], box[0] : box[2]] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _file_values(path: Path) -> set[int]:
    """Independent reference: the non-zero values actually stored in a mask file."""
    return set(np.unique(np.asarray(Image.open(path)))) - {0}


def _ad_layout(root: Path, category: str = "widget", *, mode: str = "RGB") -> Path:
    """MVTec AD layout: 2 train, 1 test good, 2 test anomalies (the second without a mask)."""
    cat = root / category
    for name in ("train/good/000.png", "train/good/001.png", "test/good/000.png", "test/crack/000.png", "test/crack/001.png"):
        _image(cat / name, mode=mode)
    _mask(cat / "ground_truth/crack/000_mask.png", 255)
    return root


LOCO_CONFIG = [
    {"defect_name": "missing_part", "pixel_value": 255, "saturation_threshold": 120, "relative_saturation": False},
    {"defect_name": "wrong_part", "pixel_value": 254, "saturation_threshold": 1.0, "relative_saturation": True},
]


def _loco_layout(root: Path, category: str = "box", *, config: list | None = LOCO_CONFIG) -> Path:
    """MVTec LOCO layout: one logical anomaly with two regions of different types."""
    cat = root / category
    for name in ("train/good/000.png", "validation/good/000.png", "test/good/000.png", "test/logical_anomalies/000.png"):
        _image(cat / name)
    _mask(cat / "ground_truth/logical_anomalies/000/000.png", 255, box=(2, 2, 8, 8))
    _mask(cat / "ground_truth/logical_anomalies/000/001.png", 254, box=(20, 10, 30, 20))
    if config is not None:
        (cat / "defects_config.json").write_text(json.dumps(config))
    return root


def _raises(fn, *needles: str) -> str:
    """Call fn, expect a one-line SynthgenError containing every needle; return the message."""
    with pytest.raises(SynthgenError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert str(needle) in message, message
    return message


# --------------------------------------------------------------------------------------------------
# real data


def test_registry_lists_every_reader():
    assert set(reader_names()) >= {"mvtec_ad", "mvtec_loco", "visa", "mpdd", "madsim", "folder", "demo"}


def test_loco_juice_bottle_counts_masks_and_defects(loco_root):
    index = load_dataset("mvtec_loco", loco_root, "juice_bottle")
    counts = Counter((s.split, s.defect_type) for s in index.items)
    assert counts == {
        ("train", "good"): 60,
        ("validation", "good"): 30,
        ("test", "good"): 3,
        ("test", "logical_anomalies"): 40,
    }
    assert [s.id for s in index.items] == sorted(s.id for s in index.items)
    assert index.by_id()["test/logical_anomalies/012"].path.name == "012.png"
    assert not index.gray
    # The shared copy's masks were flattened upstream: one file per image, value 255 only (SOURCES.md).
    anomalies = index.split("test")
    for item in anomalies:
        if item.label == 1:
            assert len(item.masks) == 1
            assert item.masks[0].path.parent.name == item.path.stem
            assert item.masks[0].pixel_value == 255 == max(_file_values(item.masks[0].path))
        else:
            assert item.masks == ()
    first = index.defects[0]
    assert (first.name, first.pixel_value, first.saturation_threshold, first.relative_saturation) == (
        "missing_top_label",
        255,
        70400,
        False,
    )
    assert len(index.defects) == 18
    assert index.defect_for_value(252).relative_saturation and index.defect_for_value(252).name == "damaged_label"


def test_mvtec_ad_bottle_keeps_anomalies_without_masks(mvtec_ad_root):
    index = load_dataset("mvtec_ad", mvtec_ad_root, "bottle")
    counts = Counter((s.split, s.defect_type, s.label) for s in index.items)
    assert counts == {
        ("train", "good", 0): 20,
        ("test", "good", 0): 5,
        ("test", "broken_large", 1): 5,
        ("test", "broken_small", 1): 5,
        ("test", "contamination", 1): 5,
    }
    assert all(s.masks == () for s in index.items)  # this copy has no ground_truth/
    assert not index.gray
    assert index.items[0].id == "test/broken_large/000"


# --------------------------------------------------------------------------------------------------
# tiny fixtures, one per layout


def test_mvtec_ad_layout(tmp_path):
    index = get_reader("mvtec_ad")(_ad_layout(tmp_path), "widget")
    assert [s.id for s in index.items] == [
        "test/crack/000",
        "test/crack/001",
        "test/good/000",
        "train/good/000",
        "train/good/001",
    ]
    items = index.by_id()
    assert items["test/crack/000"].masks[0].path.name == "000_mask.png"
    assert items["test/crack/000"].masks[0].pixel_value is None  # any non-zero pixel is anomalous
    assert items["test/crack/001"].masks == () and items["test/crack/001"].label == 1
    assert items["train/good/000"].label == 0 and items["train/good/000"].split == "train"
    assert index.dataset == "mvtec_ad" and index.category == "widget" and not index.gray


@pytest.mark.parametrize("dataset", ["mvtec_ad", "mpdd", "madsim", "folder"])
def test_ad_layout_masks_count_every_non_zero_value(tmp_path, dataset):
    """MVTec 3D-AD ships 0/254 masks: each reader of the MVTec AD layout must not read them as empty."""
    root = _ad_layout(tmp_path)
    _mask(root / "widget/ground_truth/crack/000_mask.png", 254)
    from synthgen.trainers.evaluate import load_ground_truth

    index = get_reader(dataset)(root, "widget")
    item = index.by_id()["test/crack/000"]
    truth = load_ground_truth([item], index, [(24, 32)])
    assert int(truth.masks[0].sum()) == 8 * 6  # the 8x6 box of _mask


def test_greyscale_category_is_detected(tmp_path):
    index = get_reader("mvtec_ad")(_ad_layout(tmp_path, mode="L"), "widget")
    assert index.gray


def test_greyscale_image_among_colour_ones_is_an_error(tmp_path):
    root = _ad_layout(tmp_path)
    odd = _image(root / "widget/train/good/002.png", mode="L")
    _raises(lambda: get_reader("mvtec_ad")(root, "widget"), odd, "greyscale image in a colour dataset")


def test_colour_image_among_greyscale_ones_is_an_error(tmp_path):
    root = _ad_layout(tmp_path, mode="L")
    odd = _image(root / "widget/train/good/002.png")
    _raises(lambda: get_reader("mvtec_ad")(root, "widget"), odd, "colour image")


def test_loco_layout_keeps_each_region_value(tmp_path):
    index = get_reader("mvtec_loco")(_loco_layout(tmp_path), "box")
    item = index.by_id()["test/logical_anomalies/000"]
    assert [m.pixel_value for m in item.masks] == [255, 254]
    for mask in item.masks:  # the value recorded is the value in the file, not 255 for all
        assert _file_values(mask.path) == {mask.pixel_value}
    assert [d.name for d in index.defects] == ["missing_part", "wrong_part"]
    assert index.defect_for_value(254).relative_saturation
    assert index.by_id()["validation/good/000"].split == "validation"


def test_loco_region_with_two_values_is_an_error(tmp_path):
    root = _loco_layout(tmp_path)
    bad = root / "box/ground_truth/logical_anomalies/000/001.png"
    arr = np.zeros((24, 32), np.uint8)
    arr[0:4, 0:4], arr[10:14, 10:14] = 255, 254
    Image.fromarray(arr).save(bad)
    _raises(lambda: get_reader("mvtec_loco")(root, "box"), bad, "several values")


def test_loco_empty_region_is_an_error(tmp_path):
    root = _loco_layout(tmp_path)
    bad = _mask(root / "box/ground_truth/logical_anomalies/000/001.png", 0)
    _raises(lambda: get_reader("mvtec_loco")(root, "box"), bad, "no non-zero pixel")


def test_loco_value_missing_from_config_is_an_error(tmp_path):
    root = _loco_layout(tmp_path)
    bad = _mask(root / "box/ground_truth/logical_anomalies/000/001.png", 200)
    _raises(lambda: get_reader("mvtec_loco")(root, "box"), bad, "200", "defects_config.json")


@pytest.mark.parametrize(
    "config, needle",
    [
        ("not json", "cannot read"),
        ([{"defect_name": "x", "pixel_value": 255}], "keys"),
        ([{"defect_name": "x", "pixel_value": 0, "saturation_threshold": 1.0, "relative_saturation": True}], "1..255"),
        ([{"defect_name": "x", "pixel_value": 255, "saturation_threshold": 2.0, "relative_saturation": True}], "at most 1"),
        (LOCO_CONFIG + [dict(LOCO_CONFIG[0], defect_name="again")], "more than one"),
    ],
)
def test_bad_defects_config_is_an_error(tmp_path, config, needle):
    root = _loco_layout(tmp_path, config=None)
    path = root / "box/defects_config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    _raises(lambda: get_reader("mvtec_loco")(root, "box"), path, needle)


def test_loco_without_defects_config_is_an_error(tmp_path):
    root = _loco_layout(tmp_path, config=None)
    _raises(lambda: get_reader("mvtec_loco")(root, "box"), root / "box/defects_config.json", "missing")


def _visa_archive(root: Path) -> Path:
    rows = ["object,split,label,image,mask"]
    for split, name in (("train", "0001"), ("train", "0002"), ("test", "0003")):
        _image(root / f"candle/Data/Images/Normal/{name}.JPG")
        rows.append(f"candle,{split},normal,candle/Data/Images/Normal/{name}.JPG,")
    _image(root / "candle/Data/Images/Anomaly/000.JPG")
    _mask(root / "candle/Data/Masks/Anomaly/000.png", 1)  # VisA masks: any non-zero value
    rows.append("candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png")
    _image(root / "pcb1/Data/Images/Normal/0000.JPG")
    rows.append("pcb1,train,normal,pcb1/Data/Images/Normal/0000.JPG,")
    (root / "split_csv").mkdir()
    (root / "split_csv/1cls.csv").write_text("\n".join(rows) + "\n")
    return root


def test_visa_split_csv(tmp_path):
    index = get_reader("visa")(_visa_archive(tmp_path), "candle")
    assert [s.id for s in index.items] == ["test/Anomaly/000", "test/good/0003", "train/good/0001", "train/good/0002"]
    anomaly = index.by_id()["test/Anomaly/000"]
    assert anomaly.label == 1 and anomaly.defect_type == "Anomaly"
    assert anomaly.masks[0].pixel_value is None
    assert anomaly.masks[0].path == tmp_path / "candle/Data/Masks/Anomaly/000.png"
    assert len(index.split("train", normal_only=True)) == 2


def test_visa_errors(tmp_path):
    root = _visa_archive(tmp_path)
    csv_path = root / "split_csv/1cls.csv"
    _raises(lambda: get_reader("visa")(root, "capsules"), csv_path, "available categories: candle, pcb1")
    (root / "candle/Data/Images/Normal/0002.JPG").unlink()
    _raises(lambda: get_reader("visa")(root, "candle"), f"{csv_path}:3", "0002.JPG")  # header is line 1
    csv_path.unlink()
    _raises(lambda: get_reader("visa")(root, "candle"), csv_path, "not found")


def test_visa_bad_label_names_the_csv_line(tmp_path):
    root = _visa_archive(tmp_path)
    csv_path = root / "split_csv/1cls.csv"
    csv_path.write_text(csv_path.read_text().replace("candle,test,normal", "candle,test,fine"))
    _raises(lambda: get_reader("visa")(root, "candle"), f"{csv_path}:4", "label 'fine'")


@pytest.mark.parametrize("column, path", [("image", "/etc/passwd"), ("image", "../outside/0001.JPG"),
                                          ("image", "candle/../../outside/0001.JPG"), ("image", "C:\\data\\0001.JPG"),
                                          ("mask", "../outside/000.png")])
def test_visa_split_file_cannot_point_outside_the_root(tmp_path, column, path):
    """The split file comes with a download: its paths must stay inside the archive, even when the
    file they name exists."""
    root = _visa_archive(tmp_path / "visa")
    _image(tmp_path / "outside/0001.JPG")
    _mask(tmp_path / "outside/000.png", 1)
    csv_path = root / "split_csv/1cls.csv"
    good = "candle/Data/Images/Normal/0001.JPG" if column == "image" else "candle/Data/Masks/Anomaly/000.png"
    csv_path.write_text(csv_path.read_text().replace(good, path, 1))
    line = 2 if column == "image" else 5
    _raises(lambda: get_reader("visa")(root, "candle"), f"{csv_path}:{line}", f"{column} path '{path}'",
            "not a path inside the dataset root")


def test_mpdd_reads_the_mvtec_ad_layout(tmp_path):
    index = get_reader("mpdd")(_ad_layout(tmp_path, "bracket_black"), "bracket_black")
    assert index.dataset == "mpdd"
    assert index.by_id()["test/crack/000"].masks[0].pixel_value is None


def test_madsim_accepts_both_mask_names(tmp_path):
    cat = tmp_path / "01Gorilla"
    for name in ("train/good/0.png", "train/good/1.png", "test/good/0.png", "test/Burrs/0.png", "test/Stains/3.png"):
        _image(cat / name)
    _mask(cat / "ground_truth/Burrs/0_mask.png", 255)
    _mask(cat / "ground_truth/Stains/3.png", 255)
    (cat / "transforms.json").write_text("{}")
    index = get_reader("madsim")(tmp_path, "01Gorilla")
    assert index.by_id()["test/Burrs/0"].masks[0].path.name == "0_mask.png"
    assert index.by_id()["test/Stains/3"].masks[0].path.name == "3.png"
    assert index.by_id()["test/Stains/3"].masks[0].pixel_value is None
    assert len(index.split("train")) == 2


def test_folder_detects_loco_layout_without_config(tmp_path):
    root = _loco_layout(tmp_path, config=None)
    assert is_loco_layout(root / "box")
    index = get_reader("folder")(root, "box")
    assert index.extra["layout"] == "mvtec_loco" and index.defects == ()
    assert [m.pixel_value for m in index.by_id()["test/logical_anomalies/000"].masks] == [255, 254]


def test_folder_detects_loco_layout_by_config(tmp_path):
    root = _loco_layout(tmp_path)
    (root / "box/ground_truth").rename(root / "box/gt_elsewhere")  # only defects_config.json is left to tell
    index = get_reader("folder")(root, "box")
    assert index.extra["layout"] == "mvtec_loco" and len(index.defects) == 2


def test_folder_detects_mvtec_ad_layout(tmp_path):
    root = _ad_layout(tmp_path)
    assert not is_loco_layout(root / "widget")
    index = get_reader("folder")(root, "widget")
    assert index.extra["layout"] == "mvtec_ad" and index.dataset == "folder"
    assert index.by_id()["test/crack/000"].masks[0].pixel_value is None


# --------------------------------------------------------------------------------------------------
# user errors: one line, naming the path


def test_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    _raises(lambda: load_dataset("mvtec_ad", missing, "bottle"), missing, "not found")
    _raises(lambda: get_reader("mvtec_loco")(missing, "box"), missing, "not found")


def test_missing_category_lists_the_available_ones(tmp_path):
    root = _ad_layout(tmp_path)
    _ad_layout(tmp_path, "gadget")
    _raises(lambda: load_dataset("mvtec_ad", root, "bottle"), root / "bottle", "available categories: gadget, widget")


@pytest.mark.parametrize("category", ["", ".", "..", "a/b", "/abs", "..\\x"])
def test_category_must_be_a_folder_name(tmp_path, category):
    _raises(lambda: load_dataset("mvtec_ad", _ad_layout(tmp_path), category), "--category", "category name")


@pytest.mark.parametrize("dataset", ["mvtec_ad", "mvtec_loco", "mpdd", "madsim", "folder"])
def test_missing_or_empty_train_good_is_a_wrong_layout(tmp_path, dataset):
    root = _loco_layout(tmp_path) if dataset == "mvtec_loco" else _ad_layout(tmp_path, "box")
    train_good = root / "box/train/good"
    for p in train_good.iterdir():
        p.unlink()
    _raises(lambda: load_dataset(dataset, root, "box"), train_good, "wrong layout")
    train_good.rmdir()
    _raises(lambda: load_dataset(dataset, root, "box"), train_good, "wrong layout")


def test_unexpected_folder_in_train_is_an_error(tmp_path):
    root = _ad_layout(tmp_path)
    stray = _image(root / "widget/train/bad/000.png").parent
    _raises(lambda: load_dataset("mvtec_ad", root, "widget"), stray, "unexpected folder")


def test_mask_size_must_match_its_image(tmp_path):
    root = _ad_layout(tmp_path)
    bad = _mask(root / "widget/ground_truth/crack/001_mask.png", 255, size=(16, 16))
    _raises(lambda: load_dataset("mvtec_ad", root, "widget"), bad, "16x16", "32x24")
    root = _loco_layout(tmp_path / "loco")
    bad = _mask(root / "box/ground_truth/logical_anomalies/000/001.png", 254, size=(64, 48))
    _raises(lambda: load_dataset("mvtec_loco", root, "box"), bad, "64x48")


def test_duplicate_ids_are_an_error(tmp_path):
    root = _ad_layout(tmp_path)
    twin = _image(root / "widget/train/good/000.jpg")
    _raises(lambda: load_dataset("mvtec_ad", root, "widget"), "train/good/000", twin)


def test_unknown_dataset_and_missing_root_option(tmp_path):
    _raises(lambda: load_dataset("mvtec_3d", tmp_path, "x"), "unknown dataset 'mvtec_3d'", "mvtec_loco")
    _raises(lambda: load_dataset("mvtec_ad", None, "bottle"), "--root", "mvtec_ad")
