"""Seconds per image of region proposal, and the cost of a cache hit.

    python benchmarks/bench_regions.py [--threads 2] [--repeats 3] [--image PATH] [--vit-b]

Rows: the weight-free classical proposer at 256x256; the real SamAutomaticMaskGenerator code path
with a tiny random-weight SAM (no checkpoint exists offline) at the encoder input sizes 256 and
1024 (SAM's default), with segment-anything's default parameters (32x32 prompts); optionally
(--vit-b) the full ViT-B architecture with random weights, which costs what real vit_b weights
would cost; the refinement alone; and a cache hit through ``cached_regions``. Random weights pass
few masks through the quality filters, so SAM rows time the network and filtering, not the
refinement of ~100 real masks (the refinement row covers that part).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from synthgen.generator.cache import MapCache
from synthgen.generator.imageio import read_rgb, resize_rgb
from synthgen.generator.regions import (
    RegionProposer,
    SamParams,
    SamSegmenter,
    build_random_sam,
    cached_regions,
    refine_masks,
)

SIZE = 256


def demo_image(size: int = SIZE) -> np.ndarray:
    """Three coloured discs on a table: the kind of scene regions are proposed for."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size
    image = np.empty((size, size, 3))
    image[:] = (40, 60, 50)
    image[int(0.08 * size): int(0.94 * size), int(0.06 * size): int(0.96 * size)] = (150, 140, 120)
    for (cy, cx, r), colour in zip([(0.27, 0.27, 0.12), (0.31, 0.70, 0.12), (0.70, 0.47, 0.14)],
                                   [(200, 40, 40), (40, 160, 40), (230, 200, 40)]):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = colour
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def seconds(fn, repeats: int, warm_up: bool = True) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run if asked."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def sam_segmenter_of(model: torch.nn.Module, name: str) -> SamSegmenter:
    return SamSegmenter(lambda: model, SamParams(), {"model": name, "model_type": None, "checkpoint_sha256": None})


def scene_masks(size: tuple[int, int]) -> list[np.ndarray]:
    """~100 SAM-like masks: objects, their parts, jittered duplicates, fragments, background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: size[0], : size[1]]
    masks = [np.ones(size, bool)]
    for _ in range(30):
        cy, cx = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        r = rng.uniform(3, 40)
        for scale in (1.0, 1.05, 0.5):  # whole, jittered duplicate, part (SAM's 3 multimask outputs)
            masks.append((yy - cy) ** 2 + (xx - cx) ** 2 <= (r * scale) ** 2)
    return masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the CI machine has 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", type=Path, help="a real image to use instead of the synthetic scene")
    parser.add_argument("--vit-b", action="store_true", help="also time the full ViT-B (slow on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    image = resize_rgb(read_rgb(args.image), (SIZE, SIZE)) if args.image else demo_image()
    rows = []

    classical = RegionProposer("classical")
    rows.append(("classical (felzenszwalb + refine)", "256x256", seconds(lambda: classical.propose(image), args.repeats),
                 f"{classical.propose(image).max()} regions"))

    sam_models = [("random tiny SAM, encoder input 256", build_random_sam(seed=0, img_size=256)),
                  ("random tiny SAM, encoder input 1024", build_random_sam(seed=0, img_size=1024))]
    if args.vit_b:
        from segment_anything import sam_model_registry

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            sam_models.append(("random-weight ViT-B (real architecture)", sam_model_registry["vit_b"]().eval()))
    for name, model in sam_models:
        segmenter = sam_segmenter_of(model, name)
        masks = segmenter.masks(image)  # the warm-up run
        proposer = RegionProposer("sam", segmenter=segmenter)
        repeats = 1 if "ViT-B" in name else args.repeats
        secs = seconds(lambda: proposer.propose(image), repeats, warm_up=False)
        rows.append((f"{name}, 32x32 prompts", "256x256", secs, f"{len(masks)} masks pass SAM's filters"))

    masks = scene_masks(image.shape[:2])
    rows.append(("refine only", "256x256", seconds(lambda: refine_masks(masks, image.shape[:2]), args.repeats * 5),
                 f"{len(masks)} overlapping masks"))

    with tempfile.TemporaryDirectory() as root:
        cache = MapCache("regions", root=root)
        cached_regions(classical, image, "0" * 64, cache)
        hit = seconds(lambda: cached_regions(classical, image, "0" * 64, cache), 200)
    rows.append(("cache hit (cached_regions)", "256x256", hit, f"{hit * 1000:.2f} ms"))

    print(f"torch threads: {args.threads}; median of {args.repeats} runs after one warm-up (ViT-B: 1 run)\n")
    print("| what | image | s/image | note |\n|---|---|---|---|")
    for what, size, secs, note in rows:
        print(f"| {what} | {size} | {secs:.4f} | {note} |")


if __name__ == "__main__":
    main()
