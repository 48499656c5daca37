"""The augmentation framework's reconstructive framework (DRAEM-like R + S) with split training.

``synthgen-train reconstruction --shards BUILD --out RUN`` trains it (:mod:`.train`, imported only
when the command runs). Importing this package registers the method's loader (:func:`.model.load`),
so ``synthgen-eval RUN`` can load the model. Options: :mod:`.options`; networks, losses and the
inference model: :mod:`.model`; the training step and the split of Eq. 3: :mod:`.module`.
"""

from __future__ import annotations

import click

from ..options import options_command
from .model import METHOD, load  # noqa: F401  (importing .model registers the loader)
from .options import ReconstructionOptions

__all__ = ["METHOD", "ReconstructionOptions", "command", "load"]


@options_command(METHOD, ReconstructionOptions)
def command(options: ReconstructionOptions) -> None:
    """Train the reconstructive framework (R + S) on synthetic shards, with the framework's split training."""
    from .train import train

    click.echo(f"run folder: {train(options)} (model.pt, run.json, checkpoints/, logs/)")
