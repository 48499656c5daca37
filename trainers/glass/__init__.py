"""GLASS: global (gradient-ascent) and local anomaly synthesis for a patch discriminator (Chen et al., ECCV 2024).

``synthgen-train glass --shards BUILD --out RUN`` trains on a synthgen build: its anomalous samples and
their masks are GLASS's local anomaly synthesis, so any synthgen strategy (draem, the paper's own; cutpaste,
caf, logical ...) becomes it; the build's normal source images train the normal side. Importing this
package registers the loader, so ``synthgen-eval RUN`` can evaluate the model. Options: :mod:`.options`;
networks, synthesis and losses: :mod:`.model`; the training loop: :mod:`.train`; the cached shard
features: trainers/shard_features.py.
"""

from __future__ import annotations

import click

from ..options import options_command
from .model import METHOD, load  # noqa: F401  (registers the loader)
from .options import GLASSOptions

__all__ = ["METHOD", "GLASSOptions", "command", "load"]


@options_command(METHOD, GLASSOptions)
def command(options: GLASSOptions) -> None:
    """Train GLASS (global + local anomaly synthesis) with a synthgen build as its local synthesis."""
    from ..presets import with_preset
    from .train import train

    # the preset fills the options left at their defaults (explicit ones win)
    click.echo(f"run folder: {train(with_preset(options, click.get_current_context()))} (model.pt, run.json, logs/)")
