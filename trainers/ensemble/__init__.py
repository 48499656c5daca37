"""Feature-level ensembles of heterogeneous extractors with a SimpleNet discriminator, and the output-level baseline.

``synthgen-train ensemble feature --extractor A --extractor B --block global ...`` trains the
feature-level ensemble of the thesis (method ``ensemble``); ``synthgen-train ensemble output
--member RUN --member RUN ...`` calibrates the output-level ensemble it is compared with (method
``ensemble-output``). Both read normal training images like PBAS (``--dataset``/``--root``/
``--category`` or ``--shards``). Importing this package registers both loaders. Options: :mod:`.options`.
"""

from __future__ import annotations

import click

from ..options import options_command
from .model import METHOD, OUTPUT_METHOD, load_feature_model, load_output_model  # noqa: F401  (registers the loaders)
from .options import FeatureEnsembleOptions, OutputEnsembleOptions

__all__ = ["METHOD", "OUTPUT_METHOD", "FeatureEnsembleOptions", "OutputEnsembleOptions", "command"]


@click.group(METHOD)
def command() -> None:
    """Feature-level ensemble (feature) and output-level baseline (output)."""


@options_command("feature", FeatureEnsembleOptions, group=command)
def feature_command(options: FeatureEnsembleOptions) -> None:
    """Train a SimpleNet discriminator on PCA-ensembled features of several extractors."""
    from .train import train_feature

    click.echo(f"run folder: {train_feature(options)} (model.pt, run.json, logs/)")


@options_command("output", OutputEnsembleOptions, group=command)
def output_command(options: OutputEnsembleOptions) -> None:
    """Calibrate trained models on normal images and average their calibrated maps and scores."""
    from .train import train_output

    click.echo(f"run folder: {train_output(options)} (model.pt, run.json)")
