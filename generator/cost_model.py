"""Predict how long a build takes, and how much disk it needs, before starting it (``build --dry-run``).

The prediction multiplies the plan's counts by a table of per-stage costs measured on a machine:

==================  =====================================================  ===========================
stage               what one unit is                                       scales with
==================  =====================================================  ===========================
startup             importing the build's libraries (once per run, and      -
                    once per worker process when --workers > 1)
decode              read, hash, fully decode and resize one source image   source megapixels
edges               PiDiNet's four edge scales of one source               build pixels
regions             the classical region proposer on one source            build pixels
e2i_train_step      one training step of the small e2i network, per image  build pixels (``train-e2i``)
e2i_forward         one edge-to-image rendering (small / global network)   build pixels
inpaint_train_step  one step of the automatic inpainting generator's       its crop's pixels
                    training (the real-category preset: batch and crop)
inpaint_forward     one inpainting rendering (the preset's network)        build pixels
ssim_mask           the SSIM mask of one LogicAL sample                    build pixels
render:<strategy>   draw + render + redraws of one sample (image-level)    build pixels
shard_write         writing and hashing one MiB of shard                   bytes
verify              re-hashing one MiB of shard (``synthgen verify``)      bytes (also: hashing the
                                                                           texture files when planning)
==================  =====================================================  ===========================

Costs are CPU seconds (a machine shared with other jobs measures its work, not its wait for a core).
Render costs are per sample at the table's image size (256 x 256) and are scaled by the build's
pixel count, inpainting renderings by their window's (a generator trained on crops renders a crop-sized
window around each hole). With ``--renderer inpaint`` a LogicAL edit costs two inpainting renderings
(edited and unedited, for the visibility test) plus three SSIM maps, an identity sample one of each; with
``--renderer full`` a sample costs two e2i renderings (normal and edited edges) plus its SSIM mask.
Redraws of rejected samples are not counted (LogicAL builds redraw about once per sample).
A LogicAL build of the inpaint renderer without ``--e2i`` first trains its generator (the preset's
steps, :mod:`generator.training.auto`): counted as "generator training", the largest stage of a first
build.
The prediction gives the CPU time of each stage and the wall time on an otherwise idle machine:
rendering and writing run in ``--workers`` processes, one thread each; startup, decoding and
precompute run once, in the parent, before. Sources already decoded in the cache are not counted
(their files are hashed to find out); edge and region maps and the automatic generator are counted
even when cached (finding out would mean decoding every source): a build that reuses them skips
those stages, and the report says so.

The shipped table (``generator/cost_table.json``) was measured on the 2-core machine this project is
developed on, while other jobs shared it; re-measure on your machine with
``python benchmarks/bench_cost_model.py --out my-costs.json`` and pass ``--cost-table my-costs.json``
(or set ``SYNTHGEN_COST_TABLE``). Disk size is exact for the raw datasets (image, normal, mask) and an
upper bound for gzip-compressed strategy extras (their raw size).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import BuildConfig
from .models.renderers import GENERATOR_OF
from .errors import SynthgenError, read_json_file

DEFAULT_TABLE = Path(__file__).with_name("cost_table.json")
#: 2: inpaint_forward and inpaint_train_step added (the default LogicAL renderer)
TABLE_VERSION = 2
#: strategy-name prefixes of the LogicAL family (rendered by the edge-to-image network)
_LOGICAL_FAMILY = ("semantic-", "arbitrary-", "logical")


def load_cost_table(path: str | Path | None = None) -> dict[str, Any]:
    """The cost table: ``path``, else $SYNTHGEN_COST_TABLE, else the shipped one."""
    chosen = Path(path or os.environ.get("SYNTHGEN_COST_TABLE") or DEFAULT_TABLE)
    table = read_json_file(chosen, "cost table")
    if not isinstance(table, dict) or table.get("version") != TABLE_VERSION or "seconds" not in table:
        raise SynthgenError(f"{chosen}: not a synthgen cost table (version {TABLE_VERSION}); "
                            "make one with benchmarks/bench_cost_model.py")
    table["path"] = str(chosen)
    return table


#: stages that run in the build's worker processes; the others run once, in the parent
PARALLEL_STAGES = ("worker startup", "render", "shard_write")
#: the stages a build that finds its maps and generator in the cache skips
CACHEABLE_STAGES = ("edges", "regions", "generator training")


@dataclass
class Prediction:
    """Predicted CPU seconds per stage and bytes on disk; wall time on an idle machine."""

    seconds: dict[str, float] = field(default_factory=dict)
    bytes: int = 0
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def wall_seconds(self) -> float:
        """With ``parallel_workers`` processes and no other load on the machine."""
        serial = sum(v for k, v in self.seconds.items() if k not in PARALLEL_STAGES)
        return serial + sum(v for k, v in self.seconds.items() if k in PARALLEL_STAGES) / self.counts["parallel_workers"]


def _is_logical(strategy: str) -> bool:
    return strategy.startswith(_LOGICAL_FAMILY)


def predict_build(
    config: BuildConfig, strategies: tuple[str, ...], source_megapixels: list[float], num_samples: int,
    per_strategy: dict[str, int], *, workers: int, table: dict[str, Any], sources_cached: bool = False,
    extra_bytes_per_sample: int = 0, e2i_network: str = "small", texture_bytes: int = 0,
    generator_steps: int = 0, generator_crop: int = 0, render_window: int = 0,
) -> Prediction:
    """Seconds per stage and bytes on disk for a planned build (see the module docstring).

    ``generator_steps``: training steps of the automatic inpainting generator this build trains
    first (0: none, as with ``--e2i`` or another renderer), on crops of ``generator_crop`` px
    (0: whole images), relative to the table's measurement crop ``inpaint_train_crop``.
    ``render_window``: the side of the window the inpainting generator renders around each hole
    (its training crop, :func:`generator.models.inpaint.render_window`; 0: the whole image).
    """
    costs, table_size = table["seconds"], table["image_size"]
    h, w = config.image_size
    pixel_scale = (h * w) / (table_size[0] * table_size[1])
    shards = math.ceil(num_samples / config.samples_per_shard)
    parallel = max(1, min(workers, os.cpu_count() or 1, shards))
    out = Prediction(counts={"sources": len(source_megapixels), "samples": num_samples, "shards": shards,
                             "parallel_workers": parallel})
    out.seconds["startup"] = costs.get("startup", 0.0)
    if parallel > 1:  # each worker is a fresh process (loky) that imports the libraries again
        out.seconds["worker startup"] = costs.get("startup", 0.0) * parallel
    if texture_bytes:  # the manifest records every texture file's sha256
        out.seconds["hash textures"] = costs["verify_per_mib"] * texture_bytes / 2**20
    if not sources_cached:
        out.seconds["decode"] = costs["decode_per_megapixel"] * sum(source_megapixels)
    else:
        out.notes.append("sources: already decoded in the cache (not counted)")
    if any(_is_logical(s) for s in strategies):
        n = len(source_megapixels)
        out.seconds["edges"] = costs["edges"] * pixel_scale * n
        out.seconds["regions"] = costs["regions"] * pixel_scale * n
    if generator_steps:
        measured = table["inpaint_train_crop"]
        crop_h, crop_w = (min(generator_crop, h), min(generator_crop, w)) if generator_crop else (h, w)
        out.seconds["generator training"] = costs["inpaint_train_step"] * generator_steps * crop_h * crop_w / measured**2
    if any(stage in out.seconds for stage in CACHEABLE_STAGES):
        skipped = ", ".join(stage for stage in CACHEABLE_STAGES if stage in out.seconds)
        out.notes.append(f"{skipped}: counted even when cached; a build that reuses them (a second build of this "
                         "category, size and seed) skips them")
    from .strategies.logical import IDENTITY_FRACTION

    render = 0.0
    table_pixels = table_size[0] * table_size[1]
    window_scale = min(render_window, h) * min(render_window, w) / table_pixels if render_window else pixel_scale
    for strategy, count in per_strategy.items():
        if _is_logical(strategy) and GENERATOR_OF[config.renderer] == "inpaint":
            # an edit renders twice, an identity sample once, each a window around its hole; an edit
            # takes three SSIM maps of the whole image, an identity sample one (see above)
            edits = 1 - float(config.options.get(strategy, {}).get("identity_fraction", IDENTITY_FRACTION))
            render += ((1 + edits) * costs["inpaint_forward"] * window_scale
                       + (1 + 2 * edits) * costs["ssim_mask"] * pixel_scale) * count
            continue
        if _is_logical(strategy):
            one = 2 * costs[f"e2i_forward:{e2i_network}"] + costs["ssim_mask"]
        elif f"render:{strategy}" in costs:
            one = costs[f"render:{strategy}"]
        else:
            one = max(v for k, v in costs.items() if k.startswith("render:"))
            out.notes.append(f"render:{strategy}: not in the table, counted as the slowest image-level strategy")
        render += one * pixel_scale * count
    out.seconds["render"] = render
    raw = h * w * 3 * 2 + h * w  # image + normal + mask, uncompressed (format 2)
    if config.compress_images:
        raw = h * w * 3 * 2 * table["compressed_image_ratio"] + h * w
    per_sample = raw + extra_bytes_per_sample + table["overhead_bytes_per_sample"]
    out.bytes = int(per_sample * num_samples)
    mib = out.bytes / 2**20
    out.seconds["shard_write"] = costs["shard_write_per_mib"] * mib
    out.notes.append(f"`synthgen verify` afterwards: about {costs['verify_per_mib'] * mib:.0f} s")
    return out


def format_prediction(pred: Prediction, table: dict[str, Any]) -> str:
    """The dry-run report: one line per stage, total, disk, and where the costs came from."""
    c = pred.counts
    lines = [f"dry run: {c['samples']} samples from {c['sources']} source images into {c['shards']} shard(s), "
             f"{c['parallel_workers']} worker(s); nothing written"]
    lines.append(f"  {'stage':<18} {'CPU time':>10}")
    for stage, seconds in pred.seconds.items():
        lines.append(f"  {stage:<18} {_duration(seconds):>10}")
    lines.append(f"  {'total CPU':<18} {_duration(pred.cpu_seconds):>10}")
    lines.append(f"  {'wall (idle)':<18} {_duration(pred.wall_seconds):>10}   with {pred.counts['parallel_workers']} worker(s) "
                 "on a machine without other jobs")
    lines.append(f"  {'disk':<18} {pred.bytes / 2**20:>8.1f} MiB")
    lines.extend(f"  note: {note}" for note in pred.notes)
    lines.append(f"  costs: {table['path']} (measured {table.get('measured', '?')} on {table.get('machine', '?')})")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def dry_run(config: BuildConfig, *, workers: int = 1, cost_table: str | Path | None = None) -> str:
    """Plan ``config`` cheaply (file listing and image headers only) and return the prediction report."""
    from .datasets import load_dataset
    from .imageio import probe_image, sha256_file
    from .plan import expand_strategies, make_plan, strategy_extra_fields
    from .sources import cached_stack_ready

    table = load_cost_table(cost_table)
    index = load_dataset(config.dataset, config.root, config.category)
    images = index.split(config.split, normal_only=True)
    if not images:
        raise SynthgenError(f"{index.root}: no normal images in split '{config.split}' of {config.category}")
    strategies = expand_strategies(config.strategies, config.category, config.caf_table)
    num_samples = config.num_samples or len(images) * len(strategies)
    specs = make_plan([s.id for s in images], strategies, num_samples, config.seed, config.category)
    megapixels = []
    for source in images:
        info = probe_image(source.path)
        megapixels.append(info.width * info.height / 1e6)
    h, w = config.image_size
    extras = strategy_extra_fields(strategies)
    extra_bytes = sum(int(np.prod(spec.shape(h, w))) * np.dtype(spec.dtype).itemsize + 1 for spec in extras.values())
    network, steps, crop, window = "small", 0, 0, 0
    if GENERATOR_OF[config.renderer] == "inpaint":
        from .training.auto import needs_generator, preset_name
        from .training.inpaint import NETWORKS

        if needs_generator(config):
            preset = NETWORKS[preset_name(config)]
            steps, crop = preset.steps, preset.crop
            window = crop
        elif config.e2i:
            from .models.inpaint import load_inpainter

            window = load_inpainter(config.e2i).window
    elif config.e2i:
        from .models.e2i import GeneratorConfig, generator_config

        network = "global" if generator_config(config.e2i) == GeneratorConfig() else "small"
    cached = cached_stack_ready([sha256_file(s.path) for s in images], config.image_size, index.gray)
    texture_bytes = 0
    if config.texture_source == "dtd" and config.texture_root:
        from .strategies.texture import TextureBank

        root = Path(config.texture_root)
        texture_bytes = sum((root / key).stat().st_size for key in TextureBank("dtd", (1, 1), dtd_root=root).keys())
    pred = predict_build(config, strategies, megapixels, num_samples, dict(Counter(s.strategy for s in specs)),
                         workers=workers, table=table, sources_cached=cached, extra_bytes_per_sample=extra_bytes,
                         e2i_network=network, texture_bytes=texture_bytes, generator_steps=steps, generator_crop=crop,
                         render_window=window)
    if extras:
        pred.notes.append("strategy extras (edge/JND maps) counted at their raw size: gzip makes them smaller")
    return format_prediction(pred, table)
