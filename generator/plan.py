"""The plan of a build: which sample comes from which source image, by which strategy, with which seed.

Everything decided before rendering starts lives here (:class:`BuildPlan`), so the stages that need
it (the pipeline, the precompute stage's sheets, the manifest) import it from below instead of from
the pipeline that renders it.

Sample ``i`` of a build uses source image ``j = i % S`` (S normal source images) as its
``k = i // S``-th variant, with strategy ``strategies[(j + k) % len(strategies)]``, so every source
meets every strategy and the counts per strategy are balanced. Its seed comes from
(seed, category, source id, variant, strategy) alone (generator.seeding), so nothing about a sample
depends on the worker that renders it, the batch it lands in, or which job-array slice runs.
The plan is cut into ``ceil(N / samples_per_shard)`` shards up front, so every shard's name is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__, code_fingerprint, preflight
from .config import BuildConfig, digest
from .datasets import DatasetIndex, load_dataset
from .errors import SynthgenError
from .imageio import sha256_file
from .seeding import sample_seed
from .shards.format import shard_name
from .sources import SourceSet, prepare_sources
from .strategies import get_strategy
from .strategies.base import ExtraField, check_options
from .strategies.caf import caf_strategies
from .strategies.texture import TextureBank


@dataclass(frozen=True)
class SampleSpec:
    """One planned sample."""

    index: int
    source_index: int
    variant: int
    strategy: str
    seed: int


@dataclass
class BuildPlan:
    """Everything decided before rendering starts (also what a worker process needs)."""

    config: BuildConfig
    config_hash: str
    dataset: DatasetIndex
    sources: SourceSet
    strategies: tuple[str, ...]  # after expanding "caf"
    specs: list[SampleSpec]
    textures: dict[str, Any] = field(default_factory=dict)  # manifest record of the texture source
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # weights/generators used
    maps: Any = None  # precompute.MapStore of the sources, when a strategy needs "maps"

    @property
    def num_shards(self) -> int:
        return -(-len(self.specs) // self.config.samples_per_shard)

    def shard_specs(self, s: int) -> list[SampleSpec]:
        n = self.config.samples_per_shard
        return self.specs[s * n : (s + 1) * n]

    def shard_file(self, s: int) -> str:
        c = self.config
        return shard_name(c.dataset, c.category, c.split, s, self.num_shards)

    @property
    def extra_fields(self) -> dict[str, ExtraField]:
        """The per-sample fields the build's strategies add to the core ones (shard datasets)."""
        return strategy_extra_fields(self.strategies)


def strategy_extra_fields(strategies: tuple[str, ...]) -> dict[str, ExtraField]:
    """The per-sample fields these strategies add to the core ones (shard datasets)."""
    fields: dict[str, ExtraField] = {}
    for name in strategies:
        fields.update(get_strategy(name).extra_fields)
    return fields


# --------------------------------------------------------------------------------------------------
# planning


def expand_strategies(names: tuple[str, ...], category: str, caf_table: str | None) -> tuple[str, ...]:
    """Replace ``caf`` by the framework's per-class selection for ``category``; drop duplicates."""
    out: list[str] = []
    for name in names:
        for expanded in caf_strategies(category, caf_table) if name == "caf" else [name]:
            if expanded not in out:
                out.append(expanded)
    for name in out:
        get_strategy(name)  # unknown names fail here, before any work
    return tuple(out)


def make_plan(source_ids: list[str], strategies: tuple[str, ...], num_samples: int, seed: int, category: str) -> list[SampleSpec]:
    n_src = len(source_ids)
    specs = []
    for i in range(num_samples):
        j, k = i % n_src, i // n_src
        strategy = strategies[(j + k) % len(strategies)]
        specs.append(SampleSpec(i, j, k, strategy, sample_seed(seed, category, source_ids[j], k, strategy)))
    return specs


