"""Mask fidelity of a real LogicAL build: IoU of each sample's SSIM mask with the region it edited.

A semantic strategy records the label of the candidate region it edited (``params["region"]``; the
edit covers that region with its nested parts, ``semantic_region``), an arbitrary one its shapes; the
region maps are the build's own precomputed maps (read back from the cache with the build's map
settings), so the edited region of every sample is known exactly, on real images too. The region is
an upper bound of what can change (its parts without edges render the same before and after), so
IoU < 1 even for a perfect generator. For builds of the inpaint and real renderers it also reports the
largest absolute pixel difference between sample and normal outside the edit region dilated by the
renderer's reach (the inpaint hole's dilation; the real renderer's seam band + 1 px): the renderers
promise 0 there. Sharpness: the high-frequency energy (RMS of the grey image's 3x3 Laplacian) of the
sample inside the edit region, as a share of the normal photo's in the same pixels
(:func:`high_frequency_ratio`; 1 = as much fine detail as the photo, a blurred fill stays below; a
removal legitimately lowers it where it removes edges). Identity sharpness: the same ratio on the
identity samples (re-rendered from their own edges, so the photo is the right answer), over the edit
region dilated by the inpaint renderer's HOLE_DILATION (the same pixels for every renderer).

    python benchmarks/logical_mask_iou.py BUILD [--sheet iou.png [--only train/good/011,train/good/016]]

Prints one JSON line per strategy (samples, mean and median IoU, mean precision = share of the mask
inside the region and recall = share of the region in the mask, max outside difference, sharpness) and, with
--sheet, writes the samples as rows of: normal | anomaly | SSIM mask | edited region.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

from synthgen.generator.config import BuildConfig
from synthgen.generator.models.inpaint import HOLE_DILATION, dilate
from synthgen.generator.models.real_pixels import SEAM_BAND
from synthgen.generator.precompute import compute_maps, settings_from_config
from synthgen.generator.shards.reader import ShardDataset, read_manifest
from synthgen.generator.strategies.logical import part_swap_region, rasterize_shapes, semantic_region
from synthgen.generator.viz import contact_sheet, save_sheet


def to_uint8(image) -> np.ndarray:
    """A reader image tensor (3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def high_frequency_ratio(image: np.ndarray, normal: np.ndarray, where: np.ndarray) -> float:
    """RMS of the 3x3 Laplacian of ``image``'s grey levels over ``where`` (bool (H, W)), as a share
    of ``normal``'s over the same pixels (both (H, W, 3) uint8); nan where the normal has none."""
    def energy(rgb: np.ndarray) -> float:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float(np.sqrt(np.mean(cv2.Laplacian(grey, cv2.CV_32F, ksize=1)[where] ** 2)))

    reference = energy(normal) if where.any() else 0.0
    return energy(image) / reference if reference > 0 else float("nan")


def edited_region(sample: dict, regions: dict[str, np.ndarray]) -> np.ndarray:
    """The bool (H, W) region a LogicAL sample edited (or re-rendered, for identity samples)."""
    p = sample["params"]
    if p.get("part_swap"):
        return part_swap_region(regions[sample["source_id"]], regions[p["candidate_source"]], p)
    if p["region_mode"] == "semantic":
        return semantic_region(regions[sample["source_id"]], int(p["region"]))
    return rasterize_shapes(p["region"], sample["image"].shape[1:])


def logical_samples(build: Path, *, identity: bool = False) -> tuple[list[dict], dict[str, np.ndarray], BuildConfig]:
    """(the build's accepted LogicAL edits, or its identity samples, with image/normal/mask and params;
    region maps by source id; the build config)."""
    manifest = read_manifest(build)
    config = BuildConfig.from_dict(manifest["config"])
    root = Path(manifest["dataset"]["root"])
    files = {s["id"]: root / s["file"] for s in manifest["dataset"]["sources"]}
    data = ShardDataset(build, fields=("image", "normal", "mask"), with_params=True)
    samples = [data[i] for i in range(len(data))]
    if identity:
        samples = [s for s in samples if s["params"].get("edit") == "identity"]
    else:
        samples = [s for s in samples if s["label"] == 1 and "region_mode" in s["params"]]
    if not samples:
        raise SystemExit(f"{build}: no {'identity' if identity else 'anomalous'} samples of a LogicAL strategy")
    ids = sorted({s["source_id"] for s in samples} | {s["params"]["candidate_source"] for s in samples
                                                      if s["params"].get("part_swap")})
    maps = compute_maps([files[i] for i in ids], image_size=tuple(config.image_size), settings=settings_from_config(config))
    return samples, {i: m["regions"] for i, m in zip(ids, maps)}, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("--sheet", type=Path, help="PNG: normal | anomaly | SSIM mask | edited region per sample.")
    parser.add_argument("--only", help="Comma-separated source ids to put on the sheet (default: every sample).")
    args = parser.parse_args()

    samples, regions, config = logical_samples(args.build)
    scores: dict[str, list[float]] = defaultdict(list)
    precision: dict[str, list[float]] = defaultdict(list)  # share of the mask inside the region
    recall: dict[str, list[float]] = defaultdict(list)  # share of the region in the mask
    outside: dict[str, list[int]] = defaultdict(list)
    sharpness: dict[str, list[float]] = defaultdict(list)
    rows, captions = [], []
    for s in samples:
        region = edited_region(s, regions)
        mask = s["mask"][0].numpy() > 0
        scores[s["strategy"]].append(iou(mask, region))
        precision[s["strategy"]].append(float((mask & region).sum() / max(mask.sum(), 1)))
        recall[s["strategy"]].append(float((mask & region).sum() / max(region.sum(), 1)))
        sharpness[s["strategy"]].append(high_frequency_ratio(to_uint8(s["image"]), to_uint8(s["normal"]), region))
        if config.renderer in ("inpaint", "real"):
            reach = HOLE_DILATION if config.renderer == "inpaint" else SEAM_BAND + 1
            hole = dilate(torch.from_numpy(region)[None], reach)[0].numpy() > 0
            difference = np.abs(to_uint8(s["image"]).astype(int) - to_uint8(s["normal"]))
            outside[s["strategy"]].append(int(difference[~hole].max()) if (~hole).any() else 0)
        if args.sheet and (not args.only or s["source_id"] in args.only.split(",")):
            rows.append([to_uint8(s["normal"]), to_uint8(s["image"]), (mask * 255).astype(np.uint8), (region * 255).astype(np.uint8)])
            captions.append(f"{s['strategy']} {s['source_id']} IoU {scores[s['strategy']][-1]:.2f}")
    identity_sharpness: dict[str, list[float]] = defaultdict(list)
    try:
        twins, twin_regions, _ = logical_samples(args.build, identity=True)
    except SystemExit:  # a build without identity samples
        twins, twin_regions = [], {}
    for s in twins:
        hole = dilate(torch.from_numpy(edited_region(s, twin_regions))[None], HOLE_DILATION)[0].numpy() > 0
        identity_sharpness[s["strategy"]].append(high_frequency_ratio(to_uint8(s["image"]), to_uint8(s["normal"]), hole))
    for strategy, values in sorted(scores.items()):
        print(json.dumps({"build": str(args.build), "strategy": strategy, "samples": len(values),
                          "mean_iou": round(float(np.mean(values)), 3), "median_iou": round(float(np.median(values)), 3),
                          "precision": round(float(np.mean(precision[strategy])), 3),
                          "recall": round(float(np.mean(recall[strategy])), 3),
                          "max_abs_difference_outside_hole": max(outside[strategy]) if outside[strategy] else None,
                          "sharpness": round(float(np.nanmean(sharpness[strategy])), 3),
                          "identity_samples": len(identity_sharpness[strategy]),
                          "identity_sharpness": round(float(np.nanmean(identity_sharpness[strategy])), 3)
                          if identity_sharpness[strategy] else None}))
    if args.sheet:
        save_sheet(args.sheet, contact_sheet(rows, captions, ["normal", "anomaly", "SSIM mask", "edited region"], tile=192))
        print(f"sheet: {args.sheet}")


if __name__ == "__main__":
    main()
