"""Throughput of the precompute stage (generator/precompute.py), as a build runs it.

    python benchmarks/bench_precompute.py [--device cpu|cuda] [--threads 2] [--min-seconds 3]
                                          [--images DIR] [--weights-dir DIR] [--skip-native] [--sam-1024]

Rows (markdown table):
- PiDiNet (table5_pidinet and -tiny) images/s through EdgeDetector (inference mode, channels_last, uint8
  out), pixel-difference form vs converted form, at 256x256 and at MVTec LOCO's native 1600x800 (H x W).
  Batch: 8 images at 256 on the CPU (256 on CUDA); 1 native image on the CPU (8 on CUDA).
- Region maps, seconds per image: the classical proposer (felzenszwalb on image + fused edges, then
  LogicAL's refinement) at 256x256, and the SAM path (segment-anything's SamAutomaticMaskGenerator with
  its default 32x32 prompt grid) with a tiny random-weight SAM (no checkpoint exists offline), encoder input
  256 (and 1024 with --sam-1024). Random weights time the code path, not a real ViT-B/L/H encoder.
- The stage end to end on the image folder (juice_bottle train/good when ../shared is present): cold
  (compute + cache write) and warm (every map a cache hit), and the cache-hit cost per image of reading
  the maps back (``MapStore(i)``, what ``ctx.maps(i)`` costs a strategy). Target: < 5 ms per image.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from synthgen.generator.imageio import read_rgb, resize_rgb
from synthgen.generator.models.edges import EdgeDetector
from synthgen.generator.precompute import MapMaker, MapSettings, load_images, precompute
from synthgen.generator.regions import RegionProposer, SamParams, SamSegmenter

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_IMAGES = SHARED / "data/mvtec_loco/juice_bottle/train/good"
SIZES = {"256x256": (256, 256), "1600x800 (native)": (1600, 800)}
BATCH = {"cpu": {"256x256": 8, "1600x800 (native)": 1}, "cuda": {"256x256": 256, "1600x800 (native)": 8}}


def timed(fn, min_seconds: float, warm_up: bool = True) -> tuple[float, int]:
    """(seconds per call, calls) over at least ``min_seconds`` and one call, after one warm-up call."""
    if warm_up:
        fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls, calls


def batch_of(folder: Path, count: int, size_hw: tuple[int, int]) -> np.ndarray:
    files = sorted(folder.glob("*.png"))[:count]
    if not files:
        raise SystemExit(f"{folder}: no PNG images (pass --images)")
    images = [resize_rgb(read_rgb(f), size_hw) for f in files]
    return np.stack([images[i % len(images)] for i in range(count)])


def pidinet_rows(args, rows: list) -> None:
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for model in ("pidinet", "pidinet-tiny"):
        detectors = {
            form: EdgeDetector(model, args.device, converted=form == "converted", weights_dir=args.weights_dir)
            for form in ("pixel-difference", "converted")
        }
        for size_name, size in SIZES.items():
            if args.skip_native and size_name != "256x256":
                continue
            batch = BATCH[device.type][size_name]
            images = batch_of(args.images, batch, size)
            for form, detector in detectors.items():
                def run():
                    detector(images)
                    sync()

                seconds, calls = timed(run, args.min_seconds)
                rows.append((f"PiDiNet {model}, {form}", size_name, f"batch {batch}", f"{batch / seconds:.2f} img/s",
                             f"{calls} timed passes"))


def region_rows(args, rows: list) -> None:
    images, _ = load_images(sorted(args.images.glob("*.png"))[:1], (256, 256))
    image = images[0]
    edges = EdgeDetector("pidinet", args.device, weights_dir=args.weights_dir)(images)[0, 4]
    classical = RegionProposer("classical")
    seconds, calls = timed(lambda: classical.propose(image, edges=edges), args.min_seconds)
    rows.append(("regions: classical (felzenszwalb + edges + refine)", "256x256", "1 image", f"{seconds:.3f} s/img",
                 f"{classical.propose(image, edges=edges).max()} regions, {calls} runs"))
    for encoder_size in (256, 1024) if args.sam_1024 else (256,):
        segmenter = SamSegmenter.random(SamParams(), seed=0, img_size=encoder_size)
        proposer = RegionProposer("sam", segmenter=segmenter)
        seconds, calls = timed(lambda: proposer.propose(image), args.min_seconds)
        rows.append((f"regions: SAM path, tiny random SAM (encoder {encoder_size}), 32x32 prompts", "256x256",
                     "1 image", f"{seconds:.3f} s/img", f"{len(segmenter.masks(image))} masks pass filters, {calls} runs"))


def stage_rows(args, rows: list) -> None:
    files = sorted(args.images.glob("*.png"))
    images, ids = load_images(files, (256, 256))
    settings = MapSettings(regions="classical", weights_dir=args.weights_dir, device=args.device)
    maker = MapMaker(settings)
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        store, _ = precompute(images, ids, maker, cache_root=root)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        store, report = precompute(images, ids, maker, cache_root=root)
        warm = time.perf_counter() - start
        assert report.edges_computed == report.regions_computed == 0
        hit, calls = timed(lambda: [store(i) for i in range(len(store))], args.min_seconds)
    n = len(files)
    rows.append(("stage cold: PiDiNet (converted) + classical regions + cache write", "256x256", f"{n} images",
                 f"{cold / n:.3f} s/img", f"{n / cold:.2f} img/s"))
    rows.append(("stage warm: every map a cache hit (key + check)", "256x256", f"{n} images",
                 f"{1000 * warm / n:.2f} ms/img", ""))
    rows.append(("cache hit: MapStore(i) = ctx.maps(i)", "256x256", f"{n} images",
                 f"{1000 * hit / n:.2f} ms/img", f"{calls} sweeps"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the CI machine has 2)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="timed seconds per row (at least one run)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--weights-dir", default=str(SHARED / "weights") if (SHARED / "weights").is_dir() else None)
    parser.add_argument("--skip-native", action="store_true", help="PiDiNet at 256x256 only")
    parser.add_argument("--sam-1024", action="store_true", help="also the SAM path at encoder input 1024 (slow on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows: list = []
    pidinet_rows(args, rows)
    region_rows(args, rows)
    stage_rows(args, rows)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} torch threads"
    print(f"torch {torch.__version__}, {where}; fp32\n")
    print("| what | size | batch | rate | note |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
