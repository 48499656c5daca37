"""Train the reconstructive framework on a synthgen build and write a run folder.

Model selection (never on real test images): ``select="last"`` keeps the final epoch, as DRAEM and
the framework's paper do (both train a fixed number of epochs); ``select="val"`` keeps the epoch
with the lowest loss on the held-out synthetic validation samples (checkpoints/best.ckpt).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from generator.errors import SynthgenError
from generator.imageio import sha256_file

from ..base import MODEL_FILE
from ..data import DEFAULT_VAL_FRACTION, SynthgenDataModule
from ..lightning_utils import finish_run, make_trainer, resolve_device, shard_provenance, start_run
from . import SELECTIONS
from .model import METHOD, ArchitectureConfig, check_architecture, save_model
from .module import DRAEM_LR, ReconstructionModule, TrainingConfig

VAL_MONITOR = "val/loss"


def train(
    shards: str | Path,
    out: str | Path,
    *,
    epochs: int,
    batch_size: int = 8,
    lr: float = DRAEM_LR,
    base_width: int = 128,
    image_size: tuple[int, int] | None = None,
    seed: int = 0,
    split: bool = True,
    rotate_normals: bool = False,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    select: str = "last",
    device: str = "auto",
    workers: int = 2,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Train (or resume) one run into ``out``; returns the run folder.

    ``callbacks`` are extra Lightning callbacks (e.g. to stop early in tests).
    """
    out = Path(out)
    if select not in SELECTIONS:
        raise SynthgenError(f"--select: expected one of {', '.join(SELECTIONS)}, got {select!r}")
    if not lr > 0:
        raise SynthgenError(f"--lr: must be positive, got {lr}")
    device = resolve_device(device)
    L.seed_everything(seed, workers=True, verbose=False)

    data = SynthgenDataModule(shards, image_size=image_size, batch_size=batch_size, val_fraction=val_fraction, seed=seed, workers=workers)
    data.setup("fit")
    has_validation = len(data.val_indices) > 0
    if select == "val" and not has_validation:
        raise SynthgenError("--select val: needs synthetic validation samples (--val-fraction > 0)")
    architecture = ArchitectureConfig(base_width=base_width, image_size=data.image_size)
    check_architecture(architecture)
    training = TrainingConfig(epochs=epochs, lr=lr, split=split, rotate_normals=rotate_normals, seed=seed)

    config = {
        "shards": str(Path(shards).resolve()),
        "batch_size": batch_size,
        "val_fraction": val_fraction,
        "select": select,
        "device": device,
        "workers": workers,
        **architecture.to_dict(),
        **training.to_dict(),
    }
    checkpoint_to_resume = start_run(out, METHOD, config, shard_provenance(data), resume)

    module = ReconstructionModule(architecture.to_dict(), training.to_dict())
    steps_per_epoch = math.ceil(len(data.train_indices) / batch_size)
    trainer, checkpoint = make_trainer(
        out,
        epochs=epochs,
        device=device,
        monitor=VAL_MONITOR if has_validation else None,
        steps_per_epoch=steps_per_epoch,
        progress=progress,
        callbacks=callbacks,
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=checkpoint_to_resume)
    elapsed = time.perf_counter() - started

    selected_epoch = trainer.current_epoch
    if select == "val":
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)  # our own file
        module.load_state_dict(best["state_dict"])
        selected_epoch = int(best["epoch"]) + 1  # epochs completed when it was saved
    model_path = save_model(out, module.networks)
    finish_run(
        out,
        {
            "epochs_trained": trainer.current_epoch,
            "model": {"file": MODEL_FILE, "sha256": sha256_file(model_path), "selected": select, "epochs": selected_epoch},
            "train_seconds_this_session": round(elapsed, 1),
        },
        complete=trainer.current_epoch >= epochs,
    )
    return out

