"""LogicAL (Zhao, "Towards logical anomaly synthesis for unsupervised anomaly localization"): the
localization network with image, JND and edge reconstruction, trained on synthgen shards.

``synthgen-train logical --shards BUILD --out RUN`` trains it (:mod:`.train`, imported only when the
command runs). Importing this package registers the method's loader (:func:`.detector.load`), so
``synthgen-eval RUN`` can load the model. Network: :mod:`.model`; losses (Eq. 2-7): :mod:`.losses`;
shard field contract: :mod:`.data`; Lightning wrapper: :mod:`.module`; inference: :mod:`.detector`.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..lightning_utils import shard_run_options
from .detector import METHOD, load  # noqa: F401  (importing .detector registers the loader)
from .losses import EDGE_BALANCE, EDGE_THRESHOLD
from .model import PRESETS

__all__ = ["METHOD", "command", "load"]


@click.command(METHOD)
@click.option("--shards", required=True, type=click.Path(path_type=Path),
              help="A synthgen build folder whose strategy stores edge and JND maps (see trainers/logical/data.py).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The run folder to write.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="full", show_default=True,
              help="Network widths: full (paper scale, DRAEM's widths) or tiny (CPU tests).")
@click.option("--epochs", default=300, show_default=True, help="Training epochs (LogicAL: 300).")
@click.option("--batch-size", default=15, show_default=True, help="Samples per step (LogicAL: 15; 12 at 256x320).")
@click.option("--lr", default=1e-4, show_default=True, help="Adam learning rate (LogicAL: 1e-4).")
@click.option("--edge-threshold", default=EDGE_THRESHOLD, show_default=True,
              help="eta of Eq. 6: edge probabilities in (0, eta) are ignored, >= eta are edges (PiDiNet).")
@click.option("--edge-balance", default=EDGE_BALANCE, show_default=True,
              help="Multiplier of the negative-pixel weight in Eq. 6 (PiDiNet's lambda, LogicAL's 1.1).")
@click.option("--seed", default=0, show_default=True, help="Seeds initialisation, validation split and data order.")
@shard_run_options
def command(shards, out, preset, epochs, batch_size, lr, edge_threshold, edge_balance, seed, val_fraction, select,
            device, workers, resume, quiet):
    """Train the LogicAL localization network on synthetic shards."""
    from .train import train

    run = train(shards, out, epochs=epochs, batch_size=batch_size, lr=lr, preset=preset, edge_threshold=edge_threshold,
                edge_balance=edge_balance, seed=seed, val_fraction=val_fraction, select=select, device=device,
                workers=workers, resume=resume, progress=not quiet)
    click.echo(f"run folder: {run} (model.pt, run.json, checkpoints/, logs/)")
