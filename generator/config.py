"""The build configuration: everything that decides what a build contains.

The config's *identity* (every field that changes the bytes of the output, plus digests of the
source images, textures and model files, and the fingerprint of synthgen's code, see
:func:`generator.code_fingerprint`) is hashed into ``config_hash``. Two builds with the same
hash are the same dataset; an output folder remembers its hash and refuses a different build.
Fields that only change how the work is scheduled (workers, which job-array slice runs, the
dataset's location on disk) are not part of the identity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from .errors import SynthgenError
from .models.renderers import DEFAULT_RENDERER, get_renderer
from .names import check_name

#: fields that never change the output bytes; excluded from the identity hash. The weights paths are
#: locations only: the plan identity holds the sha256 of the weights files they lead to. The generator
#: seed likewise: it decides which generator file an automatic build trains, and that file's sha256 is
#: in the plan identity (with --e2i the seed plays no part at all).
SCHEDULING_FIELDS = ("root", "texture_root", "weights_dir", "sam_checkpoint", "e2i", "generator_seed")

TEXTURE_SOURCES = ("dtd", "normals", "perlin")


@dataclass
class BuildConfig:
    dataset: str
    category: str
    strategies: tuple[str, ...]
    root: str | None = None
    split: str = "train"
    num_samples: int | None = None  # None: one sample per (source image, strategy)
    image_size: tuple[int, int] = (256, 256)  # (H, W), as the papers train
    seed: int = 0
    samples_per_shard: int = 256
    batch_size: int = 32
    device: str = "cpu"
    texture_source: str | None = None  # dtd | normals | perlin
    texture_root: str | None = None  # the DTD-style folder when texture_source == "dtd"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    caf_table: str | None = None
    compress_images: bool = False
    max_attempts: int = 8  # redraws of a collapsed sample before it falls back to a counted normal
    # Precomputed maps (generator/precompute.py), used when a strategy needs "maps".
    edge_model: str = "pidinet"  # PiDiNet weights name or checkpoint path
    regions: str = "auto"  # auto | sam | classical
    sam_model: str = "vit_b"  # vit_b | vit_l | vit_h
    sam_checkpoint: str | None = None
    weights_dir: str | None = None  # else $SYNTHGEN_WEIGHTS
    e2i: str | None = None  # generator file of the LogicAL renderer, when a strategy needs "models"
    renderer: str = DEFAULT_RENDERER  # a key of models/renderers.py's RENDERERS (real, inpaint, full)
    # Training seed of the generator a build trains when given no --e2i (training/auto.py). Apart from
    # --seed on purpose: another --seed draws other samples from the same, cached, generator.
    generator_seed: int = 0
    # The recipe this build follows ({name, version, sha256}, generator/recipes.py), None for a build
    # from options; part of the identity, so a recipe build is recognisable by its config hash.
    recipe: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.strategies = tuple(self.strategies)
        self.image_size = tuple(int(v) for v in self.image_size)
        if not self.strategies:
            raise SynthgenError("--strategy: give at least one strategy")
        # Names become file and folder names of the build (shards, exports): one rule, checked where they
        # are written here and again where a build is read (generator/shards/untrusted.py).
        check_name(self.dataset, "dataset", "--dataset")
        if self.category is not None:  # None: the template every category of a dataset is built with
            check_name(self.category, "category", "--category")
        check_name(self.split, "split", "--split")
        for name in self.strategies:
            check_name(name, "strategy", "--strategy")
        if len(self.image_size) != 2 or min(self.image_size) < 32:
            raise SynthgenError(f"--image-size: {self.image_size} is too small (at least 32x32)")
        for name, value in (("samples-per-shard", self.samples_per_shard), ("batch-size", self.batch_size)):
            if value < 1:
                raise SynthgenError(f"--{name}: must be at least 1, got {value}")
        if self.seed < 0:
            raise SynthgenError(f"--seed: must be 0 or more, got {self.seed}")
        if self.generator_seed < 0:
            raise SynthgenError(f"--generator-seed: must be 0 or more, got {self.generator_seed}")
        if self.num_samples is not None and self.num_samples < 1:
            raise SynthgenError(f"--num-samples: must be at least 1, got {self.num_samples}")
        if self.texture_source is not None and self.texture_source not in TEXTURE_SOURCES:
            raise SynthgenError(f"--textures: unknown source '{self.texture_source}' ({', '.join(TEXTURE_SOURCES)} or a folder)")
        get_renderer(self.renderer)  # an unknown name: one line listing the known ones
        if self.device not in ("cpu", "cuda"):
            raise SynthgenError(f"--device: must be cpu or cuda, got '{self.device}'")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["strategies"] = list(self.strategies)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "BuildConfig":
        """The config a manifest or build.json recorded (``where``: that file, for the error message)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SynthgenError(f"{where}: unknown build config key {unknown[0]!r}")
        missing = sorted(f.name for f in fields(cls) if f.name not in d and f.default is MISSING and f.default_factory is MISSING)
        if missing:
            raise SynthgenError(f"{where}: build config lacks {missing[0]!r}")
        return cls(**d)

    def identity(self) -> dict[str, Any]:
        d = self.to_dict()
        for name in SCHEDULING_FIELDS:
            d.pop(name)
        if d["recipe"] is None:  # a build from options keeps the identity it had before recipes existed
            d.pop("recipe")
        return d


def digest(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def parse_image_size(text: str) -> tuple[int, int]:
    """``256`` -> (256, 256); ``256x512`` -> (256, 512) as height x width."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise SynthgenError(f"--image-size: '{text}' is not N or HxW") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise SynthgenError(f"--image-size: '{text}' is not N or HxW")


def parse_option(text: str) -> tuple[str, str, Any]:
    """``draem.beta_max=0.5`` -> ("draem", "beta_max", 0.5). Values are JSON when they parse as JSON."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise SynthgenError(f"--set: '{text}' is not STRATEGY.KEY=VALUE")
    key, raw = text.split("=", 1)
    strategy, name = key.split(".", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return strategy, name, value
