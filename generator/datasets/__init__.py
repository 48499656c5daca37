"""Dataset readers (one module per on-disk layout) and the procedural demo dataset.

Importing this package registers every reader: mvtec_ad, mvtec_loco, visa, mpdd, madsim, folder
and demo. :func:`load_dataset` is the entry point the pipeline and the trainers use.
"""

from __future__ import annotations

from pathlib import Path

from . import demo, folder, madsim, mpdd, mvtec_ad, mvtec_loco, visa  # noqa: F401  (registers the readers)
from ._layout import require_root
from .base import DatasetIndex, DefectSpec, MaskRef, SourceImage, get_reader, reader_names, register_reader
from .demo import ensure_demo, render_demo
from .locate import dataset_categories, locate_root

__all__ = [
    "DatasetIndex",
    "DefectSpec",
    "MaskRef",
    "SourceImage",
    "dataset_categories",
    "ensure_demo",
    "get_reader",
    "load_dataset",
    "locate_root",
    "reader_names",
    "register_reader",
    "render_demo",
]


def load_dataset(name: str, root: str | Path | None, category: str) -> DatasetIndex:
    """Index ``category`` of dataset ``name`` under ``root``; every user mistake is a one-line SynthgenError.

    ``root`` None: the demo renders itself into the cache; other datasets are looked for where users
    keep them (:func:`generator.datasets.locate.locate_root`: ``$SYNTHGEN_DATA``, then ``./datasets``).
    """
    reader = get_reader(name)
    if root is None:
        return reader(None, category) if name == "demo" else reader(locate_root(name), category)
    return reader(require_root(root), category)
