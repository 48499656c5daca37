"""The reconstructive framework's training options (``synthgen-train reconstruction``; :func:`.train.train`
takes them), with DRAEM's values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from synthgen.generator.config import parse_image_size

from ..lightning_utils import shard_run_field
from ..options import cli
from .model import DRAEM_BASE_WIDTH
from .module import DRAEM_LR

#: DRAEM's epochs and batch size.
DRAEM_EPOCHS = 700
DRAEM_BATCH_SIZE = 8


@dataclass(frozen=True, kw_only=True)
class ReconstructionOptions:
    shards: Path = field(metadata=cli("A synthgen build folder (with manifest.json)."))
    out: Path = field(metadata=cli("The run folder to write."))
    epochs: int = field(default=DRAEM_EPOCHS, metadata=cli("Training epochs (DRAEM: 700)."))
    batch_size: int = field(default=DRAEM_BATCH_SIZE, metadata=cli("Samples per step (DRAEM: 8)."))
    lr: float = field(default=DRAEM_LR, metadata=cli("Adam learning rate (DRAEM: 1e-4)."))
    base_width: int = field(default=DRAEM_BASE_WIDTH, metadata=cli(
        "R's base width; S gets half (DRAEM: 128). Small values (8-16) make a CPU-sized model."))
    image_size: tuple[int, int] | None = field(default=None, metadata=cli(
        "N or HxW (multiples of 32); default: the shards' size.", parse=parse_image_size))
    seed: int = field(default=0, metadata=cli("Seeds initialisation, validation split and data order."))
    split: bool = field(default=True, metadata=cli(
        "DRAEM's training: every sample trains R and S (no Eq. 3 split).", name="--no-split", negate=True))
    rotate_normals: bool = field(default=False, metadata=cli(
        "DRAEM's rotation of normals (p 0.3, +-90 deg); never re-applied to draem-strategy samples."))
    val_fraction: float = shard_run_field("val_fraction")
    select: str = shard_run_field("select")
    device: str = shard_run_field("device")
    workers: int = shard_run_field("workers")
    resume: bool = shard_run_field("resume")
    progress: bool = shard_run_field("progress")
