"""The records every dataset reader returns, whatever the layout on disk.

A reader turns a dataset root + category into a :class:`DatasetIndex`: a flat, sorted list of
:class:`SourceImage` records (train, validation and test images, with their ground-truth masks) and,
for MVTec LOCO-style data, the defect table from ``defects_config.json``. Readers only look at the
file system (names, header checks); pixels are decoded later by :mod:`generator.imageio`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import SynthgenError


@dataclass(frozen=True)
class MaskRef:
    """One ground-truth mask file.

    ``pixel_value`` is the value that marks this region's pixels in the file: MVTec LOCO stores one
    PNG per defect region whose pixels carry the defect type (255, 254, ... per defects_config.json);
    every other layout (MVTec AD 255, MVTec 3D-AD 254, VisA, MPDD, MAD-Sim) marks a defect with any
    non-zero value (``None`` = "any value > 0").
    """

    path: Path
    pixel_value: int | None = None


@dataclass(frozen=True)
class DefectSpec:
    """One row of MVTec LOCO's defects_config.json (the sPRO saturation of a defect type)."""

    name: str
    pixel_value: int
    saturation_threshold: float
    relative_saturation: bool


@dataclass(frozen=True)
class SourceImage:
    """One image of a dataset.

    id: stable, unique within the category, layout-independent, e.g. ``train/good/000`` or
        ``test/logical_anomalies/012``; used in seeds, shard metadata and export file names.
    split: ``train`` | ``validation`` | ``test``.
    defect_type: ``good`` for normal images, else the defect folder name
        (``logical_anomalies``, ``structural_anomalies``, ``broken_large``, ``Anomaly`` ...).
    label: 0 normal, 1 anomalous.
    masks: ground-truth masks (empty for normal images and for test anomalies that have none).
    """

    id: str
    path: Path
    split: str
    defect_type: str
    label: int
    masks: tuple[MaskRef, ...] = ()

    @property
    def is_normal(self) -> bool:
        return self.label == 0


@dataclass
class DatasetIndex:
    """All images of one category of one dataset, sorted by id."""

    dataset: str
    category: str
    root: Path
    items: list[SourceImage]
    defects: tuple[DefectSpec, ...] = ()  # MVTec LOCO only
    gray: bool = False  # True when the whole category is 8-bit greyscale (MVTec AD grid, screw, zipper)
    extra: dict = field(default_factory=dict)

    def split(self, split: str, *, normal_only: bool = False) -> list[SourceImage]:
        out = [s for s in self.items if s.split == split]
        return [s for s in out if s.is_normal] if normal_only else out

    def by_id(self) -> dict[str, SourceImage]:
        return {s.id: s for s in self.items}

    def defect_for_value(self, value: int) -> DefectSpec | None:
        for d in self.defects:
            if d.pixel_value == value:
                return d
        return None


Reader = Callable[[Path, str], DatasetIndex]
#: root -> the categories present under it (``synthgen build`` without ``--category`` builds them all)
CategoryLister = Callable[[Path], list[str]]

_READERS: dict[str, Reader] = {}
_CATEGORY_LISTERS: dict[str, CategoryLister] = {}


def register_reader(name: str, categories: CategoryLister | None = None) -> Callable[[Reader], Reader]:
    """Decorator: ``@register_reader("mvtec_ad")`` on a function ``(root, category) -> DatasetIndex``.

    categories: lists the categories under a root, for layouts other than the MVTec skeleton
    (``<root>/<category>/train/good/``, which :mod:`generator.datasets.locate` lists by default).
    """

    def deco(fn: Reader) -> Reader:
        _READERS[name] = fn
        if categories is not None:
            _CATEGORY_LISTERS[name] = categories
        return fn

    return deco


def get_category_lister(name: str) -> CategoryLister | None:
    """The reader's own category lister, or None when it uses the MVTec skeleton."""
    return _CATEGORY_LISTERS.get(name)


def reader_names() -> list[str]:
    return sorted(_READERS)


def get_reader(name: str) -> Reader:
    if name not in _READERS:
        raise SynthgenError(f"unknown dataset '{name}'; known: {', '.join(reader_names())}")
    return _READERS[name]
