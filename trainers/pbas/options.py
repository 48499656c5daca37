"""PBAS's training options (``synthgen-train pbas``; :func:`.train.train` takes them), with the paper's values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from synthgen.generator.config import parse_image_size

from ..features import EMBED_DIM, PATCH_SIZE, backbone_field, layers_field, weights_dir_field, weights_field
from ..options import cli, device_field
from ..presets import preset_field, steps_field
from .model import ALPHA, CENTER_METHODS, COMPONENTS, SYNTHESES

#: Sec. IV-B: projector learning rate (the discriminator gets twice this), batch size, epochs.
LR = 1e-4
BATCH_SIZE = 8
EPOCHS = 400
IMAGE_SIZE = 256


@dataclass(frozen=True, kw_only=True)
class PBASOptions:
    out: Path = field(metadata=cli("The run folder to write."))
    dataset: str | None = field(default=None, metadata=cli("Dataset layout of the normal training images (mvtec_ad, mvtec_loco, visa, ...)."))
    root: Path | None = field(default=None, metadata=cli("Dataset root (the folder holding CATEGORY/)."))
    category: str | None = field(default=None, metadata=cli("Category, e.g. bottle."))
    shards: Path | None = field(default=None, metadata=cli("Instead of --dataset: a synthgen build whose normal source images train PBAS."))
    anomaly_shards: Path | None = field(default=None, metadata=cli(
        "A synthgen build whose anomalous samples the discriminator also sees, labelled by their masks (default: none, the paper's PBAS)."))
    backbone: str = backbone_field()
    layers: tuple[str, ...] = layers_field()
    weights: str | None = weights_field()
    weights_dir: Path | None = weights_dir_field()
    embed_dim: int = field(default=EMBED_DIM, metadata=cli("Patch feature dimension D (official: 1536)."))
    patch_size: int = field(default=PATCH_SIZE, metadata=cli("Neighbourhood size p (the paper: 3)."))
    image_size: tuple[int, int] = field(default=(IMAGE_SIZE, IMAGE_SIZE), metadata=cli(
        "N or HxW the images are resized to (the paper: 256).", parse=parse_image_size, text=str(IMAGE_SIZE)))
    epochs: int = field(default=EPOCHS, metadata=cli("Training epochs (the paper: 400)."))
    steps: int | None = steps_field()
    batch_size: int = field(default=BATCH_SIZE, metadata=cli("Images per step (the paper: 8)."))
    lr: float = field(default=LR, metadata=cli("Projector learning rate; the discriminator gets twice this."))
    alpha: float = field(default=ALPHA, metadata=cli("Anomaly degree alpha of Eq. 7."))
    center: str = field(default="alignment", metadata=cli(
        "Center initialisation (Table VI): alignment (Algorithm 1), average, iterative (EMA), clustering (k-means).", choices=CENTER_METHODS))
    synthesis: str = field(default="adaptive", metadata=cli(
        "Anomaly synthesis (Table V): adaptive (Eq. 7) or noise (Gaussian, std 0.015).", choices=SYNTHESES))
    components: str = field(default="full", metadata=cli(
        "Table V: full (ABL + AFS + RBO) or abl (center loss only, scored by distance to the nearest center).", choices=COMPONENTS))
    seed: int = field(default=0, metadata=cli("Seeds initialisation, data order and noise."))
    preset: str = preset_field()
    device: str = device_field()
    resume: bool = field(default=False, metadata=cli("Continue the run in --out from its last epoch (same options)."))
    progress: bool = field(default=True, metadata=cli("No per-epoch progress lines.", name="--quiet", negate=True))
