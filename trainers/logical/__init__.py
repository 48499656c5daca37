"""LogicAL (Zhao, "Towards logical anomaly synthesis for unsupervised anomaly localization"): the
localization network with image, JND and edge reconstruction, trained on synthgen shards.

``synthgen-train logical --shards BUILD --out RUN`` trains it (:mod:`.train`, imported only when the
command runs). Importing this package registers the method's loader (:func:`.detector.load`), so
``synthgen-eval RUN`` can load the model. Options: :mod:`.options`; network: :mod:`.model`; losses
(Eq. 2-7): :mod:`.losses`; shard field contract: :mod:`.data`; Lightning wrapper: :mod:`.module`;
inference: :mod:`.detector`.
"""

from __future__ import annotations

import click

from ..options import options_command
from .detector import METHOD, load  # noqa: F401  (importing .detector registers the loader)
from .options import LogicALOptions

__all__ = ["METHOD", "LogicALOptions", "command", "load"]


@options_command(METHOD, LogicALOptions)
def command(options: LogicALOptions) -> None:
    """Train the LogicAL localization network on synthetic shards."""
    from .train import train

    click.echo(f"run folder: {train(options)} (model.pt, run.json, checkpoints/, logs/)")
