"""MAD-Sim reader (the simulated half of MAD, from "PAD: A Dataset and Benchmark for Pose-agnostic
Anomaly Detection", Zhou et al., NeurIPS 2023 D&B).

Layout, as documented in the official repository's README (EricLee0224/PAD) and read by its
``datasets/LEGO_3D.py``::

    MAD-Sim/<category>/train/good/0.png, 1.png ...       (categories 01Gorilla, 02Unicorn ... 20Puppy)
    MAD-Sim/<category>/test/{good,Burrs,Missing,Stains}/0.png ...
    MAD-Sim/<category>/ground_truth/{Burrs,Missing,Stains}/0_mask.png ...
    MAD-Sim/<category>/transforms.json                   (camera poses of the training views; not read)

The mask values are not documented, so any non-zero pixel counts as anomalous (``pixel_value=None``).
"""

from __future__ import annotations

from pathlib import Path

from .base import DatasetIndex, register_reader
from .mvtec_ad import read_ad_layout


@register_reader("madsim")
def read_madsim(root: Path, category: str) -> DatasetIndex:
    return read_ad_layout("madsim", root, category)
