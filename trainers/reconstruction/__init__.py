"""The augmentation framework's reconstructive framework (DRAEM-like R + S) with split training.

``synthgen-train reconstruction --shards BUILD --out RUN`` trains it (:mod:`.train`, imported only
when the command runs: it needs Lightning). Importing this package registers the method's loader
(:func:`.model.load`), so ``synthgen-eval RUN`` can load the model. Networks, losses and the
inference model: :mod:`.model`; the training step and the split of Eq. 3: :mod:`.module`.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..lightning_utils import shard_run_options
from .model import METHOD, load  # noqa: F401  (importing .model registers the loader)

__all__ = ["METHOD", "command", "load"]

#: ``--select``: keep the last epoch (DRAEM, the paper) or the lowest synthetic validation loss.


@click.command(METHOD)
@click.option("--shards", required=True, type=click.Path(path_type=Path), help="A synthgen build folder (with manifest.json).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The run folder to write.")
@click.option("--epochs", default=700, show_default=True, help="Training epochs (DRAEM: 700).")
@click.option("--batch-size", default=8, show_default=True, help="Samples per step (DRAEM: 8).")
@click.option("--lr", default=1e-4, show_default=True, help="Adam learning rate (DRAEM: 1e-4).")
@click.option("--base-width", default=128, show_default=True,
              help="R's base width; S gets half (DRAEM: 128). Small values (8-16) make a CPU-sized model.")
@click.option("--image-size", help="N or HxW (multiples of 32); default: the shards' size.")
@click.option("--seed", default=0, show_default=True, help="Seeds initialisation, validation split and data order.")
@click.option("--no-split", is_flag=True, help="DRAEM's training: every sample trains R and S (no Eq. 3 split).")
@click.option("--rotate-normals", is_flag=True,
              help="DRAEM's rotation of normals (p 0.3, +-90 deg); never re-applied to draem-strategy samples.")
@shard_run_options
def command(shards, out, epochs, batch_size, lr, base_width, image_size, seed, no_split, rotate_normals, val_fraction,
            select, device, workers, resume, quiet):
    """Train the reconstructive framework (R + S) on synthetic shards, with the framework's split training."""
    from synthgen.generator.config import parse_image_size

    from .train import train

    run = train(
        shards,
        out,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        base_width=base_width,
        image_size=parse_image_size(image_size) if image_size else None,
        seed=seed,
        split=not no_split,
        rotate_normals=rotate_normals,
        val_fraction=val_fraction,
        select=select,
        device=device,
        workers=workers,
        resume=resume,
        progress=not quiet,
    )
    click.echo(f"run folder: {run} (model.pt, run.json, checkpoints/, logs/)")
