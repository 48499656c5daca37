"""Train LogicAL's localization network on a synthgen build and write a run folder.

The run folder and its life cycle (run.json, model.pt, checkpoints/last.ckpt for ``--resume``,
versioned CSV logs) are the ones every trainer shares (trainers/lightning_utils.py). The data are a
build whose strategy stores the normal image's edge and JND maps (trainers/logical/data.py), read
through trainers.data.SynthgenDataModule; a seeded share of its samples is held out as synthetic
validation data. Model selection never looks at real test images: ``select="last"`` keeps the final
epoch (the paper trains a fixed 300 epochs), ``select="val"`` the epoch with the lowest synthetic
validation loss (checkpoints/best.ckpt).

Reproducibility: the initial weights come from ``seed`` through an explicit generator
(model.build_net) and the data order from (seed, epoch), so a CPU run repeats bit for bit, also
across a resume.
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
from .data import EXTRA_FIELDS, check_build, prepare_sample
from .detector import METHOD, save_model
from .model import PRESETS, check_input_size
from .module import LogicALModule
from .options import LogicALOptions



def train(options: LogicALOptions, *, callbacks: Sequence[Callback] = ()) -> Path:
    """Train (or resume) one LogicAL run into ``options.out``; returns the run folder.

    ``callbacks`` are extra Lightning callbacks (e.g. to stop early in tests).
    """
    out = Path(options.out)
    if options.preset not in PRESETS:
        raise SynthgenError(f"--preset: unknown preset {options.preset!r} (known: {', '.join(PRESETS)})")
    check_training_options(options.select, options.lr)
    if not 0.0 < options.edge_threshold <= 1.0:
        raise SynthgenError(f"--edge-threshold: must be in (0, 1], got {options.edge_threshold}")
    if options.edge_balance < 0:
        raise SynthgenError(f"--edge-balance: must be 0 or more, got {options.edge_balance}")
    device = resolve_device(options.device)
    L.seed_everything(options.seed, workers=True, verbose=False)

    check_build(Path(options.shards))
    data = SynthgenDataModule(options.shards, batch_size=options.batch_size, val_fraction=options.val_fraction, seed=options.seed,
                              workers=options.workers, extra_fields=EXTRA_FIELDS, sample_transform=prepare_sample)
    data.setup("fit")
    check_input_size(data.image_size)
    has_validation = len(data.val_indices) > 0
    if options.select == "val" and not has_validation:
        raise SynthgenError("--select val: needs synthetic validation samples (--val-fraction > 0)")
    net = PRESETS[options.preset]
    config = {
        "shards": str(Path(options.shards).resolve()),
        "preset": options.preset,
        "net": net.to_dict(),
        "image_size": list(data.image_size),
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "edge_threshold": options.edge_threshold,
        "edge_balance": options.edge_balance,
        "seed": options.seed,
        "val_fraction": options.val_fraction,
        "select": options.select,
        "device": device,
        "workers": options.workers,
    }
    provenance = {**shard_provenance(data), "weights": {}}  # trained from scratch: no pretrained weights
    checkpoint_to_resume = start_run(out, METHOD, config, provenance, options.resume)

    module = LogicALModule(net=net.to_dict(), seed=options.seed, epochs=options.epochs, lr=options.lr,
                           edge_threshold=options.edge_threshold, edge_balance=options.edge_balance)
    if checkpoint_to_resume is not None:  # before the Trainer prints anything: a bad file is one line
        check_lightning_checkpoint(checkpoint_to_resume, module)
    trainer, checkpoint = make_trainer(
        out,
        epochs=options.epochs,
        device=device,
        monitor=VAL_MONITOR if has_validation else None,
        steps_per_epoch=math.ceil(len(data.train_indices) / options.batch_size),
        progress=options.progress,
        callbacks=callbacks,
    )
    fit_select_and_finish(out, trainer, checkpoint, module, data, resume_from=checkpoint_to_resume, select=options.select,
                          epochs=options.epochs, save_model=lambda m: save_model(out, m.net, data.image_size))
    return out

