"""GLASS's training options (``synthgen-train glass``; :func:`.train.train` takes them), with the official code's values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from synthgen.generator.config import parse_image_size

from ..features import EMBED_DIM, PATCH_SIZE, backbone_field, layers_field, weights_dir_field, weights_field
from ..options import cli, device_field
from ..presets import preset_field, steps_field
from .model import ASCENT_STEPS, DISCRIMINATOR_HIDDEN, DISTRIBUTIONS, IMAGE_SIZE

#: Official code: adaptor learning rate (the discriminator gets twice this), epochs, batch size, and
#: the sample count after which an epoch ends.
LR = 1e-4
EPOCHS = 640
BATCH_SIZE = 8
LIMIT = 392


@dataclass(frozen=True, kw_only=True)
class GLASSOptions:
    out: Path = field(metadata=cli("The run folder to write."))
    shards: Path = field(metadata=cli("A synthgen build: its anomalous samples (with masks) and normal sources."))
    backbone: str = backbone_field()
    layers: tuple[str, ...] = layers_field()
    weights: str | None = weights_field()
    weights_dir: Path | None = weights_dir_field()
    embed_dim: int = field(default=EMBED_DIM, metadata=cli("Patch feature dimension D (official: 1536)."))
    hidden: int = field(default=DISCRIMINATOR_HIDDEN, metadata=cli("Discriminator hidden width (official: 1024)."))
    patch_size: int = field(default=PATCH_SIZE, metadata=cli("Neighbourhood size p (official: 3)."))
    image_size: tuple[int, int] = field(default=(IMAGE_SIZE, IMAGE_SIZE), metadata=cli(
        "N or HxW the images are resized to (official: 288).", parse=parse_image_size, text=str(IMAGE_SIZE)))
    epochs: int = field(default=EPOCHS, metadata=cli("Training epochs (official: 640)."))
    steps: int | None = steps_field()
    batch_size: int = field(default=BATCH_SIZE, metadata=cli("Anomalous samples per step (official: 8)."))
    limit: int = field(default=LIMIT, metadata=cli("An epoch ends once more than this many samples were seen (official: 392)."))
    lr: float = field(default=LR, metadata=cli("Adaptor learning rate; the discriminator gets twice this."))
    ascent_steps: int = field(default=ASCENT_STEPS, metadata=cli("Gradient ascent steps of the global synthesis (official: 20)."))
    distribution: str = field(default="hypersphere", metadata=cli(
        "Band of the truncated projection: around the center (hypersphere) or the normal feature (manifold).", choices=DISTRIBUTIONS))
    seed: int = field(default=0, metadata=cli("Seeds initialisation, data order and noise."))
    preset: str = preset_field()
    device: str = device_field()
    resume: bool = field(default=False, metadata=cli("Continue the run in --out from its last epoch (same options)."))
    progress: bool = field(default=True, metadata=cli("No per-epoch progress lines.", name="--quiet", negate=True))
