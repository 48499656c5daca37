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

from ..data import SynthgenDataModule
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
from .module import ReconstructionModule, TrainingConfig
from .options import ReconstructionOptions



def train(options: ReconstructionOptions, *, callbacks: Sequence[Callback] = ()) -> Path:
    """Train (or resume) one run into ``options.out``; returns the run folder.

    ``callbacks`` are extra Lightning callbacks (e.g. to stop early in tests).
    """
    out = Path(options.out)
    check_training_options(options.select, options.lr)
    device = resolve_device(options.device)
    L.seed_everything(options.seed, workers=True, verbose=False)

    data = SynthgenDataModule(options.shards, image_size=options.image_size, batch_size=options.batch_size, val_fraction=options.val_fraction,
                              seed=options.seed, workers=options.workers)
    data.setup("fit")
    has_validation = len(data.val_indices) > 0
    if options.select == "val" and not has_validation:
        raise SynthgenError("--select val: needs synthetic validation samples (--val-fraction > 0)")
    architecture = ArchitectureConfig(base_width=options.base_width, image_size=data.image_size)
    check_architecture(architecture)
    training = TrainingConfig(epochs=options.epochs, lr=options.lr, split=options.split, rotate_normals=options.rotate_normals,
                              seed=options.seed)

    config = {
        "shards": str(Path(options.shards).resolve()),
        "batch_size": options.batch_size,
        "val_fraction": options.val_fraction,
        "select": options.select,
        "device": device,
        "workers": options.workers,
        **architecture.to_dict(),
        **training.to_dict(),
    }
    checkpoint_to_resume = start_run(out, METHOD, config, shard_provenance(data), options.resume)

    module = ReconstructionModule(architecture.to_dict(), training.to_dict())
    if checkpoint_to_resume is not None:  # before the Trainer prints anything: a bad file is one line
        check_lightning_checkpoint(checkpoint_to_resume, module)
    steps_per_epoch = math.ceil(len(data.train_indices) / options.batch_size)
    trainer, checkpoint = make_trainer(
        out,
        epochs=options.epochs,
        device=device,
        monitor=VAL_MONITOR if has_validation else None,
        steps_per_epoch=steps_per_epoch,
        progress=options.progress,
        callbacks=callbacks,
    )
    fit_select_and_finish(out, trainer, checkpoint, module, data, resume_from=checkpoint_to_resume, select=options.select,
                          epochs=options.epochs, save_model=lambda m: save_model(out, m.networks))
    return out

