"""Measure the per-stage costs that ``synthgen build --dry-run`` predicts from (generator/cost_model.py).

    python benchmarks/bench_cost_model.py --out my-costs.json \
        [--dataset mvtec_ad --root DATA --category bottle] [--textures DTD] [--weights-dir WEIGHTS]
    synthgen build ... --dry-run --cost-table my-costs.json

One thread for torch and OpenCV (a build worker's setting), image size 256 x 256. Each stage is timed
on real work, fresh caches (a temporary folder), and reported in CPU seconds per unit (see the stage
table in generator/cost_model.py): CPU time, not wall time, so that a machine shared with other jobs
still measures the work itself (wall time there mostly measures the wait for a core). The table
printed at the end is what goes into the JSON file.
Without PiDiNet weights the edge and region stages are left out (the prediction then fails for
LogicAL plans with a clear error).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"

from synthgen.generator.cost_model import TABLE_VERSION  # noqa: E402
from synthgen.generator.imageio import sha256_file  # noqa: E402

SIZE = (256, 256)
IMAGE_STRATEGIES = ("draem", "transparent", "opaque", "ndaa", "rotation", "cutpaste", "cutpaste-scar")


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def measure_startup() -> float:
    """A fresh interpreter importing the build's modules (torch, OpenCV, h5py ...): paid once per run."""
    import resource
    import subprocess

    def children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    start = children()
    subprocess.run([sys.executable, "-c", "import synthgen.generator.cli, synthgen.generator.pipeline, synthgen.generator.strategies"],
                   check=True, cwd=REPO)
    return children() - start


def measure_decode(images, tmp: Path):
    """prepare_sources (hash, full decode, resize) with an empty cache: (seconds per source megapixel, sources)."""
    from synthgen.generator.imageio import probe_image
    from synthgen.generator.sources import prepare_sources

    megapixels = sum(info.width * info.height for info in map(probe_image, (s.path for s in images))) / 1e6
    start = time.process_time()
    sources = prepare_sources(images, SIZE, threads=1, progress=False, cache_dir=tmp / "sources")
    return (time.process_time() - start) / megapixels, sources


def measure_maps(stack: np.ndarray, weights_dir: Path, tmp: Path) -> dict[str, float]:
    """PiDiNet edges per image, then the classical regions (the rest of precompute) per image."""
    from synthgen.generator.precompute import MapMaker, MapSettings, precompute

    maker = MapMaker(MapSettings(weights_dir=str(weights_dir), regions="classical"))
    n = min(len(stack), 8)
    batch = np.array(stack[:n])  # a writable copy of the memory-mapped stack
    edges = median_seconds(lambda: maker.detector(batch), 1) / n
    ids = [f"cost-{i}" for i in range(n)]
    start = time.process_time()
    precompute(batch, ids, maker, cache_root=tmp / "maps")
    total = (time.process_time() - start) / n
    return {"edges": edges, "regions": max(total - edges, 0.0)}


def measure_e2i() -> dict[str, float]:
    """Forward of the small and the global (pix2pixHD) generator, and one small training step, per image."""
    from synthgen.generator.models.e2i import GeneratorConfig, GlobalGenerator
    from synthgen.generator.training.e2i import E2ITrainingModule, small_config

    out = {}
    edges = (torch.rand(1, 1, *SIZE) > 0.9).float()
    for name, config in (("small", small_config().generator), ("global", GeneratorConfig())):
        generator = GlobalGenerator(config).eval()
        with torch.inference_mode():
            out[f"e2i_forward:{name}"] = median_seconds(lambda: generator(edges), 1)
    module = E2ITrainingModule(small_config().to_dict(), seed=0, epochs=1)
    g_opt, d_opt = module.configure_optimizers()
    module.optimizers = lambda: (g_opt, d_opt)  # the step without a Lightning Trainer around it
    module.manual_backward = lambda loss: loss.backward()
    module.log_dict = lambda *a, **k: None
    batch = 2
    data = {"edge": (torch.rand(batch, 1, *SIZE) > 0.9).float(), "image": torch.rand(batch, 3, *SIZE)}
    out["e2i_train_step"] = median_seconds(lambda: module.training_step(data, 0), 1) / batch
    return out


