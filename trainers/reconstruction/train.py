"""Train the reconstructive framework on a synthgen build and write a run folder.

Model selection (never on real test images): ``select="last"`` keeps the final epoch, as DRAEM and
the framework's paper do (both train a fixed number of epochs); ``select="val"`` keeps the epoch
with the lowest loss on the held-out synthetic validation samples (checkpoints/best.ckpt).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import lightning as L
from lightning.pytorch.callbacks import Callback

from synthgen.generator.errors import SynthgenError
from synthgen.generator.safe_load import check_lightning_checkpoint

from ..data import DEFAULT_VAL_FRACTION, SynthgenDataModule
from ..lightning_utils import (
    VAL_MONITOR,
    check_training_options,
    fit_select_and_finish,
    make_trainer,
    resolve_device,
    shard_provenance,
    start_run,
)
from .model import METHOD, ArchitectureConfig, check_architecture, save_model
from .module import DRAEM_LR, ReconstructionModule, TrainingConfig



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
    check_training_options(select, lr)
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
    if checkpoint_to_resume is not None:  # before the Trainer prints anything: a bad file is one line
        check_lightning_checkpoint(checkpoint_to_resume, module)
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
    fit_select_and_finish(out, trainer, checkpoint, module, data, resume_from=checkpoint_to_resume, select=select,
                          epochs=epochs, save_model=lambda m: save_model(out, m.networks))
    return out