def plan_build(config: BuildConfig, *, progress: bool = True) -> BuildPlan:
    """Read the dataset, check and hash everything the output depends on, and lay out the samples."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise SynthgenError("--device cuda: no CUDA device is available on this machine")
    preflight.check_memory(config.image_size, config.batch_size)  # before any image is resized to it
    index = load_dataset(config.dataset, config.root, config.category)
    images = index.split(config.split, normal_only=True)
    if not images:
        raise SynthgenError(f"{index.root}: no normal images in split '{config.split}' of {config.category}")
    strategies = expand_strategies(config.strategies, config.category, config.caf_table)
    check_options(config.options, strategies, config.image_size)  # --set: before anything is computed or written
    needs = set().union(*(get_strategy(s).needs for s in strategies))
    if "textures" in needs and config.texture_source is None:
        users = [s for s in strategies if "textures" in get_strategy(s).needs]
        raise SynthgenError(
            f"--textures: strategy {users[0]} needs an anomaly texture source: a DTD-style folder, 'normals' or 'perlin'"
        )
    sources = prepare_sources(images, config.image_size, gray=index.gray, progress=progress)
    textures = _texture_record(config) if "textures" in needs else {}
    models_record, model_artifacts = _models_record(config, strategies, needs)  # checked before the slow maps
    maps, maps_record, artifacts = None, None, []
    if "maps" in needs:  # edges and regions of every source, computed once and cached
        from .precompute import precompute_sources

        maps, maps_record, artifacts = precompute_sources(config, sources, progress=progress)
    artifacts = artifacts + model_artifacts
    num_samples = config.num_samples or len(images) * len(strategies)
    specs = make_plan([s.id for s in images], strategies, num_samples, config.seed, config.category)
    identity = {
        "config": config.identity(),
        "strategies": list(strategies),
        "num_samples": num_samples,
        "sources": list(sources.sha256),
        "textures": textures.get("files"),
        "synthgen_version": __version__,
        "code": code_fingerprint(),  # other code may draw other samples from the same options
    }
    if maps_record is not None:
        identity["maps"] = maps_record  # which models (weights sha256) and parameters made the maps
    if models_record:
        identity["models"] = models_record  # sha256 of the generator files the strategies render with
    return BuildPlan(config, digest(identity), index, sources, strategies, specs, textures, artifacts, maps)


def _models_record(config: BuildConfig, strategies: tuple[str, ...], needs: set[str]) -> tuple[dict, list[dict]]:
    """Check the generator file of strategies that need "models" (the LogicAL renderers) -> ({"e2i":
    sha256, "renderer": name} for the build identity, its manifest artifact rows); ({}, []) when no
    strategy needs one."""
    if "models" not in needs:
        return {}, []
    from .models.renderers import GENERATOR_OF, INPAINT_HINT, check_generator_file

    if config.e2i is None:
        from .models.e2i import TRAIN_HINT

        users = [s for s in strategies if "models" in get_strategy(s).needs]
        hint = INPAINT_HINT if GENERATOR_OF[config.renderer] == "inpaint" else TRAIN_HINT
        raise SynthgenError(f"--e2i: strategy {users[0]} needs a generator file for --renderer {config.renderer}; {hint}")
    sha = check_generator_file(config.e2i, config.renderer, config.image_size)
    role = {"inpaint": "inpainting generator (edge-guided)", "real": "inpainting generator (edge-guided, seam band only)",
            "full": "edge-to-image generator (full image)"}[config.renderer]
    row = {"name": "e2i", "file": str(config.e2i), "sha256": sha, "role": f"{role}, --renderer {config.renderer}"}
    return {"e2i": sha, "renderer": config.renderer}, [row]


def _texture_record(config: BuildConfig) -> dict[str, Any]:
    record: dict[str, Any] = {"source": config.texture_source}
    if config.texture_source == "dtd":
        bank = TextureBank("dtd", config.image_size, dtd_root=config.texture_root)
        root = Path(config.texture_root)
        record["root"] = str(root)
        record["files"] = [{"key": key, "sha256": sha256_file(root / key)} for key in bank.keys()]
    return record
