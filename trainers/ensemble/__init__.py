"""Feature-level ensembles of heterogeneous extractors with a SimpleNet discriminator, and the output-level baseline.

``synthgen-train ensemble feature --extractor A --extractor B --block global ...`` trains the
feature-level ensemble of the thesis (method ``ensemble``); ``synthgen-train ensemble output
--member RUN --member RUN ...`` calibrates the output-level ensemble it is compared with (method
``ensemble-output``). Both read normal training images like PBAS (``--dataset``/``--root``/
``--category`` or ``--shards``). Importing this package registers both loaders.
"""

from __future__ import annotations

from pathlib import Path

import click

from synthgen.generator.errors import SynthgenError

from ..features import EMBED_DIM
from .model import METHOD, NOISE_STD, OUTPUT_METHOD, load_feature_model, load_output_model  # noqa: F401  (registers the loaders)
from .pca import BLOCKS

__all__ = ["METHOD", "OUTPUT_METHOD", "command"]

_data_options = [
    click.option("--dataset", help="Dataset layout of the normal training images (mvtec_ad, mvtec_loco, ...)."),
    click.option("--root", type=click.Path(path_type=Path), help="Dataset root (the folder holding CATEGORY/)."),
    click.option("--category", help="Category, e.g. bottle."),
    click.option("--shards", type=click.Path(path_type=Path), help="Instead of --dataset: a synthgen build's normal source images."),
]


def data_options(fn):
    for option in reversed(_data_options):
        fn = option(fn)
    return fn


def parse_components(text: str | None) -> float | None:
    """``64`` -> 64 maps, ``0.95`` -> the share of variance to keep; None -> the thesis default."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise SynthgenError(f"--components: '{text}' is not a number of maps or a variance fraction") from None


@click.group(METHOD)
def command() -> None:
    """Feature-level ensemble (feature) and output-level baseline (output)."""


@command.command("feature")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The run folder to write.")
@click.option("--extractor", "extractors", multiple=True, required=True,
              help="BACKBONE:LAYER+LAYER (e.g. efficientnet_lite0:layer1+layer2) or pbas:RUN; repeat for each extractor.")
@click.option("--block", type=click.Choice(BLOCKS), default="global", show_default=True,
              help="global: concat then one PCA; individual: PCA per extractor then concat.")
@click.option("--components", help="Maps each PCA keeps: a whole number, or a variance fraction in (0, 1). "
                                   "Default: as many maps as the widest extractor has (split equally for individual).")
@data_options
@click.option("--embed-dim", default=EMBED_DIM, show_default=True, help="Channels of each backbone extractor's patch features.")
@click.option("--weights", help="Backbone checkpoint for the backbone extractors ('none': random weights, for tests).")
@click.option("--image-size", default="256", show_default=True, help="N or HxW the images are resized to.")
@click.option("--epochs", default=160, show_default=True, help="Discriminator epochs (SimpleNet: 160).")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--lr", default=2e-4, show_default=True, help="Discriminator learning rate (SimpleNet: 2e-4).")
@click.option("--adaptor", is_flag=True, help="Add SimpleNet's feature adaptor (one linear layer, trained jointly) before the discriminator.")
@click.option("--noise-std", default=NOISE_STD, show_default=True,
              help="Std of the Gaussian noise that makes the fake features, in units of the ensembled features "
                   "(scaled to unit mean variance; SimpleNet's 0.015 fits its raw features, not PCA-reduced ones).")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch (same options).")
@click.option("--quiet", is_flag=True, help="No per-epoch progress lines.")
def feature_command(out, extractors, block, components, dataset, root, category, shards, embed_dim, weights, image_size,
                    epochs, batch_size, lr, adaptor, noise_std, seed, device, resume, quiet):
    """Train a SimpleNet discriminator on PCA-ensembled features of several extractors."""
    from synthgen.generator.config import parse_image_size

    from .train import train_feature

    run = train_feature(
        out, extractors=tuple(extractors), block=block, components=parse_components(components), dataset=dataset, root=root,
        category=category, shards=shards, embed_dim=embed_dim, weights=weights, image_size=parse_image_size(image_size),
        epochs=epochs, batch_size=batch_size, lr=lr, adaptor=adaptor, noise_std=noise_std, seed=seed, device=device, resume=resume,
        progress=not quiet,
    )
    click.echo(f"run folder: {run} (model.pt, run.json, logs/)")


@command.command("output")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The run folder to write.")
@click.option("--member", "members", multiple=True, required=True, type=click.Path(path_type=Path),
              help="A trained run folder (any method); repeat for each member.")
@data_options
@click.option("--batch-size", default=8, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def output_command(out, members, dataset, root, category, shards, batch_size, device):
    """Calibrate trained models on normal images and average their calibrated maps and scores."""
    from .train import train_output

    run = train_output(out, members=tuple(members), dataset=dataset, root=root, category=category, shards=shards,
                       batch_size=batch_size, device=device)
    click.echo(f"run folder: {run} (model.pt, run.json)")
