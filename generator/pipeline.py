"""``synthgen build``: plan the samples, render them shard by shard, write sidecars, merge the manifest.

The plan (which sample, which source image, which strategy, which seed) is made by
:mod:`generator.plan`; this module renders it.

Shards. The plan is cut into ``ceil(N / samples_per_shard)`` shards up front. A shard is written
atomically and followed by its JSON sidecar; a shard whose file and sidecar verify is never redone,
so a killed build run again finishes the rest and is byte-identical to an uninterrupted one.
``num_shards``/``shard_index`` build every ``num_shards``-th shard starting at ``shard_index`` (one
slice of a cluster job array); the manifest is merged once every shard's sidecar is present.

Determinism across worker counts. On the CPU each worker renders with one intra-op thread: torch
reductions may sum in a different order with more threads, which could flip a rounded pixel.
Parallelism comes from ``workers`` processes, each building whole shards.

On the CPU, strategies that implement ``render_pixels`` render from and to the stored uint8 pixels
(same bytes as ``render``, see generator/strategies/base.py); the others, and every strategy on a
GPU, get the float batch ``render`` takes.
"""

from __future__ import annotations

import json
import os
import platform
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm

from . import __version__, code_fingerprint, preflight
from .atomic import remove_stale_temps, write_json_atomic
from .config import BuildConfig
from .errors import SynthgenError
from .imageio import sha256_file
from .lifetime import die_with_parent
from .paths import cache_root
from .plan import BuildPlan, SampleSpec, plan_build
from .records import check_sidecar, load_json, read_record
from .seeding import rng_for
from .shards.format import MASK_ON, sidecar_name
from .shards.manifest import BUILD_FILE, add_counts, write_manifest
from .shards.untrusted import check_shard, open_shard
from .shards.writer import ShardWriter
from .strategies import Rendered, Strategy, StrategyContext, get_strategy
from .strategies.base import REJECTED_BECAUSE, REJECTED_UNSAID, RenderedPixels, to_uint8_hwc
from .strategies.texture import TextureBank


# --------------------------------------------------------------------------------------------------
# rendering


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
        maps=shipped.maps if shipped is not None else plan.maps,
        models=shipped.models_on(device) if shipped is not None else _load_models(plan, device),
    )


def _load_models(plan: BuildPlan, device: torch.device) -> dict[str, Any]:
    """The networks the build's strategies render with (the edge-to-image generator), on ``device``."""
    if not any("models" in get_strategy(s).needs for s in plan.strategies):
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
        strategy = get_strategy(name)
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


# --------------------------------------------------------------------------------------------------
# orchestration


@dataclass
class BuildReport:
    out_dir: Path
    num_shards: int
    built: list[int]
    skipped: list[int]
    manifest_written: bool


def build(
    config: BuildConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    num_shards: int = 1,
    shard_index: int = 0,
    progress: bool = True,
    executor: Any = None,
    merge_only: bool = False,
) -> BuildReport:
    """Build (or resume) the shards of this job-array slice and merge the manifest when complete.

    executor: None builds on this machine (``workers`` processes); else an object whose
    ``build_shards(plan, shards, out_dir, progress)`` has another engine build them
    (generator.executors.ray_executor.RayExecutor).
    merge_only: build nothing; merge the sidecars of a finished job array into the manifest, or fail
    naming the shards that are missing.
    """
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise SynthgenError(f"--shard-index {shard_index} must be in [0, --num-shards {num_shards})")
    out_dir = Path(out_dir)
    preflight.check_out_path(out_dir)
    plan = plan_build(config, progress=progress)
    if merge_only:
        return _merge_only(plan, out_dir)
    preflight.refuse_own_inputs(out_dir, _input_folders(plan), roots=[plan.dataset.root])
    slice_of_array = num_shards > 1  # other slices may write into the folder at the same time
    with preflight.claimed_out_dir(out_dir, BUILD_FILE, shared=slice_of_array):  # claim taken back on early failure
        _claim_out_dir(out_dir, plan)
        mine = [s for s in range(plan.num_shards) if s % num_shards == shard_index]
        own_files = [name for s in mine for name in (plan.shard_file(s), sidecar_name(plan.shard_file(s)))]
        remove_stale_temps(out_dir, own_files if slice_of_array else None)
        done = [s for s in mine if _shard_verified(out_dir, plan, s)]
        todo = [s for s in mine if s not in done]
        preflight.require_shard_space(out_dir, sum(len(plan.shard_specs(s)) for s in todo), config.image_size,
                                      plan.extra_fields)
        if todo:
            workers = max(1, min(workers, len(todo)))
            if executor is None and workers > 1:
                preflight.check_memory(config.image_size, config.batch_size, workers)
            if executor is not None:
                executor.build_shards(plan, todo, out_dir, progress)
            elif workers == 1:
                _build_in_process(plan, todo, out_dir, progress)
            else:
                _build_in_workers(plan, todo, out_dir, workers, progress)
        written = _merge_manifest_if_complete(plan, out_dir)
    return BuildReport(out_dir, plan.num_shards, todo, done, written)


