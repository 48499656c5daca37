"""VisA reader (Zou et al., "SPot-the-Difference ...", ECCV 2022), straight from the official archive.

Layout of the archive (amazon-science/spot-diff, README and ``split_csv/1cls.csv``)::

    <root>/split_csv/1cls.csv                              the one-class split of all 12 objects
    <root>/<object>/Data/Images/Normal/0000.JPG ...
    <root>/<object>/Data/Images/Anomaly/000.JPG ...
    <root>/<object>/Data/Masks/Anomaly/000.png ...

``1cls.csv`` has the header ``object,split,label,image,mask``; ``split`` is train|test, ``label``
normal|anomaly, ``image`` and ``mask`` are paths relative to the root (``mask`` empty for normal
images), e.g. ``candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png``.
Anomalous mask pixels are any non-zero value, not necessarily 255: the official preparation script
binarises them with ``mask != 0`` (spot-diff utils/prepare_data.py), so ``pixel_value=None``.

Ids use ``good`` for normal images and the image's folder name (``Anomaly``) for anomalies:
``train/good/0836``, ``test/good/0514``, ``test/Anomaly/000``.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import SynthgenError
from ._layout import NORMAL, finish_index, image_id, require_root
from .base import DatasetIndex, MaskRef, SourceImage, register_reader

SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}
SPLITS = ("train", "test")


def _read_rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for every data row of the split file."""
    if not csv_path.is_file():
        raise SynthgenError(f"{csv_path}: VisA split file not found (expected <root>/{SPLIT_CSV.as_posix()})")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise SynthgenError(f"{csv_path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
            return [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SynthgenError(f"{csv_path}: cannot read split file ({e})") from None


def _archive_file(root: Path, where: str, column: str, text: str) -> Path:
    """``root / text`` for a path of the split file, or a one-line error when it is empty, absolute
    or climbs out of the root with ``..``: a split file that came with a download decides which files
    the build reads, and those must be the archive's (checked on the path as written, so a root that
    is itself a symbolic link, or an archive linked together from several disks, still reads)."""
    if not text:
        raise SynthgenError(f"{where}: {column} path is empty")
    relative = PurePosixPath(text.replace("\\", "/"))  # an archive re-packed on Windows may use backslashes
    if relative.is_absolute() or PureWindowsPath(text).drive or ".." in relative.parts:
        raise SynthgenError(f"{where}: {column} path '{text}' is not a path inside the dataset root "
                            f"(paths in {SPLIT_CSV.as_posix()} are relative to {root})")
    return root / relative


def _source_image(root: Path, csv_path: Path, line: int, row: dict[str, str]) -> SourceImage:
    where = f"{csv_path}:{line}"
    split, label_name = row["split"], row["label"]
    if split not in SPLITS:
        raise SynthgenError(f"{where}: split '{split}' is not one of {', '.join(SPLITS)}")
    if label_name not in LABELS:
        raise SynthgenError(f"{where}: label '{label_name}' is not one of {', '.join(LABELS)}")
    image = _archive_file(root, where, "image", row["image"])
    if not image.is_file():
        raise SynthgenError(f"{where}: image file {image} not found")
    label = LABELS[label_name]
    defect = NORMAL if label == 0 else image.parent.name
    masks: tuple[MaskRef, ...] = ()
    if label == 1 and row["mask"]:
        mask = _archive_file(root, where, "mask", row["mask"])
        if not mask.is_file():
            raise SynthgenError(f"{where}: mask file {mask} not found")
        masks = (MaskRef(mask, None),)
    return SourceImage(image_id(split, defect, image), image, split, defect, label, masks)


def visa_categories(root: Path) -> list[str]:
    """The objects of the split file, sorted."""
    return sorted({row["object"] for _, row in _read_rows(require_root(root) / SPLIT_CSV)})


@register_reader("visa", categories=visa_categories)
def read_visa(root: Path, category: str) -> DatasetIndex:
    root = require_root(root)
    csv_path = root / SPLIT_CSV
    rows = _read_rows(csv_path)
    mine = [(line, row) for line, row in rows if row["object"] == category]
    if not mine:
        objects = sorted({row["object"] for _, row in rows})
        raise SynthgenError(
            f"{csv_path}: no rows for category '{category}'; available categories: {', '.join(objects) or 'none'}"
        )
    items = [_source_image(root, csv_path, line, row) for line, row in mine]
    if not any(s.split == "train" and s.is_normal for s in items):
        raise SynthgenError(f"{csv_path}: no train/normal rows for '{category}'; wrong layout for dataset 'visa'")
    return finish_index("visa", category, root, items)
