"""Rendering a build's shards: one public function per shard, which every executor runs.

:func:`build_one_shard` renders shard ``s`` of a plan into the output folder (atomically) and writes
its sidecar; the local executor (generator/executors/local.py) runs it in this process or in a pool
of worker processes, the Ray executor in Ray tasks. Orchestration (claiming the folder, resuming,
merging the manifest) stays in :mod:`generator.pipeline`, which runs an executor over the shards
still to do.

Determinism across worker counts. On the CPU each worker renders with one intra-op thread: torch
reductions may sum in a different order with more threads, which could flip a rounded pixel
(:func:`render_threads`). Parallelism comes from worker processes, each building whole shards.

On the CPU, strategies that implement ``render_pixels`` render from and to the stored uint8 pixels
(same bytes as ``render``, see generator/strategies/base.py); the others, and every strategy on a
GPU, get the float batch ``render`` takes.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm

from . import __version__, preflight
from .atomic import write_json_atomic
from .plan import BuildPlan, SampleSpec
from .seeding import rng_for
from .shards.format import MASK_ON, sidecar_name
from .shards.manifest import add_counts
from .shards.writer import ShardWriter
from .strategies import Rendered, Strategy, StrategyContext
from .strategies.base import REJECTED_BECAUSE, REJECTED_UNSAID, RenderedPixels, to_uint8_hwc
from .strategies.texture import TextureBank


def make_context(plan: BuildPlan, device: torch.device, shipped: Any = None) -> StrategyContext:
    """The resources strategies read: resized sources (memory-mapped), textures, options.

    ``shipped``: the same inputs already in memory (generator.executors.shipped.ShippedInputs, which
    an executor sends to machines that have neither this machine's cache nor its files); by default
    they are read from this machine's cache and files.
    """
    config = plan.config
    stack = shipped.sources if shipped is not None else plan.sources.load_stack()

    def source_pixels(i: int) -> np.ndarray:
        return np.array(stack[i])  # a copy: samples must not alias the memory-mapped stack

    def normal_image(i: int) -> torch.Tensor:
        return torch.from_numpy(source_pixels(i)).permute(2, 0, 1).to(device).float().div_(255.0)

    bank = None
    if plan.textures:
        bank = TextureBank(
            config.texture_source,
            config.image_size,
            dtd_root=config.texture_root,
            dtd_files=shipped.textures if shipped is not None else None,
            normal_pixels=source_pixels,
            num_normals=len(plan.sources),
        )
    return StrategyContext(
        image_size=config.image_size,
        device=device,
        dataset=config.dataset,
        category=config.category,
        sources=list(plan.sources.images),
        normal_image=normal_image,
        source_pixels=source_pixels,
        texture=bank.get if bank else _no_textures,
        texture_keys=bank.keys if bank else (lambda: []),
        options=config.options,
        strategies=plan.resolved,  # objects and options resolved once, by the plan
        maps=shipped.maps if shipped is not None else plan.maps,
        models=shipped.models_on(device) if shipped is not None else load_models(plan, device),
    )


def load_models(plan: BuildPlan, device: torch.device) -> dict[str, Any]:
    """The networks the build's strategies render with (the edge-to-image generator), on ``device``."""
    if not plan.needs("models"):
        return {}
    from .models.renderers import load_renderer_model

    config = plan.config
    return {"e2i": load_renderer_model(config.e2i, config.renderer, device, config.image_size)}


def _no_textures(key: str) -> torch.Tensor:
    raise RuntimeError("this build has no texture source")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass
class _Sample:
    image: np.ndarray
    mask: np.ndarray
    normal: np.ndarray
    params: dict[str, Any]
    extras: dict[str, np.ndarray]
    redraws: int = 0
    exhausted: bool = False
    rejections: dict[str, int] = field(default_factory=dict)  # why each rejected attempt was refused


def _normal_batch(ctx: StrategyContext, sources: list[int]) -> torch.Tensor:
    """The normal images of a batch, (B, 3, H, W) float32 in [0, 1] on ctx.device: ``ctx.normal_image`` of
    each, computed from the uint8 pixels in one conversion. The tensor is channels-last in memory, as the
    pixels are: textures arrive that way and the uint8 output leaves that way, so the float work in
    between runs over contiguous memory instead of striding across channels."""
    pixels = torch.from_numpy(np.stack([ctx.source_pixels(i) for i in sources])).to(ctx.device)
    return pixels.permute(0, 3, 1, 2).float().div_(255.0)


def render_specs(specs: list[SampleSpec], ctx: StrategyContext, max_attempts: int) -> list[_Sample]:
    """Render a batch of specs, strategy by strategy, redrawing rejected samples."""
    out: list[_Sample | None] = [None] * len(specs)
    for name in dict.fromkeys(s.strategy for s in specs):
        strategy = ctx.resolved(name).strategy
        members = [k for k, s in enumerate(specs) if s.strategy == name]
        rngs = {k: rng_for(specs[k].seed) for k in members}
        recipes = {k: strategy.draw(rngs[k], ctx, specs[k].source_index) for k in members}
        redraws = dict.fromkeys(members, 0)
        rejections: dict[int, dict[str, int]] = {k: {} for k in members}
        pending = members
        pixel_path = strategy.renders_pixels and ctx.device.type == "cpu"
        while pending:
            sources = [specs[k].source_index for k in pending]
            if pixel_path:  # straight to the stored bytes (Strategy.render_pixels)
                pixels = np.stack([ctx.source_pixels(i) for i in sources])
                rendered = strategy.render_pixels(pixels, [recipes[k] for k in pending], ctx)
                samples = _unpack_pixels(rendered, pixels, [recipes[k] for k in pending])
                accepted = rendered.accepted.tolist() if rendered.accepted is not None else [True] * len(pending)
            else:
                rendered = strategy.render(_normal_batch(ctx, sources), [recipes[k] for k in pending], ctx)
                if rendered.normals is not None:
                    normals = list(to_uint8_hwc(rendered.normals))
                else:  # the normals are the sources: store their pixels as read
                    normals = [ctx.source_pixels(i) for i in sources]
                samples = _unpack(rendered, normals, strategy, [recipes[k] for k in pending])
                accepted = rendered.accepted.cpu().tolist() if rendered.accepted is not None else [True] * len(pending)
            retry = []
            for k, sample, ok in zip(pending, samples, accepted):
                sample.redraws = redraws[k]
                if not ok:
                    reason = str(sample.params.get(REJECTED_BECAUSE, REJECTED_UNSAID))
                    rejections[k][reason] = rejections[k].get(reason, 0) + 1
                sample.rejections = rejections[k]
                if ok:
                    out[k] = sample
                elif redraws[k] + 1 < max_attempts:
                    redraws[k] += 1
                    recipes[k] = strategy.redraw(rngs[k], ctx, specs[k].source_index, recipes[k])  # continues the stream
                    retry.append(k)
                else:  # every attempt collapsed: keep the clean image as a normal sample, and count it
                    sample.image, sample.mask = sample.normal.copy(), np.zeros_like(sample.mask)
                    sample.extras, sample.exhausted = {}, True
                    sample.params = {**sample.params, "fallback": "normal"}
                    out[k] = sample
            pending = retry
    return out  # type: ignore[return-value]


def _unpack(rendered: Rendered, normals: list[np.ndarray], strategy: Strategy, recipes) -> list[_Sample]:
    images = to_uint8_hwc(rendered.images)
    masks = ((rendered.masks > 0.5).to(torch.uint8) * MASK_ON).cpu().numpy()
    extras = {
        name: (rendered.extras[name].float() * spec.scale).round().cpu().numpy().astype(spec.dtype)
        if np.dtype(spec.dtype).kind in "ui"
        else (rendered.extras[name].float() * spec.scale).cpu().numpy().astype(spec.dtype)
        for name, spec in strategy.extra_fields.items()
        if name in rendered.extras
    }
    notes = rendered.notes or [{} for _ in recipes]
    return [
        _Sample(
            image=images[b],
            mask=masks[b],
            normal=normals[b],
            params={**recipe.params, **notes[b]},
            extras={name: arr[b] for name, arr in extras.items()},
        )
        for b, recipe in enumerate(recipes)
    ]


def _unpack_pixels(rendered: RenderedPixels, pixels: np.ndarray, recipes) -> list[_Sample]:
    """The samples of a pixel-path render (no extras: the strategies with a pixel path have none)."""
    normals = rendered.normals if rendered.normals is not None else pixels  # the sources, as read
    masks = rendered.masks.astype(np.uint8) * np.uint8(MASK_ON)
    notes = rendered.notes or [{} for _ in recipes]
    return [
        _Sample(image=rendered.images[b], mask=masks[b], normal=normals[b], params={**recipe.params, **notes[b]}, extras={})
        for b, recipe in enumerate(recipes)
    ]


def build_shard(plan: BuildPlan, s: int, out_dir: Path, ctx: StrategyContext, progress: tqdm | None = None) -> dict:
    """Render shard ``s`` into ``out_dir`` (atomically), write its sidecar, return the sidecar."""
    config = plan.config
    specs = plan.shard_specs(s)
    h, w = config.image_size
    extras = plan.extra_fields
    attrs = {
        "synthgen_version": __version__,
        "dataset": config.dataset,
        "category": config.category,
        "split": config.split,
        "shard_index": s,
        "num_shards": plan.num_shards,
        "first_index": specs[0].index,
        "num_samples": len(specs),
        "image_height": h,
        "image_width": w,
        "config_hash": plan.config_hash,
    }
    stats = {"strategies": {}, "labels": {"0": 0, "1": 0}, "redraws": {}, "fallback_normal": {}, "rejections": {}}
    path = out_dir / plan.shard_file(s)
    # Checked again for each shard (the build's check ran before; other programs write too): a shard
    # that cannot fit is refused before HDF5 meets a full disk, which it survives badly.
    preflight.require_shard_space(out_dir, len(specs), (h, w), extras)
    with ShardWriter(path, num_samples=len(specs), height=h, width=w, extras=extras, attrs=attrs,
                     compress_images=config.compress_images) as writer:
        for start in range(0, len(specs), config.batch_size):
            batch = specs[start : start + config.batch_size]
            samples = render_specs(batch, ctx, config.max_attempts)
            writer.write(start, _batch_arrays(plan, batch, samples, extras))
            for spec, sample in zip(batch, samples):
                _count(stats, spec.strategy, sample)
            if progress is not None:
                progress.update(len(batch))
    sidecar = {
        "file": path.name,
        "sha256": writer.sha256,
        "bytes": writer.num_bytes,
        "shard_index": s,
        "num_shards": plan.num_shards,
        "first_index": specs[0].index,
        "num_samples": len(specs),
        "config_hash": plan.config_hash,
        **stats,
    }
    write_json_atomic(out_dir / sidecar_name(path.name), sidecar)
    return sidecar


def _count(stats: dict, strategy: str, sample: _Sample) -> None:
    stats["strategies"][strategy] = stats["strategies"].get(strategy, 0) + 1
    stats["labels"][str(int(sample.mask.any()))] += 1
    if sample.redraws:
        stats["redraws"][strategy] = stats["redraws"].get(strategy, 0) + sample.redraws
    if sample.exhausted:
        stats["fallback_normal"][strategy] = stats["fallback_normal"].get(strategy, 0) + 1
    if sample.rejections:  # every rejected attempt: the redraws, and a fallback's last attempt
        add_counts(stats["rejections"].setdefault(strategy, {}), sample.rejections)


def _batch_arrays(plan: BuildPlan, specs: list[SampleSpec], samples: list[_Sample], extras: dict) -> dict[str, Any]:
    h, w = plan.config.image_size
    arrays: dict[str, Any] = {
        "image": np.stack([s.image for s in samples]),
        "mask": np.stack([s.mask for s in samples]),
        "normal": np.stack([s.normal for s in samples]),
        "label": np.array([int(s.mask.any()) for s in samples], dtype=np.uint8),
        "index": np.array([p.index for p in specs], dtype=np.uint64),
        "seed": np.array([p.seed for p in specs], dtype=np.uint64),
        "variant": np.array([p.variant for p in specs], dtype=np.uint32),
        "strategy": [p.strategy for p in specs],
        "source_id": [plan.sources.images[p.source_index].id for p in specs],
        "source_sha256": np.array([plan.sources.sha256[p.source_index] for p in specs], dtype="S64"),
        "params": [json.dumps(s.params, sort_keys=True, separators=(",", ":"), default=_json_default) for s in samples],
    }
    for name, spec in extras.items():
        shape = tuple(spec.shape(h, w))
        arrays[name] = np.stack([s.extras.get(name, np.zeros(shape, dtype=spec.dtype)) for s in samples])
        arrays[f"has_{name}"] = np.array([name in s.extras for s in samples], dtype=np.uint8)
    return arrays


#: glibc's mallopt parameters (malloc.h) and the largest buffer a batch keeps in the heap
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
BATCH_BUFFER_BYTES = 64 << 20
_batch_buffers_kept = False


def keep_batch_buffers() -> None:
    """Let glibc reuse a batch's buffers instead of mapping fresh pages for every batch (once per process).

    A float batch of 32 images at 256x256 is 25 MiB. glibc serves blocks above its mmap threshold
    (128 KiB, raised only after such a block has been freed) with a fresh mmap and unmaps them on
    free, so each batch paid a page fault per 4 KiB of every buffer: half of cutpaste-scar's CPU time
    in benchmarks/bench_generator.py (1026 -> 487 samples/s once the other strategies stopped
    allocating float batches first). With the mmap threshold at 64 MiB and the trim threshold at
    128 MiB the freed buffers stay in the heap for the next batch. A no-op off glibc.
    """
    global _batch_buffers_kept
    if _batch_buffers_kept:
        return
    _batch_buffers_kept = True
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, BATCH_BUFFER_BYTES)
    mallopt(_M_TRIM_THRESHOLD, 2 * BATCH_BUFFER_BYTES)


@contextmanager
def render_threads(device: str) -> Iterator[None]:
    """One intra-op thread (torch and OpenCV) for CPU rendering (see module docstring); restored
    afterwards. Also keeps batch buffers in the heap (:func:`keep_batch_buffers`, process-wide)."""
    if device != "cpu":
        yield
        return
    import cv2

    keep_batch_buffers()

    before, cv2_before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # parallelism comes from worker processes
    try:
        yield
    finally:
        torch.set_num_threads(before)
        cv2.setNumThreads(cv2_before)


def build_one_shard(plan: BuildPlan, s: int, out_dir: Path, shipped: Any = None) -> dict:
    """Build shard ``s`` of ``plan`` into ``out_dir`` with a context of its own (in a worker process of a
    local pool or a cluster); returns its sidecar. ``shipped``: the inputs an executor sent along
    (:func:`make_context`)."""
    with render_threads(plan.config.device):
        return build_shard(plan, s, out_dir, make_context(plan, torch.device(plan.config.device), shipped))
