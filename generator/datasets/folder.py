"""A user's own category, in the MVTec AD or the MVTec LOCO layout, told apart automatically.

``root`` is the folder that holds ``<category>/``. The category is read as MVTec LOCO when it has a
``defects_config.json`` or when its ground truth is organised in per-image folders
(``ground_truth/<type>/<stem>/000.png``); otherwise as MVTec AD
(``ground_truth/<defect>/<stem>_mask.png``). ``DatasetIndex.extra["layout"]`` says which was used.
Mask values of user data are not known in the MVTec AD layout, so any non-zero pixel is anomalous.
"""

from __future__ import annotations

from pathlib import Path

from ._layout import category_dir
from .base import DatasetIndex, register_reader
from .mvtec_ad import read_ad_layout
from .mvtec_loco import DEFECTS_CONFIG, read_loco_layout


def is_loco_layout(cat_dir: Path) -> bool:
    """True for an MVTec-LOCO-style category folder (see the module docstring)."""
    if (cat_dir / DEFECTS_CONFIG).is_file():
        return True
    gt = cat_dir / "ground_truth"
    if not gt.is_dir():
        return False
    return any(
        p.is_dir() and not p.name.startswith(".")
        for defect_dir in gt.iterdir()
        if defect_dir.is_dir()
        for p in defect_dir.iterdir()
    )


@register_reader("folder")
def read_folder(root: Path, category: str) -> DatasetIndex:
    if is_loco_layout(category_dir(root, category)):
        return read_loco_layout("folder", root, category, require_config=False, extra={"layout": "mvtec_loco"})
    return read_ad_layout("folder", root, category, extra={"layout": "mvtec_ad"})
