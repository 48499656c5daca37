"""Generator benchmark (issue 2): three measurements, each side by side with its peer in one run.

1. Synthesis throughput at 256x256 of every image-level strategy, through the same code path the
   build uses (the renderer module's render_specs: draw on the CPU, render, uint8 samples; on the CPU that is
   the strategy's uint8 pixel path where it has one, else the batched float render and its
   conversion), next to anomalib's PerlinAnomalyGenerator on the same images with the same DTD folder
   and the same thread count.
2. Trainer input: samples/s reading a built shard through synthgen's torch Dataset vs the online
   path the anchors use (decode the PNG, resize, synthesize with anomalib's generator), same images.
3. Peak RSS of `synthgen build` with 100 vs 1000 samples (a separate process each).

Run it in an environment that has both synthgen and anomalib (``make bench`` creates one):

    python benchmarks/bench_generator.py --images ../shared/data/mvtec_ad/bottle/train/good \
        --dtd ../shared/data/dtd --threads 1

Numbers are medians of ``--repeats`` timed passes after one warm-up pass. The synthesis passes are
interleaved (every strategy, then the peer, in each round), so on a shared, busy machine both sides
see the same load; report ratios, which survive the load, rather than absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PEER = "anomalib PerlinAnomalyGenerator"
STRATEGIES = ("draem", "transparent", "opaque", "ndaa", "rotation", "cutpaste", "cutpaste-scar")


def load_images(folder: Path) -> list[Path]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        sys.exit(f"{folder}: no images")
    return paths


def interleaved(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds per name: one warm-up call of each, then ``repeats`` rounds calling each once."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in times.items()}


# -- 1. synthesis throughput ------------------------------------------------------------------------


def synthgen_synthesis(paths: list[Path], dtd: Path, n: int, batch: int) -> dict:
    """One pass of ``n`` samples per strategy, as callables by strategy name."""
    from synthgen.generator.imageio import read_rgb, resize_rgb
    from synthgen.generator.render import keep_batch_buffers, render_specs
    from synthgen.generator.plan import SampleSpec
    from synthgen.generator.seeding import sample_seed
    from synthgen.generator.strategies import StrategyContext
    from synthgen.generator.strategies.texture import TextureBank

    # the allocator setting a build's renderer runs under (process-wide: the peer, in this process, gets it too)
    keep_batch_buffers()

    size = (256, 256)
    pixels = [resize_rgb(read_rgb(p), size) for p in paths]
    stack = torch.stack([torch.from_numpy(p).permute(2, 0, 1).float() / 255 for p in pixels])
    device = torch.device("cpu")
    bank = TextureBank("dtd", size, dtd_root=str(dtd))
    ctx = StrategyContext(image_size=size, device=device, dataset="bench", category="bottle", sources=list(paths),
                          normal_image=lambda i: stack[i], source_pixels=lambda i: pixels[i].copy(),
                          texture=bank.get, texture_keys=bank.keys)
    runs = {}
    for name in STRATEGIES:
        specs = [SampleSpec(i, i % len(paths), i // len(paths), name, sample_seed(0, "bottle", str(i % len(paths)), i, name))
                 for i in range(n)]

        def run(specs=specs) -> None:
            for start in range(0, n, batch):
                render_specs(specs[start:start + batch], ctx, max_attempts=8)

        runs[name] = run
    return runs


def anomalib_synthesis(paths: list[Path], dtd: Path, n: int, batch: int):
    """One pass of ``n`` samples through anomalib's generator, as a callable."""
    from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator

    from synthgen.generator.imageio import read_rgb, resize_rgb

    stack = torch.stack([torch.from_numpy(resize_rgb(read_rgb(p), (256, 256))).permute(2, 0, 1).float() / 255 for p in paths])
    generator = PerlinAnomalyGenerator(anomaly_source_path=dtd, probability=0.5)
    torch.manual_seed(0)

    def run() -> None:
        for start in range(0, n, batch):
            idx = [i % len(paths) for i in range(start, min(n, start + batch))]
            images, masks = generator(stack[idx])
            # the same final step synthgen does: to uint8 for storage
            (images.clamp(0, 1) * 255).round().to(torch.uint8)
            masks.to(torch.uint8)

    return run


# -- 2. trainer input -------------------------------------------------------------------------------


