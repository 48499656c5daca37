"""Where a dataset lives when no ``--root`` is given, and which categories it holds.

MVTec users keep their data in one folder per dataset. Without ``--root``, synthgen looks for the
dataset's folder in ``$SYNTHGEN_DATA`` first, then in ``./datasets`` (where anomalib's datamodules
look by default), under each of the folder names in :data:`FOLDER_NAMES`, in order; the first
existing folder is the root. When none exists, the error lists every place it looked.

A dataset's categories are what its reader registered as ``categories`` (see
:func:`generator.datasets.base.register_reader`): for the MVTec-style layouts, the folders under the
root that hold ``train/good/``; for VisA, the objects of its split file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SynthgenError
from ._layout import NORMAL, require_root
from .base import get_category_lister, get_reader

#: the environment variable naming the folder that holds one folder per dataset
DATA_ENV = "SYNTHGEN_DATA"
#: where anomalib's datamodules look by default (their ``root`` is ``./datasets/<Name>``)
LOCAL_DATA = Path("datasets")

#: folder names a dataset's root goes by, tried in this order: synthgen's dataset name, anomalib's
#: default folder name, then the name users give the official archive's contents.
FOLDER_NAMES: dict[str, tuple[str, ...]] = {
    "mvtec_loco": ("mvtec_loco", "MVTec_LOCO", "mvtec_loco_anomaly_detection"),
    "mvtec_ad": ("mvtec_ad", "MVTecAD", "MVTec", "mvtec_anomaly_detection"),
    "visa": ("visa", "VisA"),
    "mpdd": ("mpdd", "MPDD"),
    "madsim": ("madsim", "mad_sim", "MAD-Sim"),
}


def search_places(dataset: str) -> list[Path]:
    """Every folder :func:`locate_root` tries for ``dataset``, in order (absolute paths)."""
    names = FOLDER_NAMES.get(dataset, (dataset,))
    bases = []
    if os.environ.get(DATA_ENV):
        bases.append(Path(os.environ[DATA_ENV]).expanduser())
    bases.append(LOCAL_DATA)
    return [(base / name).absolute() for base in bases for name in names]


def locate_root(dataset: str) -> Path:
    """The root of ``dataset`` found without ``--root``; a one-line error listing every place tried."""
    get_reader(dataset)  # an unknown dataset name fails first, with the list of known ones
    if dataset == "folder":
        raise SynthgenError("--root: dataset 'folder' is your own layout; pass the folder that holds its categories")
    places = search_places(dataset)
    for place in places:
        if place.is_dir():
            return place
    unset = "" if os.environ.get(DATA_ENV) else f" (${DATA_ENV} is not set)"
    raise SynthgenError(
        f"--root: dataset '{dataset}' not found; looked in {', '.join(map(str, places))}{unset}; "
        f"pass --root, or set ${DATA_ENV} to the folder that holds {FOLDER_NAMES.get(dataset, (dataset,))[0]}/"
    )


def skeleton_categories(root: Path) -> list[str]:
    """The categories of an MVTec-style root: its folders that hold ``train/good/``, sorted."""
    return sorted(
        p.name for p in require_root(root).iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "train" / NORMAL).is_dir()
    )


def dataset_categories(dataset: str, root: str | Path) -> list[str]:
    """The categories present under ``root`` (at least one, else a one-line error naming the root)."""
    lister = get_category_lister(dataset) or skeleton_categories
    categories = lister(require_root(root))
    if not categories:
        raise SynthgenError(f"{root}: no categories of dataset '{dataset}' found (no <category>/train/{NORMAL}/ folders)")
    return categories
