"""Ray executor against the local worker pool (issue 16), and a scaling model for a full MVTec LOCO build.

    python benchmarks/bench_ray.py [--samples 1000] [--size 256] [--model-only]

Measured on this machine (demo dataset, ``draem`` with Perlin textures, CPU):
1. ``--workers 2`` (joblib/loky) against a local 2-CPU Ray cluster (``RayExecutor``), 8 shards each,
   side by side in one run; the shards must be byte-identical. Ray's start-up is timed apart.
2. The same build as 1 shard and as ~64 small shards under both, to find the fixed cost per shard
   (``(wall(64) - wall(8)) / 56`` per CPU-pair, times 2 CPUs), and the shard size from which that
   cost is under 5% of a shard's work (where Ray's overhead stops mattering).
3. What one Ray task pays to receive LOCO-sized shipped inputs (354 sources at 256x256, their maps,
   the full pix2pixHD generator; synthetic arrays, no MVTec data) and the manifest merge of 64 shards.

Then a model of a full MVTec LOCO LogicAL build (precompute + edge-to-image training + 10 samples per
training image) on 1, 8 and 64 GPUs, from those measurements, the CPU figures of earlier notes and
stated GPU assumptions (no GPU on this machine: every GPU rate below is an assumption, labelled so).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from synthgen.generator.config import BuildConfig
from synthgen.generator.datasets.demo import render_demo
from synthgen.generator.executors.ray_executor import RayExecutor, _received, import_ray
from synthgen.generator.executors.shipped import ShippedInputs, ShippedMaps
from synthgen.generator.pipeline import _merge_manifest_if_complete, build
from synthgen.generator.plan import plan_build


def timed(fn, *args, **kw) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - start, out


def same_bytes(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def measure(samples: int, size: int, work: Path) -> dict[str, float]:
    ray = import_ray()
    root = render_demo(work / "demo").parent

    def config(per_shard: int) -> BuildConfig:
        return BuildConfig(dataset="demo", category="parts_box", root=str(root), strategies=("draem",),
                           num_samples=samples, samples_per_shard=per_shard, image_size=(size, size), seed=0,
                           texture_source="perlin", device="cpu")

    eight, small = math.ceil(samples / 8), max(1, math.ceil(samples / 64))
    plan_build(config(eight), progress=False)  # decode and cache the sources once, outside every timing
    m: dict[str, float] = {}
    m["ray_init_s"], _ = timed(ray.init, num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        # Start each engine's two worker processes (torch imports) once, outside the timed builds:
        # loky keeps its pool between builds and Ray its workers, as they would in a long run.
        for executor in ("local", "ray"):
            wall, _ = timed(build, config(2), work / f"warm-{executor}", workers=2,
                            executor=RayExecutor() if executor == "ray" else None, progress=False)
            m[f"{executor}_start_s"] = wall
        runs = [("local", eight), ("ray", eight), ("local", small), ("ray", small), ("ray", samples)]
        for executor, per_shard in runs:
            out = work / f"{executor}-{per_shard}"
            engine = RayExecutor() if executor == "ray" else None
            wall, report = timed(build, config(per_shard), out, workers=2, executor=engine, progress=False)
            m[f"{executor}_{per_shard}_s"] = wall
            m[f"shards_{per_shard}"] = report.num_shards
            print(f"  {executor:>5} {report.num_shards:>3} shard(s) of {per_shard:>4}: {wall:7.1f} s", flush=True)
        assert same_bytes(work / f"local-{eight}", work / f"ray-{eight}"), "Ray build differs from the local one"
        assert same_bytes(work / f"local-{small}", work / f"ray-{small}"), "Ray build differs from the local one"
        plan = plan_build(config(small), progress=False)
        m["merge_s"], _ = timed(_merge_manifest_if_complete, plan, work / f"ray-{small}")
        m["receive_first_s"], m["receive_s"], m["shipped_mb"] = _receive_cost(ray)
    finally:
        ray.shutdown()
    m["eight"], m["small"], m["shards_small"] = eight, small, m[f"shards_{small}"]
    return m


def _receive_cost(ray) -> tuple[float, float, float]:
    """Seconds a task spends on LOCO-sized ShippedInputs, the first time in a worker process and after
    (it keeps them: ray_executor._received), and their size in MB."""
    from synthgen.generator.models.e2i import E2IModel, GeneratorConfig, GlobalGenerator

    rng = np.random.default_rng(0)
    n, h, w = 354, 256, 256
    maps = tuple({"edges": rng.integers(0, 256, (4, h, w), dtype=np.uint8),
                  "edges_fused": rng.integers(0, 256, (h, w), dtype=np.uint8),
                  "regions": rng.integers(0, 20, (h, w)).astype(np.int32)} for _ in range(n))
    model = E2IModel(GlobalGenerator(GeneratorConfig()).eval(), False, Path("full"), "0" * 64)
    shipped = ShippedInputs(rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), None, ShippedMaps(maps), {"e2i": model})
    size_mb = (shipped.sources.nbytes + sum(a.nbytes for m in maps for a in m.values())
               + sum(p.numel() * p.element_size() for p in model.generator.parameters())) / 2**20

    @ray.remote(num_cpus=2)  # every task in the same one worker process
    def receive(boxed_ref: list | None) -> int:
        if boxed_ref is None:  # warm-up: the worker process starts and imports torch
            return 0
        inputs = _received(boxed_ref)
        models = inputs.models_on(torch.device("cpu"))
        inputs.maps(0), inputs.sources[0].sum()
        return len(models)

    ref = ray.put(shipped)
    ray.get(receive.remote(None))
    times = []
    for _ in range(6):  # one at a time: the wall of a task, argument fetch and deserialisation included
        start = time.perf_counter()
        ray.get(receive.remote([ref]))
        times.append(time.perf_counter() - start)
    return times[0], float(np.median(times[1:])), size_mb


# --------------------------------------------------------------------------------------------------
# the scaling model

LOCO_TRAIN_IMAGES = {"breakfast_box": 351, "juice_bottle": 335, "pushpins": 372, "screw_bag": 360,
                     "splicing_connectors": 354}  # MVTec LOCO train/good counts (1,772 of its 3,644 images)

# GPU rates: ASSUMED (no GPU on this machine); each says where its figure comes from.
ASSUMED = {
    "sam_s_per_image": (2.0, "SAM vit_b automatic masks, s/image on one GPU (DESIGN.md: 1.6-6 s with defaults)"),
    "pidinet_images_per_s": (200.0, "PiDiNet table5 at 256^2, images/s on one GPU (CPU: 5.45, issue 3 note)"),
    "e2i_train_images_per_s": (25.0, "full pix2pixHD generator + 2-scale D training, images/s, bf16, one GPU "
                                     "(CPU: 1 image per 8.78 s, issue 6 note; 108 GFLOPs forward)"),
    "logical_samples_per_s": (100.0, "LogicAL draw + 2 renders + SSIM, samples/s on one GPU (the project's target)"),
    "node_link_gb_per_s": (1.25, "object-store transfer between nodes (10 GbE)"),
    "gpus_per_node": (8, "GPUs per node"),
}
EPOCHS, SAMPLES_PER_IMAGE, SAMPLES_PER_SHARD, REGIONS_PER_TASK = 300, 10, 256, 8
PLAN_S_PER_IMAGE = 0.06  # driver: sha256 + PNG decode + resize of a 1600x800 LOCO image (one core; measured order)
SAM_VIT_B_MB = 375


def loco_model(m: dict[str, float], gpus: int) -> dict[str, float]:
    """Wall seconds of each stage of a full LOCO LogicAL build on ``gpus`` GPUs (Ray executor)."""
    a = {k: v for k, (v, _) in ASSUMED.items()}
    nodes = max(1, math.ceil(gpus / a["gpus_per_node"]))
    overhead = m["overhead_per_shard_s"]
    images = sum(LOCO_TRAIN_IMAGES.values())
    t: dict[str, float] = {}
    # The driver plans every category (hash, decode, resize): serial, once; cached afterwards.
    t["plan (driver, serial)"] = images * PLAN_S_PER_IMAGE + m["ray_init_s"]
    # Precompute: edge tasks are the detector's GPU batches (256 images at 256^2: 2 per category),
    # region tasks REGIONS_PER_TASK images; SAM's weights reach each node once.
    edge_tasks = sum(math.ceil(n / 256) for n in LOCO_TRAIN_IMAGES.values())
    edge_wave = 256 / a["pidinet_images_per_s"] + overhead
    region_tasks = sum(math.ceil(n / REGIONS_PER_TASK) for n in LOCO_TRAIN_IMAGES.values())
    region_wave = REGIONS_PER_TASK * a["sam_s_per_image"] + overhead
    broadcast = (nodes - 1) * SAM_VIT_B_MB / 1024 / a["node_link_gb_per_s"]
    t["precompute"] = math.ceil(edge_tasks / gpus) * edge_wave + math.ceil(region_tasks / gpus) * region_wave + broadcast
    # One generator per category (train-e2i), each on one GPU: categories run side by side at best.
    per_category = [EPOCHS * n / a["e2i_train_images_per_s"] for n in sorted(LOCO_TRAIN_IMAGES.values(), reverse=True)]
    rounds = [per_category[i::gpus] for i in range(min(gpus, len(per_category)))]
    t["e2i training"] = max(sum(r) for r in rounds)
    # Synthesis: shards of SAMPLES_PER_SHARD; inputs (sources, maps, generator) reach each node once per category.
    shards = sum(math.ceil(n * SAMPLES_PER_IMAGE / SAMPLES_PER_SHARD) for n in LOCO_TRAIN_IMAGES.values())
    shard_s = SAMPLES_PER_SHARD / a["logical_samples_per_s"] + overhead + m["receive_s"]
    shipped_gb = m["shipped_mb"] / 1024 * len(LOCO_TRAIN_IMAGES)
    first_receive = m["receive_first_s"] * len(LOCO_TRAIN_IMAGES)  # each worker, once per category's build
    t["synthesis"] = (math.ceil(shards / gpus) * shard_s + first_receive
                      + (nodes - 1) * shipped_gb / a["node_link_gb_per_s"])
    t["manifest merge"] = m["merge_s"] * shards / m["shards_small"]
    t["total"] = sum(t.values())
    return t


def report_model(m: dict[str, float]) -> None:
    print("\n## Scaling model: full MVTec LOCO LogicAL build (5 categories, 1,772 training images, "
          f"{SAMPLES_PER_IMAGE} samples each)\n")
    print("Assumed GPU rates (unmeasured here):")
    for name, (value, why) in ASSUMED.items():
        print(f"- {name} = {value:g}: {why}")
    print(f"- driver planning {PLAN_S_PER_IMAGE} s/image; Ray overhead per shard {m['overhead_per_shard_s']:.3f} s, "
          f"receive of shipped inputs {m['receive_first_s']:.2f} s per worker and build, then {m['receive_s']:.3f} s "
          f"per task, merge {m['merge_s']:.3f} s per "
          f"{m['shards_small']:.0f} shards (measured here)\n")
    gpu_counts = (1, 8, 64)
    rows = {g: loco_model(m, g) for g in gpu_counts}
    print("| stage | " + " | ".join(f"{g} GPU(s)" for g in gpu_counts) + " |")
    print("|---|" + "---:|" * len(gpu_counts))
    for stage in rows[1]:
        print(f"| {stage} | " + " | ".join(f"{rows[g][stage] / 60:.1f} min" for g in gpu_counts) + " |")
    print("\nWhere it stops scaling: the edge-to-image training is one generator per category on one GPU, so from"
          " 5 GPUs on it is the wall (the largest category's training); precompute stops at its"
          f" {sum(math.ceil(n / REGIONS_PER_TASK) for n in LOCO_TRAIN_IMAGES.values())} region tasks; synthesis"
          " is minutes on one GPU and object-store transfers and the manifest merge stay seconds.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--model-only", action="store_true", help="skip the measurements; model with the figures of "
                        "the last run on this machine (benchmarks/bench_ray.py docstring / issue 16 note)")
    args = parser.parse_args()
    print(f"# Ray executor, {os.cpu_count()} CPU(s) visible; torch {torch.__version__}\n")
    if args.model_only:
        m = dict(MODEL_ONLY)
    else:
        work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
        try:
            print(f"## {args.samples}-sample draem builds at {args.size}x{args.size}, 2 CPUs\n")
            m = measure(args.samples, args.size, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        e, s, n = m["eight"], m["small"], args.samples
        # Both CPUs busy in the 8- and 64-shard runs: extra wall x 2 CPUs = extra CPU-seconds.
        for ex in ("local", "ray"):
            m[f"{ex}_overhead_per_shard_s"] = (m[f"{ex}_{s}_s"] - m[f"{ex}_{e}_s"]) * 2 / (m[f"shards_{s}"] - m[f"shards_{e}"])
        m["overhead_per_shard_s"] = max(m["ray_overhead_per_shard_s"], 1e-3)
        per_sample = m[f"ray_{n}_s"] / n  # one shard: one CPU works, the other idles
        print(f"\nRay start-up (local cluster, 2 CPUs): {m['ray_init_s']:.1f} s; first 2-sample build (worker processes "
              f"start, import torch): Ray {m['ray_start_s']:.1f} s, loky {m['local_start_s']:.1f} s (not in the walls above)")
        print(f"8 shards: Ray / --workers 2 wall = {m[f'ray_{e}_s'] / m[f'local_{e}_s']:.2f}")
        print(f"{m[f'shards_{s}']:.0f} shards: Ray / --workers 2 wall = {m[f'ray_{s}_s'] / m[f'local_{s}_s']:.2f}")
        print(f"fixed cost per shard: Ray {m['ray_overhead_per_shard_s']:.3f} s, local pool {m['local_overhead_per_shard_s']:.3f} s")
        print(f"1 shard vs 8 shards on Ray: {m[f'ray_{n}_s']:.1f} s vs {m[f'ray_{e}_s']:.1f} s "
              f"(a shard is the unit of parallelism: one shard keeps one CPU busy)")
        print(f"one sample costs {per_sample * 1000:.1f} ms (1-shard Ray build); Ray's per-shard cost is under 5% "
              f"of a shard's work from {19 * m['overhead_per_shard_s'] / per_sample:.0f} samples per shard")
        print(f"task receiving LOCO-sized shipped inputs ({m['shipped_mb']:.0f} MB): first in a worker "
              f"{m['receive_first_s']:.2f} s, later tasks {m['receive_s']:.3f} s; "
              f"manifest merge of {m[f'shards_{s}']:.0f} shards: {m['merge_s']:.3f} s")
    report_model(m)


# The figures of the run reported in the issue 16 note (shared, busy 2-core machine), for --model-only.
# Run of 2026-12-01: `nice -n 10 python benchmarks/bench_ray.py` (1000 samples, 256^2), load average ~13.
MODEL_ONLY = {"ray_init_s": 15.9, "overhead_per_shard_s": 0.193, "receive_first_s": 9.29, "receive_s": 0.005,
              "shipped_mb": 961.0, "merge_s": 0.145, "shards_small": 63}

if __name__ == "__main__":
    main()