def _input_folders(plan: BuildPlan) -> list[tuple[str, str | Path | None]]:
    """The folders a build reads, which its output folder must stay out of."""
    config = plan.config
    return [("category folder", Path(plan.dataset.root) / config.category), ("texture folder", config.texture_root),
            ("synthgen cache", cache_root()), ("weights folder", config.weights_dir),
            *(("folder of source", folder) for folder in sorted({s.path.parent for s in plan.sources.images}))]


def _claim_out_dir(out_dir: Path, plan: BuildPlan) -> None:
    """Refuse a folder that holds something else; remember this build's identity in build.json."""
    build_file = out_dir / BUILD_FILE
    if build_file.is_file():
        try:
            record = read_record(build_file, "build record")
        except SynthgenError as e:
            why = str(e).split(": ", 1)[-1]  # the message without the path, which comes first here
            raise SynthgenError(f"{build_file}: unreadable ({why}); delete the folder or choose another --out") from None
        previous = record["config_hash"]
        if previous != plan.config_hash:
            code = record.get("code")
            # same options, other code: name the cause (the hash differs because the code does)
            if record.get("config") == json.loads(json.dumps(plan.config.to_dict())) and code != code_fingerprint():
                raise SynthgenError(
                    f"{out_dir}: was started by other synthgen code (code {code[:12] if isinstance(code, str) else 'unrecorded'} "
                    f"!= {code_fingerprint()[:12]}); resuming would mix samples of both: finish it with that version, "
                    "or choose another --out"
                )
            raise SynthgenError(
                f"{out_dir}: holds a different build (config hash {previous[:12]} != {plan.config_hash[:12]}); "
                "choose another --out or delete the folder"
            )
        return
    if any(p for p in out_dir.iterdir() if not p.name.startswith(".tmp-")):
        if build_file.is_file():  # another slice of the same job array claimed the folder a moment ago
            return _claim_out_dir(out_dir, plan)
        raise SynthgenError(f"{out_dir}: folder is not empty and is not a synthgen build; choose another --out")
    write_json_atomic(
        build_file,
        {"config_hash": plan.config_hash, "config": plan.config.to_dict(), "synthgen_version": __version__,
         "code": code_fingerprint()},
    )


def _checked_sidecar(plan: BuildPlan, out_dir: Path, s: int, *, check_shard_file: bool) -> dict:
    """The sidecar of shard ``s``, checked as a record and against the plan (generator/records.py:
    its file, position, sample count, config hash and strategies); with ``check_shard_file``, also the
    shard it describes, as ``synthgen verify`` checks it: size, sha256 and sample count. One-line
    SynthgenError naming the sidecar or shard otherwise."""
    path = out_dir / plan.shard_file(s)
    side = out_dir / sidecar_name(path.name)
    if not side.is_file() or not path.is_file():
        raise SynthgenError(f"{side if path.is_file() else path}: not found (shard {s} is not finished)")
    specs = plan.shard_specs(s)
    sidecar = check_sidecar(load_json(side, "shard sidecar"), side, file=path.name, shard_index=s,
                            num_shards=plan.num_shards, first_index=specs[0].index, num_samples=len(specs),
                            config_hash=plan.config_hash, strategies=plan.strategies)
    if check_shard_file:
        if path.stat().st_size != sidecar["bytes"] or sha256_file(path) != sidecar["sha256"]:
            raise SynthgenError(f"{path}: bytes differ from its sidecar's size or sha256 (changed after it was written)")
        with open_shard(path) as f:
            check_shard(f, path, ("image", "mask", "strategy"), len(specs), plan.config.image_size)
    return sidecar


