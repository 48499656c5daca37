"""MPDD reader (Metal Parts Defect Detection; Jezek et al., ICUMT 2021).

MPDD ships in the MVTec AD layout (``<category>/train/good``, ``test/<defect>``,
``ground_truth/<defect>/<stem>_mask.png``; categories bracket_black, bracket_brown, bracket_white,
connector, metal_plate, tubes), as anomalib's MPDD dataset reader also expects. Binary 0/255 masks (any non-zero pixel counts).
"""

from __future__ import annotations

from pathlib import Path

from .base import DatasetIndex, register_reader
from .mvtec_ad import read_ad_layout


@register_reader("mpdd")
def read_mpdd(root: Path, category: str) -> DatasetIndex:
    return read_ad_layout("mpdd", root, category)
