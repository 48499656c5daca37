"""The ensemble's training options: ``synthgen-train ensemble feature`` (:func:`.train.train_feature`)
and ``synthgen-train ensemble output`` (:func:`.train.train_output`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthgen.generator.config import parse_image_size
from synthgen.generator.errors import SynthgenError

from ..features import EMBED_DIM
from ..options import cli, device_field
from .model import NOISE_STD
from .pca import BLOCKS

#: SimpleNet's discriminator learning rate, epochs and batch size.
LR = 2e-4
EPOCHS = 160
BATCH_SIZE = 8
IMAGE_SIZE = 256

#: Where the normal training images come from, as both commands describe it (like PBAS: a dataset or a build).
_NORMAL_IMAGES_HELP = {
    "dataset": "Dataset layout of the normal training images (mvtec_ad, mvtec_loco, ...).",
    "root": "Dataset root (the folder holding CATEGORY/).",
    "category": "Category, e.g. bottle.",
    "shards": "Instead of --dataset: a synthgen build's normal source images.",
}


def normal_images_field(name: str) -> Any:
    """One of --dataset, --root, --category, --shards (optional; exactly one source is checked when loading)."""
    return field(default=None, metadata=cli(_NORMAL_IMAGES_HELP[name]))


def parse_components(text: str) -> float:
    """``64`` -> 64 maps, ``0.95`` -> the share of variance to keep."""
    try:
        return float(text)
    except ValueError:
        raise SynthgenError(f"--components: '{text}' is not a number of maps or a variance fraction") from None


@dataclass(frozen=True, kw_only=True)
class FeatureEnsembleOptions:
    out: Path = field(metadata=cli("The run folder to write."))
    extractors: tuple[str, ...] = field(metadata=cli(
        "BACKBONE:LAYER+LAYER (e.g. efficientnet_lite0:layer1+layer2) or pbas:RUN; repeat for each extractor.", name="--extractor", multiple=True))
    block: str = field(default="global", metadata=cli(
        "global: concat then one PCA; individual: PCA per extractor then concat.", choices=BLOCKS))
    components: float | None = field(default=None, metadata=cli(
        "Maps each PCA keeps: a whole number, or a variance fraction in (0, 1). "
        "Default: as many maps as the widest extractor has (split equally for individual).", parse=parse_components))
    dataset: str | None = normal_images_field("dataset")
    root: Path | None = normal_images_field("root")
    category: str | None = normal_images_field("category")
    shards: Path | None = normal_images_field("shards")
    embed_dim: int = field(default=EMBED_DIM, metadata=cli("Channels of each backbone extractor's patch features."))
    weights: str | None = field(default=None, metadata=cli("Backbone checkpoint for the backbone extractors ('none': random weights, for tests)."))
    image_size: tuple[int, int] = field(default=(IMAGE_SIZE, IMAGE_SIZE), metadata=cli(
        "N or HxW the images are resized to.", parse=parse_image_size, text=str(IMAGE_SIZE)))
    epochs: int = field(default=EPOCHS, metadata=cli("Discriminator epochs (SimpleNet: 160)."))
    batch_size: int = field(default=BATCH_SIZE, metadata=cli())
    lr: float = field(default=LR, metadata=cli("Discriminator learning rate (SimpleNet: 2e-4)."))
    adaptor: bool = field(default=False, metadata=cli(
        "Add SimpleNet's feature adaptor (one linear layer, trained jointly) before the discriminator."))
    noise_std: float = field(default=NOISE_STD, metadata=cli(
        "Std of the Gaussian noise that makes the fake features, in units of the ensembled features "
        "(scaled to unit mean variance; SimpleNet's 0.015 fits its raw features, not PCA-reduced ones)."))
    seed: int = field(default=0, metadata=cli())
    device: str = device_field()
    resume: bool = field(default=False, metadata=cli("Continue the run in --out from its last epoch (same options)."))
    progress: bool = field(default=True, metadata=cli("No per-epoch progress lines.", name="--quiet", negate=True))


@dataclass(frozen=True, kw_only=True)
class OutputEnsembleOptions:
    out: Path = field(metadata=cli("The run folder to write."))
    members: tuple[Path, ...] = field(metadata=cli("A trained run folder (any method); repeat for each member.", name="--member", multiple=True))
    dataset: str | None = normal_images_field("dataset")
    root: Path | None = normal_images_field("root")
    category: str | None = normal_images_field("category")
    shards: Path | None = normal_images_field("shards")
    batch_size: int = field(default=BATCH_SIZE, metadata=cli())
    device: str = device_field()
