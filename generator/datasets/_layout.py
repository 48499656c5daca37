"""Helpers every reader shares: locating the category, listing split folders, and the final checks.

The folder layouts (MVTec AD, MPDD, MAD-Sim, MVTec LOCO) share one skeleton::

    <root>/<category>/train/good/*.png           normal training images (required, non-empty)
    <root>/<category>/validation/good/*.png      normal validation images (MVTec LOCO; optional)
    <root>/<category>/test/<defect>/*.png        test images; <defect> == "good" for normal ones (optional)

and differ only in where the ground-truth masks live, which each reader resolves itself.
:func:`finish_index` is the one place that checks what all readers must check: unique ids, a
category that is either all colour or all greyscale, and masks of the same size as their images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import SynthgenError
from ..imageio import ImageInfo, probe_image
from ..names import check_name, check_source_id
from .base import DatasetIndex, DefectSpec, SourceImage

# File types a folder layout may hold; anything else in an image folder (notes, thumbnails) is ignored.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

NORMAL = "good"  # the defect-folder name of normal images in every supported layout
NORMAL_ONLY_SPLITS = ("train", "validation")  # splits that hold only <split>/good/


def require_root(root: str | Path) -> Path:
    """The dataset root as a Path, or a one-line error when it is not a folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SynthgenError(f"{root}: dataset root not found")
    return root


def category_dir(root: str | Path, category: str) -> Path:
    """``root/category``, checked; the error lists the categories that do exist."""
    root = require_root(root)
    check_name(category, "category", "--category")
    folder = root / category
    if not folder.is_dir():
        available = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise SynthgenError(
            f"{folder}: category folder not found; available categories: {', '.join(available) or 'none'}"
        )
    return folder


def check_entry(p: Path) -> Path:
    """``p`` (an entry a reader is about to use), or a one-line error when its name is not valid UTF-8
    (it could not be stored in the UTF-8 manifest; the error shows the name's bytes) or when it is a
    symbolic link to nothing (skipping it would silently drop a source)."""
    try:
        p.name.encode("utf-8")
    except UnicodeEncodeError:
        raise SynthgenError(
            f"{os.fsdecode(p.parent)}: file name {os.fsencode(p.name)!r} is not valid UTF-8; rename it"
        ) from None
    if p.is_symlink() and not p.exists():
        raise SynthgenError(f"{p}: symbolic link to a missing file ({os.readlink(p)}); fix or remove it")
    return p


def is_image_file(p: Path) -> bool:
    """True for an image file a folder layout reads (checked with :func:`check_entry`)."""
    return p.suffix.lower() in IMAGE_SUFFIXES and check_entry(p).is_file()


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; hidden files are skipped."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and is_image_file(p))


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and check_entry(p).is_dir())


def scan_splits(cat_dir: Path, dataset: str) -> list[tuple[str, str, Path]]:
    """``(split, defect_type, image_path)`` for every image of the shared skeleton above.

    train/ and validation/ may hold only good/: anything else there is a layout the reader does not
    understand, and silently skipping it would drop data.
    """
    train_good = cat_dir / "train" / NORMAL
    if not train_good.is_dir() or not list_images(train_good):
        raise SynthgenError(
            f"{train_good}: missing or holds no images; wrong layout for dataset '{dataset}' "
            f"(expected <category>/train/good/*.png)"
        )
    found: list[tuple[str, str, Path]] = []
    for split in NORMAL_ONLY_SPLITS:
        split_dir = cat_dir / split
        if not split_dir.is_dir():
            continue
        for sub in _subfolders(split_dir):
            if sub.name != NORMAL:
                raise SynthgenError(f"{sub}: unexpected folder; {split}/ may only hold {NORMAL}/ in a '{dataset}' layout")
        if (split_dir / NORMAL).is_dir():
            found += [(split, NORMAL, p) for p in list_images(split_dir / NORMAL)]
    test_dir = cat_dir / "test"
    if test_dir.is_dir():
        for defect_dir in _subfolders(test_dir):
            found += [("test", defect_dir.name, p) for p in list_images(defect_dir)]
    return found


def image_id(split: str, defect_type: str, path: Path) -> str:
    """The layout-independent id of an image, e.g. ``test/broken_large/003``."""
    return f"{split}/{defect_type}/{path.stem}"


def category_is_gray(infos: Iterable[ImageInfo]) -> bool:
    """True when every image is 8-bit greyscale (mode L), False when none is.

    A mix is an error naming the first image of the minority kind: one greyscale file among colour
    ones is almost always a stray or broken file (and the other way round). Other modes (alpha,
    16-bit ...) count as colour here; :func:`generator.imageio.read_rgb` refuses them when decoding.
    """
    infos = list(infos)
    gray = [i for i in infos if i.mode == "L"]
    colour = [i for i in infos if i.mode != "L"]
    if not gray or not colour:
        return bool(gray)
    if len(gray) <= len(colour):  # a tie counts as a colour dataset: colour is the common case
        raise SynthgenError(
            f"{gray[0].path}: greyscale image in a colour dataset ({len(gray)} of {len(infos)} images are greyscale)"
        )
    raise SynthgenError(
        f"{colour[0].path}: colour image (mode {colour[0].mode}) in a greyscale dataset "
        f"({len(colour)} of {len(infos)} images are not greyscale)"
    )


def _check_mask_size(mask: Path, image: ImageInfo) -> None:
    info = probe_image(mask)
    if (info.width, info.height) != (image.width, image.height):
        raise SynthgenError(
            f"{mask}: mask is {info.width}x{info.height} but its image {image.path} is {image.width}x{image.height}"
        )


def finish_index(
    dataset: str,
    category: str,
    root: Path,
    items: list[SourceImage],
    *,
    defects: tuple[DefectSpec, ...] = (),
    extra: dict | None = None,
) -> DatasetIndex:
    """Sort the items by id and run the checks every reader needs (header reads only)."""
    items = sorted(items, key=lambda s: s.id)
    for item in items:  # ids are stored in every sample and may become file names downstream
        check_source_id(item.id, item.path)
    for a, b in zip(items, items[1:]):
        if a.id == b.id:
            raise SynthgenError(f"{b.path}: same id '{b.id}' as {a.path}; image names must be unique per folder")
    infos = [probe_image(item.path) for item in items]
    gray = category_is_gray(infos)
    for item, info in zip(items, infos):
        for mask in item.masks:
            _check_mask_size(mask.path, info)
    return DatasetIndex(dataset, category, root, items, defects=defects, gray=gray, extra=extra or {})