def measure_inpaint() -> tuple[dict[str, float], int]:
    """The automatic inpainting generator (the real-category preset): one rendering per image at SIZE,
    and one training step (its batch, its crop, every active loss) as the build's auto-training runs it."""
    from synthgen.generator.models.inpaint import InpaintGenerator
    from synthgen.generator.training.auto import DEFAULT_NETWORK
    from synthgen.generator.training.inpaint import NETWORKS, PerceptualLoss, _Run, train_step

    config = NETWORKS[DEFAULT_NETWORK]
    generator = InpaintGenerator(config.network).eval()
    image, edges, hole = torch.rand(1, 3, *SIZE), torch.rand(1, 1, *SIZE), torch.zeros(1, 1, *SIZE)
    hole[..., 96:160, 96:160] = 1
    with torch.inference_mode():
        forward = median_seconds(lambda: generator(image, edges, hole), 3)
    crop = config.crop or SIZE[0]
    region = torch.zeros(config.batch_size, crop, crop)
    region[:, crop // 4: crop // 2, crop // 4: 3 * crop // 4] = 1
    real = torch.rand(config.batch_size, 3, crop, crop)
    target = real.clone()  # paste items (generator/training/inpaint.py): another photo inside the region
    pasted = int(round(config.batch_size * config.paste_fraction))
    target[:pasted] = torch.where(region[:pasted, None] > 0, torch.rand_like(target[:pasted]), target[:pasted])
    batch = {"real": real, "target": target, "edge": torch.rand(config.batch_size, 1, crop, crop), "region": region}
    run = _Run(config, 0, torch.device("cpu"))
    perceptual = PerceptualLoss(None, None, torch.device("cpu")) if config.perceptual_weight > 0 else None
    step = median_seconds(lambda: train_step(run, batch, config, perceptual), 3)
    return {"inpaint_forward": forward, "inpaint_train_step": step}, crop


def measure_ssim(repeats: int) -> float:
    from synthgen.generator.strategies.ssim_mask import ssim_masks

    a, b = torch.rand(16, 3, *SIZE), torch.rand(16, 3, *SIZE)
    return median_seconds(lambda: ssim_masks(a, b), repeats) / 16


def measure_render(sources, textures: str | None, samples: int, repeats: int) -> dict[str, float]:
    """draw + render + redraws + conversion to uint8, per sample, through the renderer module's render_specs."""
    from synthgen.generator.render import SampleSpec, keep_batch_buffers, render_specs
    from synthgen.generator.seeding import sample_seed
    from synthgen.generator.strategies import StrategyContext, TextureBank

    keep_batch_buffers()  # as a build's renderer runs

    stack = sources.load_stack()

    def pixels(i: int) -> np.ndarray:
        return np.array(stack[i])

    bank = TextureBank("dtd", SIZE, dtd_root=textures) if textures else TextureBank("perlin", SIZE)
    ctx = StrategyContext(image_size=SIZE, device=torch.device("cpu"), dataset="cost", category="cost",
                          sources=list(sources.images), source_pixels=pixels,
                          normal_image=lambda i: torch.from_numpy(pixels(i)).permute(2, 0, 1).float().div_(255),
                          texture=bank.get, texture_keys=bank.keys)
    n_src = len(sources)
    out = {}
    for name in IMAGE_STRATEGIES:
        specs = [SampleSpec(i, i % n_src, i // n_src, name, sample_seed(1, "cost", str(i % n_src), i, name))
                 for i in range(samples)]

        def run() -> None:
            for start in range(0, samples, 32):
                render_specs(specs[start:start + 32], ctx, max_attempts=8)

        out[f"render:{name}"] = median_seconds(run, repeats) / samples
    return out


def measure_shards(stack: np.ndarray, tmp: Path, samples: int) -> dict[str, float]:
    """Write + hash a shard of real images: seconds per MiB, bytes beyond the raw arrays, gzip ratio."""
    from synthgen.generator.shards.writer import ShardWriter

    rng = np.random.default_rng(0)
    images = stack[rng.integers(0, len(stack), samples)]
    masks = np.zeros((samples, *SIZE), np.uint8)
    masks[::2, 64:128, 64:160] = 255
    batch = {
        "image": images, "mask": masks, "normal": images, "label": (np.arange(samples) % 2 == 0).astype(np.uint8),
        "index": np.arange(samples, dtype=np.uint64), "seed": np.arange(samples, dtype=np.uint64),
        "variant": np.zeros(samples, np.uint32), "strategy": ["draem"] * samples,
        "source_id": [f"train/good/{i:03d}" for i in range(samples)], "source_sha256": np.array(["0" * 64] * samples, "S64"),
        "params": [json.dumps({"perlin_scale": [4, 8], "beta": 0.123456, "texture": "images/x/y.jpg"})] * samples,
    }
    raw = samples * (SIZE[0] * SIZE[1] * 7)
    out = {}
    for compress in (False, True):
        path = tmp / f"cost-{compress}.h5"
        start = time.process_time()
        with ShardWriter(path, num_samples=samples, height=SIZE[0], width=SIZE[1], compress_images=compress) as w:
            w.write(0, batch)
        seconds = time.process_time() - start
        size = path.stat().st_size
        if not compress:
            out["shard_write_per_mib"] = seconds / (size / 2**20)
            out["overhead_bytes_per_sample"] = (size - raw) / samples
            start = time.process_time()
            sha256_file(path)
            out["verify_per_mib"] = (time.process_time() - start) / (size / 2**20)
        else:
            image_bytes = size - samples * (SIZE[0] * SIZE[1] + out["overhead_bytes_per_sample"])
            out["compressed_image_ratio"] = image_bytes / (samples * SIZE[0] * SIZE[1] * 6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="the cost table (JSON) to write")
    ap.add_argument("--dataset", default="mvtec_ad")
    ap.add_argument("--root", type=Path, default=SHARED / "data" / "mvtec_ad")
    ap.add_argument("--category", default="bottle")
    ap.add_argument("--textures", type=Path, default=SHARED / "data" / "dtd", help="DTD folder ('' = perlin textures)")
    ap.add_argument("--weights-dir", type=Path, default=SHARED / "weights", help="PiDiNet weights ('' = skip edges)")
    ap.add_argument("--samples", type=int, default=96, help="samples per strategy")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    from synthgen.generator.datasets import load_dataset

    images = load_dataset(args.dataset, args.root, args.category).split("train", normal_only=True)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        seconds["startup"] = measure_startup()
        seconds["decode_per_megapixel"], sources = measure_decode(images, tmp)
        stack = np.asarray(sources.load_stack())
        if str(args.weights_dir) and args.weights_dir.is_dir():
            seconds.update(measure_maps(stack, args.weights_dir, tmp))
        seconds.update(measure_e2i())
        inpaint, inpaint_crop = measure_inpaint()
        seconds.update(inpaint)
        seconds["ssim_mask"] = measure_ssim(args.repeats)
        textures = str(args.textures) if str(args.textures) and args.textures.is_dir() else None
        seconds.update(measure_render(sources, textures, args.samples, args.repeats))
        shards = measure_shards(stack, tmp, 128)
    seconds["shard_write_per_mib"] = shards.pop("shard_write_per_mib")
    seconds["verify_per_mib"] = shards.pop("verify_per_mib")
    table = {
        "version": TABLE_VERSION,
        "image_size": list(SIZE),
        "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread",
        "data": f"{args.dataset}/{args.category} ({len(images)} sources), textures: "
                + (f"folder {Path(textures).name}" if textures else "perlin"),
        "conditions": f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end of the measurement",
        "seconds": seconds,
        "inpaint_train_crop": inpaint_crop,
        **shards,
    }
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print("| stage | seconds per unit |\n|---|---:|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.5f} |")
    print(f"\noverhead bytes/sample {shards['overhead_bytes_per_sample']:.0f}, "
          f"gzip image ratio {shards['compressed_image_ratio']:.3f}; written to {args.out}")


if __name__ == "__main__":
    main()
