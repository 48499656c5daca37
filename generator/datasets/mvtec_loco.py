"""MVTec LOCO AD reader (Bergmann et al., IJCV 2022), keeping every defect region and its type.

Layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/validation/good/*.png
    <root>/<category>/test/{good,logical_anomalies,structural_anomalies}/*.png
    <root>/<category>/ground_truth/<type>/<stem>/000.png, 001.png ...   one PNG per defect region
    <root>/<category>/defects_config.json

Each region PNG holds exactly one non-zero pixel value, the defect type, which
``defects_config.json`` maps to a name and an sPRO saturation threshold. This is what the official
evaluation script requires too (``GroundTruthChannel.create_from_integer_array`` in MVTec's
mvtec_loco_ad_evaluation: "exactly one distinct positive value", looked up in the config). The
value is read from each file and kept as it is: anomalib's LOCO reader divides masks by 255 and so
loses 254, 253 ... (DESIGN.md section 5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SynthgenError, read_json_file
from ..imageio import read_mask
from ._layout import NORMAL, category_dir, finish_index, image_id, list_images, scan_splits
from .base import DatasetIndex, DefectSpec, MaskRef, SourceImage, register_reader

DEFECTS_CONFIG = "defects_config.json"


def read_defects_config(path: Path) -> tuple[DefectSpec, ...]:
    """Parse and check ``defects_config.json`` (the checks mirror the official evaluation's)."""
    rows = read_json_file(path, "defects config")
    if not isinstance(rows, list) or not rows:
        raise SynthgenError(f"{path}: expected a non-empty JSON list of defect entries")
    specs = [_defect_spec(path, i, row) for i, row in enumerate(rows)]
    values = [s.pixel_value for s in specs]
    if len(set(values)) != len(values):
        dup = next(v for v in values if values.count(v) > 1)
        raise SynthgenError(f"{path}: pixel_value {dup} is used by more than one defect")
    return tuple(specs)


def _defect_spec(path: Path, i: int, row: object) -> DefectSpec:
    keys = ("defect_name", "pixel_value", "saturation_threshold", "relative_saturation")
    if not isinstance(row, dict) or any(k not in row for k in keys):
        raise SynthgenError(f"{path}: entry {i} must have the keys {', '.join(keys)}")
    name, value, threshold, relative = (row[k] for k in keys)
    if not isinstance(name, str) or not name:
        raise SynthgenError(f"{path}: entry {i}: defect_name must be a non-empty string")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 255:
        raise SynthgenError(f"{path}: entry {i} ({name}): pixel_value must be an integer in 1..255")
    if not isinstance(relative, bool):
        raise SynthgenError(f"{path}: entry {i} ({name}): relative_saturation must be true or false")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold <= 0:
        raise SynthgenError(f"{path}: entry {i} ({name}): saturation_threshold must be a positive number")
    if relative and threshold > 1:
        raise SynthgenError(f"{path}: entry {i} ({name}): a relative saturation_threshold must be at most 1")
    return DefectSpec(name, value, float(threshold), relative)


def region_value(path: Path, defects: tuple[DefectSpec, ...]) -> int:
    """The one non-zero pixel value of a LOCO region mask (decodes the file)."""
    counts = np.bincount(read_mask(path).ravel(), minlength=256)
    values = np.flatnonzero(counts[1:]) + 1
    if len(values) == 0:
        raise SynthgenError(f"{path}: region mask has no non-zero pixel")
    if len(values) > 1:
        shown = ", ".join(str(v) for v in values[:5])
        raise SynthgenError(
            f"{path}: region mask holds several values ({shown}); MVTec LOCO stores one defect region per file"
        )
    value = int(values[0])
    if defects and not any(d.pixel_value == value for d in defects):
        raise SynthgenError(f"{path}: pixel value {value} is not listed in {DEFECTS_CONFIG}")
    return value


def read_loco_layout(
    dataset: str, root: str | Path, category: str, *, require_config: bool, extra: dict | None = None
) -> DatasetIndex:
    """Index one category of an MVTec-LOCO-style folder.

    ``require_config``: MVTec LOCO always ships ``defects_config.json``; a user's own folder in this
    layout may lack it, and then has no defect table (sPRO needs one, pixel metrics do not).
    """
    cat = category_dir(root, category)
    config_path = cat / DEFECTS_CONFIG
    if config_path.is_file():
        defects = read_defects_config(config_path)
    elif require_config:
        raise SynthgenError(f"{config_path}: missing; every MVTec LOCO category has one")
    else:
        defects = ()
    items = []
    for split, defect, path in scan_splits(cat, dataset):
        masks: tuple[MaskRef, ...] = ()
        region_dir = cat / "ground_truth" / defect / path.stem
        if defect != NORMAL and region_dir.is_dir():
            masks = tuple(MaskRef(p, region_value(p, defects)) for p in list_images(region_dir))
        label = 0 if defect == NORMAL else 1
        items.append(SourceImage(image_id(split, defect, path), path, split, defect, label, masks))
    return finish_index(dataset, category, cat.parent, items, defects=defects, extra=extra)


@register_reader("mvtec_loco")
def read_mvtec_loco(root: Path, category: str) -> DatasetIndex:
    return read_loco_layout("mvtec_loco", root, category, require_config=True)
