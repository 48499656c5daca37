"""LogicAL's training options (``synthgen-train logical``; :func:`.train.train` takes them), with the paper's values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..lightning_utils import shard_run_field
from ..options import cli
from .losses import EDGE_BALANCE, EDGE_THRESHOLD
from .model import PRESETS
from .module import LR

#: LogicAL Sec. 4.2: 300 epochs, batch size 15 (12 for VisA's 256x320).
PAPER_EPOCHS = 300
PAPER_BATCH_SIZE = 15


@dataclass(frozen=True, kw_only=True)
class LogicALOptions:
    shards: Path = field(metadata=cli("A synthgen build folder whose strategy stores edge and JND maps (see trainers/logical/data.py)."))
    out: Path = field(metadata=cli("The run folder to write."))
    preset: str = field(default="full", metadata=cli(
        "Network widths: full (paper scale, DRAEM's widths) or tiny (CPU tests).", choices=tuple(sorted(PRESETS))))
    epochs: int = field(default=PAPER_EPOCHS, metadata=cli("Training epochs (LogicAL: 300)."))
    batch_size: int = field(default=PAPER_BATCH_SIZE, metadata=cli("Samples per step (LogicAL: 15; 12 at 256x320)."))
    lr: float = field(default=LR, metadata=cli("Adam learning rate (LogicAL: 1e-4)."))
    edge_threshold: float = field(default=EDGE_THRESHOLD, metadata=cli(
        "eta of Eq. 6: edge probabilities in (0, eta) are ignored, >= eta are edges (PiDiNet)."))
    edge_balance: float = field(default=EDGE_BALANCE, metadata=cli(
        "Multiplier of the negative-pixel weight in Eq. 6 (PiDiNet's lambda, LogicAL's 1.1)."))
    seed: int = field(default=0, metadata=cli("Seeds initialisation, validation split and data order."))
    val_fraction: float = shard_run_field("val_fraction")
    select: str = shard_run_field("select")
    device: str = shard_run_field("device")
    workers: int = shard_run_field("workers")
    resume: bool = shard_run_field("resume")
    progress: bool = shard_run_field("progress")
