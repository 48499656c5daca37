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
from .datasets import DatasetIndex
from .errors import SynthgenError
from .imageio import sha256_file
from .seeding import sample_seed
from .shards.format import shard_name
from .sources import SourceSet, list_sources, prepare_sources
from .strategies.base import ExtraField, ResolvedStrategy, resolve_strategies
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
    resolved: dict[str, ResolvedStrategy]  # each of them resolved once: its object and parsed options
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
        return strategy_extra_fields(self.resolved)

    def needs(self, resource: str) -> list[str]:
        """The build's strategies that need ``resource`` ("textures", "maps", "models")."""
        return strategies_needing(self.resolved, resource)


def strategy_extra_fields(resolved: dict[str, ResolvedStrategy]) -> dict[str, ExtraField]:
    """The per-sample fields these strategies add to the core ones (shard datasets)."""
    fields: dict[str, ExtraField] = {}
    for r in resolved.values():
        fields.update(r.strategy.extra_fields)
    return fields


def strategies_needing(resolved: dict[str, ResolvedStrategy], resource: str) -> list[str]:
    """The names of the strategies whose ``needs`` hold ``resource`` ("textures", "maps", "models")."""
    return [name for name, r in resolved.items() if resource in r.strategy.needs]


# --------------------------------------------------------------------------------------------------
# planning


def expand_strategies(names: tuple[str, ...], category: str, caf_table: str | None) -> tuple[str, ...]:
    """Replace ``caf`` by the framework's per-class selection for ``category``; drop duplicates."""
    out: list[str] = []
    for name in names:
        for expanded in caf_strategies(category, caf_table) if name == "caf" else [name]:
            if expanded not in out:
                out.append(expanded)
    return tuple(out)


def resolve_build_strategies(config: BuildConfig) -> dict[str, ResolvedStrategy]:
    """The build's strategies (``caf`` expanded) resolved once: each name turned into its object and its
    ``--set`` options parsed and checked (an unknown name, key or value is a one-line error). The plan,
    the automatic generator's check and the cost model ask these objects; the renderer's context
    carries them to every worker."""
    names = expand_strategies(config.strategies, config.category, config.caf_table)
    return resolve_strategies(names, config.options, config.image_size)


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
    if config.num_samples is not None:  # before the plan's list of samples is allocated
        preflight.check_sample_count(config.num_samples, config.samples_per_shard)
    index, images = list_sources(config.dataset, config.root, config.category, config.split)
    resolved = resolve_build_strategies(config)  # --set: before anything is computed or written
    strategies = tuple(resolved)
    needs = set().union(*(r.strategy.needs for r in resolved.values()))
    if "textures" in needs and config.texture_source is None:
        users = strategies_needing(resolved, "textures")
        raise SynthgenError(
            f"--textures: strategy {users[0]} needs an anomaly texture source: a DTD-style folder, 'normals' or 'perlin'"
        )
    sources = prepare_sources(images, config.image_size, gray=index.gray, progress=progress)
    textures = _texture_record(config) if "textures" in needs else {}
    models_record, model_artifacts = _models_record(config, strategies_needing(resolved, "models"))  # checked before the slow maps
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
    return BuildPlan(config, digest(identity), index, sources, strategies, resolved, specs, textures, artifacts, maps)


def _models_record(config: BuildConfig, users: list[str]) -> tuple[dict, list[dict]]:
    """Check the generator file of strategies that need "models" (the LogicAL renderers) -> ({"e2i":
    sha256, "renderer": name} for the build identity, its manifest artifact rows); ({}, []) when no
    strategy needs one (``users``: the strategies that need "models")."""
    if not users:
        return {}, []
    from .models.renderers import check_generator_file, get_renderer

    renderer = get_renderer(config.renderer)
    if config.e2i is None:
        raise SynthgenError(f"--e2i: strategy {users[0]} needs a generator file for --renderer {renderer.name}; {renderer.hint}")
    sha = check_generator_file(config.e2i, config.renderer, config.image_size)
    row = {"name": "e2i", "file": str(config.e2i), "sha256": sha, "role": f"{renderer.role}, --renderer {renderer.name}"}
    return {"e2i": sha, "renderer": config.renderer}, [row]


def _texture_record(config: BuildConfig) -> dict[str, Any]:
    record: dict[str, Any] = {"source": config.texture_source}
    if config.texture_source == "dtd":
        bank = TextureBank("dtd", config.image_size, dtd_root=config.texture_root)
        root = Path(config.texture_root)
        record["root"] = str(root)
        record["files"] = [{"key": key, "sha256": sha256_file(root / key)} for key in bank.keys()]
    return record