def build_shards(dataset_args: list[str], out: Path, n: int, dtd: Path) -> None:
    cmd = [sys.executable, "-m", "synthgen.generator.cli", "build", *dataset_args, "--strategy", "draem", "--textures", str(dtd),
           "--num-samples", str(n), "--device", "cpu", "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True)


def shard_reading(build: Path):
    """One pass over the build in random order, as (callable, samples)."""
    from synthgen.generator.shards.reader import ShardDataset

    ds = ShardDataset(build, fields=("image", "mask"))
    order = np.random.default_rng(0).permutation(len(ds))

    def run() -> None:
        for i in order:
            ds[int(i)]

    return run, len(ds)


def online_path(paths: list[Path], dtd: Path, n: int):
    """What DRAEM/anomalib do per training sample: decode the PNG, resize, synthesize (a callable)."""
    from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator
    from torchvision.transforms.v2 import functional as F

    generator = PerlinAnomalyGenerator(anomaly_source_path=dtd, probability=0.5)
    torch.manual_seed(0)

    def run() -> None:
        for i in range(n):
            image = Image.open(paths[i % len(paths)]).convert("RGB")
            tensor = F.to_dtype(F.pil_to_tensor(image), torch.float32, scale=True)
            tensor = F.resize(tensor, [256, 256], antialias=True)
            generator(tensor)

    return run


# -- 3. memory --------------------------------------------------------------------------------------


def peak_rss_mb(dataset_args: list[str], n: int, dtd: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "synthgen.generator.cli", "build", *dataset_args, "--strategy", "draem", "--textures", str(dtd),
               "--num-samples", str(n), "--device", "cpu", "--out", str(Path(tmp) / "b"), "--quiet"]
        probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True)
        return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=SHARED / "mvtec_ad" / "bottle" / "train" / "good")
    ap.add_argument("--dataset-args", default=f"--dataset mvtec_ad --root {SHARED / 'mvtec_ad'} --category bottle",
                    help="how `synthgen build` reads the same images")
    ap.add_argument("--dtd", type=Path, default=SHARED / "dtd")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both sides")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--no-memory", action="store_true", help="skip section 3 (two builds of 100 and 1000 samples)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)  # synthgen's augmenters and warps run in OpenCV
    paths = load_images(args.images)
    dataset_args = args.dataset_args.split()
    report: dict = {"threads": args.threads, "samples": args.samples, "cpu_count": os.cpu_count(),
                    "torch": torch.__version__}

    print(f"# synthgen generator benchmark ({args.samples} samples, 256x256, {args.threads} thread(s), "
          f"{len(paths)} source images from {args.images})\n")
    runs = synthgen_synthesis(paths, args.dtd, args.samples, args.batch)
    runs[PEER] = anomalib_synthesis(paths, args.dtd, args.samples, args.batch)
    rates = {name: args.samples / seconds for name, seconds in interleaved(runs, args.repeats).items()}
    theirs = rates.pop(PEER)
    ours = rates
    report["synthesis"] = {"synthgen": ours, "anomalib_perlin": theirs}
    print("## 1. Synthesis throughput (samples/s)\n")
    print("| strategy | synthgen | anomalib PerlinAnomalyGenerator | ratio |")
    print("|---|---:|---:|---:|")
    for name, value in ours.items():
        print(f"| {name} | {value:.1f} | {theirs:.1f} | {value / theirs:.2f}x |")

    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "shards"
        build_shards(dataset_args, build, args.samples, args.dtd)
        read_run, read_n = shard_reading(build)
        online_n = min(args.samples, 64)
        seconds = interleaved({"read": read_run, "online": online_path(paths, args.dtd, online_n)}, args.repeats)
        read, online = read_n / seconds["read"], online_n / seconds["online"]
    report["trainer_input"] = {"shard_dataset": read, "online_decode_resize_synthesize": online}
    print("\n## 2. Trainer input (samples/s)\n")
    print("| path | samples/s |\n|---|---:|")
    print(f"| ShardDataset (random order) | {read:.0f} |")
    print(f"| online: PNG decode + resize + anomalib synthesis | {online:.1f} |")
    print(f"| ratio | {read / online:.0f}x |")

    if not args.no_memory:
        small, large = peak_rss_mb(dataset_args, 100, args.dtd), peak_rss_mb(dataset_args, 1000, args.dtd)
        report["peak_rss_mb"] = {"100": small, "1000": large}
        print("\n## 3. Peak RSS of `synthgen build` (draem, 256x256)\n")
        print("| samples | peak RSS (MB) |\n|---:|---:|")
        print(f"| 100 | {small:.0f} |\n| 1000 | {large:.0f} |")
        print(f"| change | {100 * (large - small) / small:+.1f}% |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