def _shard_verified(out_dir: Path, plan: BuildPlan, s: int) -> bool:
    try:
        _checked_sidecar(plan, out_dir, s, check_shard_file=True)
    except SynthgenError:
        return False
    return True


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
def _render_threads(device: str) -> Iterator[None]:
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


def _build_in_process(plan: BuildPlan, todo: list[int], out_dir: Path, progress: bool) -> None:
    total = sum(len(plan.shard_specs(s)) for s in todo)
    with _render_threads(plan.config.device), tqdm(total=total, desc="samples", unit="sample", disable=not progress) as bar:
        ctx = make_context(plan, torch.device(plan.config.device))
        for s in todo:
            build_shard(plan, s, out_dir, ctx, bar)


def _worker_build(plan: BuildPlan, s: int, out_dir: Path, shipped: Any = None) -> dict:
    """Build shard ``s`` in a worker process (a local pool's or a cluster's); returns its sidecar."""
    with _render_threads(plan.config.device):
        return build_shard(plan, s, out_dir, make_context(plan, torch.device(plan.config.device), shipped))


def _build_in_workers(plan: BuildPlan, todo: list[int], out_dir: Path, workers: int, progress: bool) -> None:
    from joblib import Parallel, delayed

    jobs = (delayed(_worker_build)(plan, s, out_dir) for s in todo)
    # Each worker is tied to this process at start-up: a killed build leaves no worker running.
    results = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered",
                       initializer=die_with_parent, initargs=(os.getpid(),))(jobs)
    for _ in tqdm(results, total=len(todo), desc="shards", unit="shard", disable=not progress):
        pass


def _finished_sidecars(plan: BuildPlan, out_dir: Path) -> tuple[list[dict], list[int]]:
    """(sidecars of the shards that are finished, indices of those that are not)."""
    sidecars, missing = [], []
    for s in range(plan.num_shards):
        try:
            sidecars.append(_checked_sidecar(plan, out_dir, s, check_shard_file=False))
        except SynthgenError:
            missing.append(s)
    return sidecars, missing


def _merge_manifest_if_complete(plan: BuildPlan, out_dir: Path) -> bool:
    sidecars, missing = _finished_sidecars(plan, out_dir)
    if missing:
        return False
    write_manifest(out_dir, plan, sidecars, environment(plan.config.device))
    return True


def _merge_only(plan: BuildPlan, out_dir: Path) -> BuildReport:
    """``--merge-only``: the manifest of a build whose shards other jobs wrote (a job array's last step)."""
    build_file = out_dir / BUILD_FILE
    if not build_file.is_file():
        raise SynthgenError(f"{out_dir}: no synthgen build here ({BUILD_FILE} missing); run the build's jobs first")
    with preflight.claimed_out_dir(out_dir, BUILD_FILE):  # no job of the array may still be writing
        _claim_out_dir(out_dir, plan)  # the same config, or a one-line refusal
        _, missing = _finished_sidecars(plan, out_dir)
        missing = [s for s in missing if not (out_dir / sidecar_name(plan.shard_file(s))).exists()]
        if missing:
            listed = ", ".join(map(str, missing[:20])) + (", ..." if len(missing) > 20 else "")
            raise SynthgenError(
                f"{out_dir}: cannot merge: shard(s) {listed} of {plan.num_shards} are not finished; run the jobs "
                "that build them again (shard s belongs to --shard-index s % --num-shards)"
            )
        # Every slice's sidecar and shard checked as `synthgen verify` will check the manifest, before
        # anything is written: a merge never writes a manifest that verify refuses.
        sidecars = [_checked_sidecar(plan, out_dir, s, check_shard_file=True) for s in range(plan.num_shards)]
        write_manifest(out_dir, plan, sidecars, environment(plan.config.device))
    return BuildReport(out_dir, plan.num_shards, [], list(range(plan.num_shards)), True)


def environment(device: str) -> dict[str, str]:
    """Library versions and hardware that produced the bytes (recorded, not hashed)."""
    import cv2
    import h5py
    import PIL

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "pillow": PIL.__version__,
        "opencv": cv2.__version__,
        "device": device,
        "synthgen_code": code_fingerprint(),  # also part of the config hash: which code drew the samples
    }
    if device == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(0)
    env["cpu_count"] = str(os.cpu_count())
    return env
