"""PBAS: progressive boundary guided anomaly synthesis in feature space (Chen et al.).

``synthgen-train pbas --dataset mvtec_ad --root ROOT --category bottle --out RUN`` trains on the
normal training images of a dataset (PBAS needs no shards); ``--shards BUILD`` trains on the normal
source images of a synthgen build instead. Importing this package registers the loader, so
``synthgen-eval RUN`` can evaluate the model. Options: :mod:`.options`; networks, centers and losses:
:mod:`.model`; the patch features, score maps and heads it shares with GLASS and the ensemble:
trainers/features.py, trainers/score_maps.py, trainers/feature_heads.py; the training loop: :mod:`.train`.
"""

from __future__ import annotations

import click

from ..options import options_command
from .model import METHOD, load  # noqa: F401  (registers the loader)
from .options import PBASOptions

__all__ = ["METHOD", "PBASOptions", "command", "load"]


@options_command(METHOD, PBASOptions)
def command(options: PBASOptions) -> None:
    """Train PBAS (ABL + AFS + RBO) on normal images; no shards needed."""
    from ..presets import with_preset
    from .train import train

    # the preset fills the options left at their defaults (explicit ones win)
    click.echo(f"run folder: {train(with_preset(options, click.get_current_context()))} (model.pt, run.json, logs/)")
