"""``synthgen-eval``: score a trained run on a real test set; write report.json, report.md and sheet.png.

What is measured (all metrics from trainers/metrics.py):
- image AUROC and AP of the model's image scores (for the reconstruction method, DRAEM's max of
  the mean-filtered map, trainers/reconstruction/model.py) over all selected test images;
- pixel AUROC, pixel AP and AU-PRO (MVTec AD, FPR limit 0.3) over all pixels, the ground truth being
  the union of an image's defect regions; left out (null, with a note) when an anomalous image has no
  mask, as in the shared MVTec AD bottle copy, and when every anomalous image's mask is empty (a
  warning too: masks with an unexpected value, or a wrong mask folder);
- per defect type (``by_defect_type``: each test folder of anomalies, e.g. MVTec AD's ``crack``,
  LOCO's ``logical_anomalies`` / ``structural_anomalies``, against all normal test images): image
  AUROC of the model's score and of the map's maximum, pixel AUROC and AU-PRO;
- for MVTec LOCO-style data (a defects_config.json table), ``loco``: the official per-kind report
  (logical and structural anomalies each against all normal test images, and their mean) of image
  AUROC, pixel AUROC and AU-sPRO at the official script's FPR limits (0.05 is the one papers quote).
  Its image AUROC is the official definition (image score = maximum of the anomaly map); the AUROC of
  the model's own image score is reported beside it, labelled. Tied scores count half (sklearn).

Evaluation resolution. The model sees test images resized to its own input size (e.g. 256x256).
Its anomaly maps are upsampled bilinearly (align_corners=False) to the *evaluation size* of each
image: the image's original size scaled so that its longer side is ``eval_side`` pixels (default
512, never enlarged; ``None`` = the original resolution), aspect ratio kept. Ground-truth masks are
resized to that grid by nearest neighbour (trainers.metrics.load_loco_regions for LOCO), and LOCO's
absolute saturation thresholds, given in pixels of the original images, are multiplied by
(evaluation pixels / original pixels) so that a saturation keeps covering the same share of the
object; relative thresholds need no scaling. Why not the original resolution by default: LOCO
images are 800x1600, and the exact metrics cost about 100 bytes per pixel (1.3 GB per metric for
the juice_bottle test set at full size, 0.1 GB at 512).

Normal images: the test split's ``good`` images, plus, with ``extra_normals=("validation",)``, the
validation split's normal images (real normal data never used for training; the shared juice_bottle
copy has only 3 test/good images). They all count as ``good`` in every metric.

Sheet: the ``sheet_count`` worst and best handled images, one row each: the image, its ground truth
overlaid, and its anomaly map coloured with the jet colormap on one scale for the whole test set
(the minimum and maximum over all maps, so tiles can be compared). An image's quality is the share
of images of the other class it is ordered correctly against by image score (ties count half);
ties in that are broken by the score itself.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from synthgen.generator.atomic import atomic_path, write_json_atomic
from synthgen.generator.datasets import DatasetIndex, SourceImage
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import read_mask, read_rgb, resize_mask, resize_rgb
from synthgen.generator.viz import contact_sheet, overlay_mask, save_sheet

from . import metrics as M
from .base import AnomalyModel, load_model, read_run_info
from .data import SynthgenDataModule, TestSetSpec
from .lightning_utils import resolve_device

#: Longer side, in pixels, of the grid the metrics are computed on (see the module docstring).
DEFAULT_EVAL_SIDE = 512
#: FPR limits of the official MVTec LOCO script (evaluate_experiment.py); papers quote 0.05.
SPRO_LIMITS = (0.01, 0.05, 0.1, 0.3, 1.0)
QUOTED_SPRO_LIMIT = M.AU_SPRO_FPR_LIMIT
DEFAULT_SHEET_COUNT = 4
SHEET_TILE = 192

REPORT_JSON, REPORT_MD, SHEET_PNG = "report.json", "report.md", "sheet.png"


@dataclass
class Predictions:
    """Anomaly maps at evaluation size (float32), image scores, and the model's compute time."""

    maps: list[np.ndarray]
    scores: np.ndarray
    model_seconds: float


@dataclass
class GroundTruth:
    """Per image: the union of its defect regions at evaluation size (None: an anomaly without masks),
    and for LOCO-style data the regions with their saturations (else None)."""

    masks: list[np.ndarray | None]
    regions: list[M.SaturatedRegions] | None


def evaluation_size(original_hw: tuple[int, int], eval_side: int | None) -> tuple[int, int]:
    """The original (H, W) scaled so that the longer side is ``eval_side`` (never enlarged)."""
    h, w = int(original_hw[0]), int(original_hw[1])
    if eval_side is None:
        return h, w
    scale = min(1.0, eval_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


# ------------------------------------------------------------------------------------- prediction


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def predict(model: AnomalyModel, data: SynthgenDataModule, device: torch.device, eval_side: int | None) -> Predictions:
    """Run the model batched over the test set; upsample every map to its evaluation size."""
    n = len(data.test_images)
    maps: list[np.ndarray | None] = [None] * n
    scores = np.zeros(n)
    model_seconds = 0.0
    for batch in data.test_dataloader():
        images = batch["image"].to(device)
        _synchronize(device)
        started = time.perf_counter()
        batch_maps, batch_scores = model.predict(images)
        _synchronize(device)
        model_seconds += time.perf_counter() - started
        for j, position in enumerate(batch["position"].tolist()):
            size = evaluation_size(tuple(batch["original_size"][j].tolist()), eval_side)
            up = F.interpolate(batch_maps[j][None, None].float(), size=size, mode="bilinear", align_corners=False)
            maps[position] = up[0, 0].cpu().numpy()
            scores[position] = float(batch_scores[j])
    return Predictions(maps, scores, model_seconds)


# ----------------------------------------------------------------------------------- ground truth


def _union_mask(item: SourceImage, size_hw: tuple[int, int]) -> np.ndarray | None:
    """Binary ground truth of a non-LOCO image at ``size_hw``: the union of its mask files."""
    if item.is_normal:
        return np.zeros(size_hw, dtype=bool)
    if not item.masks:
        return None
    union = None
    for ref in item.masks:
        raw = read_mask(ref.path)
        on = raw > 0 if ref.pixel_value is None else raw == ref.pixel_value
        union = on if union is None else union | on
    return resize_mask(union.astype(np.uint8), size_hw).astype(bool)


def load_ground_truth(items: list[SourceImage], index: DatasetIndex, sizes: list[tuple[int, int]]) -> GroundTruth:
    """Ground truth of every test image at its evaluation size (LOCO regions when the dataset has a defect table)."""
    if not index.defects:
        return GroundTruth([_union_mask(item, size) for item, size in zip(items, sizes)], None)
    regions = [M.load_loco_regions(item, index, size) for item, size in zip(items, sizes)]
    masks = []
    for truth, size in zip(regions, sizes):
        union = np.zeros(size, dtype=bool)
        for region in truth.masks:
            union |= region
        masks.append(union)
    return GroundTruth(masks, regions)


# ---------------------------------------------------------------------------------------- metrics


def masks_all_empty(truth: GroundTruth, labels: np.ndarray) -> bool:
    """True when anomalous images have masks and every one of them is empty (no pixel metric is
    possible; the usual cause is a mask value the reader did not expect, which must not pass silently)."""
    anomalous = [mask for mask, label in zip(truth.masks, labels) if label == 1 and mask is not None]
    return bool(anomalous) and not any(mask.any() for mask in anomalous)


def compute_metrics(pred: Predictions, truth: GroundTruth, labels: np.ndarray) -> tuple[dict[str, Any], list[str]]:
    """Image and pixel metrics over all test images; notes say why a metric is missing."""
    notes = []
    metrics: dict[str, Any] = {
        "image_auroc": M.image_auroc(pred.scores, labels),
        # the official MVTec AD / LOCO scripts' image score: the maximum of the anomaly map
        "image_auroc_max_of_map": M.image_auroc(np.array([m.max() for m in pred.maps]), labels),
        "image_ap": M.image_average_precision(pred.scores, labels),
    }
    if any(mask is None for mask in truth.masks):
        notes.append("pixel metrics left out: some anomalous test images have no ground-truth mask")
        metrics.update(pixel_auroc=None, pixel_ap=None, au_pro=None)
    elif masks_all_empty(truth, labels):
        notes.append("pixel metrics left out: every ground-truth mask of the anomalous test images is empty")
        metrics.update(pixel_auroc=None, pixel_ap=None, au_pro=None)
    else:
        metrics.update(
            pixel_auroc=M.pixel_auroc(pred.maps, truth.masks),
            pixel_ap=M.pixel_average_precision(pred.maps, truth.masks),
            au_pro=M.au_pro(pred.maps, truth.masks),
        )
    if metrics["image_auroc"] is None:
        notes.append("image AUROC undefined: the test set holds only one class")
    return metrics, notes


def defect_type_metrics(pred: Predictions, truth: GroundTruth, items: list[SourceImage]) -> dict[str, dict[str, Any]]:
    """Per defect folder: its anomalies against all normal test images (image AUROC of the model's
    score and of the map's maximum, pixel AUROC, AU-PRO; pixel metrics None without masks)."""
    normals = [i for i, item in enumerate(items) if item.is_normal]
    out: dict[str, dict[str, Any]] = {}
    for defect in sorted({item.defect_type for item in items if not item.is_normal}):
        anomalies = [i for i, item in enumerate(items) if not item.is_normal and item.defect_type == defect]
        chosen = normals + anomalies
        labels = np.array([items[i].label for i in chosen])
        maps = [pred.maps[i] for i in chosen]
        masks = [truth.masks[i] for i in chosen]
        pixels = all(mask is not None for mask in masks) and any(masks[j].any() for j in range(len(normals), len(chosen)))
        out[defect] = {
            "images": len(anomalies),
            "image_auroc": M.image_auroc(pred.scores[chosen], labels),
            "image_auroc_max_of_map": M.image_auroc(np.array([m.max() for m in maps]), labels),
            "pixel_auroc": M.pixel_auroc(maps, masks) if pixels else None,
            "au_pro": M.au_pro(maps, masks) if pixels else None,
        }
    return out


def loco_metrics(pred: Predictions, truth: GroundTruth, defect_types: list[str]) -> dict[str, Any] | None:
    """The official per-kind MVTec LOCO report, FPR limits as strings ("0.05"); None for non-LOCO data.

    ``image_auroc`` is the official definition (image score = maximum of the anomaly map);
    ``image_auroc_model_score`` is the same AUROC from the model's own image score (they differ for
    models whose score is not the map's maximum, e.g. the reconstruction method's mean-filtered max).
    Both count tied scores half, as sklearn does (the official script does not; see trainers/metrics.py).
    """
    if truth.regions is None or not set(defect_types) <= {M.LOCO_GOOD, *M.LOCO_ANOMALY_KINDS}:
        return None
    report = M.loco_report(pred.maps, defect_types, truth.regions, fpr_limits=SPRO_LIMITS)
    types = np.array(defect_types)
    for kind in M.LOCO_ANOMALY_KINDS:
        chosen = np.isin(types, (M.LOCO_GOOD, kind))
        report[kind]["image_auroc_model_score"] = M.image_auroc(pred.scores[chosen], types[chosen] == kind) if chosen.any() else None
    logical, structural = (report[k]["image_auroc_model_score"] for k in M.LOCO_ANOMALY_KINDS)
    report["mean"]["image_auroc_model_score"] = None if logical is None or structural is None else 0.5 * (logical + structural)
    for entry in report.values():
        entry["au_spro"] = {f"{limit:g}": value for limit, value in entry["au_spro"].items()}
    return report


# ------------------------------------------------------------------------------------------ cases


def rank_cases(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Image positions from the worst handled to the best (see the module docstring)."""
    quality = np.full(len(scores), 0.5)
    signed = np.where(labels == 1, scores, -scores)  # higher = better for either class
    for i, (score, label) in enumerate(zip(scores, labels)):
        others = scores[labels != label]
        if others.size:
            beaten = others < score if label == 1 else others > score
            quality[i] = beaten.mean() + 0.5 * (others == score).mean()
    return np.lexsort((signed, quality))


def _colour_map(score_map: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (score_map - low) / (high - low) if high > low else np.zeros_like(score_map)
    u8 = np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)
    return cv2.applyColorMap(u8, cv2.COLORMAP_JET)[..., ::-1]  # OpenCV gives BGR


def map_range(pred: Predictions) -> tuple[float, float]:
    """The minimum and maximum over all anomaly maps: the sheet's one colour scale."""
    return float(min(m.min() for m in pred.maps)), float(max(m.max() for m in pred.maps))


def write_sheet(path: Path, items: list[SourceImage], index: DatasetIndex, pred: Predictions, truth: GroundTruth,
                worst: list[int], best: list[int]) -> Path:
    """image | ground truth | anomaly map, one row per chosen case."""
    low, high = map_range(pred)
    rows, captions = [], []
    for name, chosen in (("worst", worst), ("best", best)):
        for rank, i in enumerate(chosen, 1):
            image = resize_rgb(read_rgb(items[i].path, allow_gray=index.gray), pred.maps[i].shape)
            mask = truth.masks[i]
            shown_truth = image if mask is None else overlay_mask(image, mask)
            rows.append([image, shown_truth, _colour_map(pred.maps[i], low, high)])
            captions.append(f"{name} {rank}: {items[i].id}  score {pred.scores[i]:.4g}")
    # the colour scale goes into report.md: in the column label it would not fit a portrait tile
    sheet = contact_sheet(rows, row_labels=captions, col_labels=["image", "ground truth", "anomaly map"], tile=SHEET_TILE)
    return save_sheet(path, sheet)


# ----------------------------------------------------------------------------------------- report


def _case(item: SourceImage, label: int, score: float) -> dict[str, Any]:
    return {"id": item.id, "label": int(label), "score": float(score)}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def render_markdown(report: dict[str, Any]) -> str:
    """A readable report.md of report.json."""
    test, ev, m = report["test_set"], report["evaluation"], report["metrics"]
    counts = ", ".join(f"{k} {v}" for k, v in test["counts"].items())
    speed = report["timing"]["images_per_second"]
    lines = [
        f"# Evaluation of {report['run']}",
        "",
        f"- method: {report['method']}",
        f"- test set: {test['dataset']} / {test['category']} ({counts}); normals from {', '.join(test['normals_from'])}",
        f"- model input {ev['model_image_size'][0]}x{ev['model_image_size'][1]}; metrics on {ev['resolution']}",
        f"- inference: {'n/a' if speed is None else f'{speed:.2f}'} images/s on {report['timing']['device']}",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    names = (("image AUROC", "image_auroc"), ("image AUROC (max of map)", "image_auroc_max_of_map"), ("image AP", "image_ap"),
             ("pixel AUROC", "pixel_auroc"), ("pixel AP", "pixel_ap"), ("AU-PRO (FPR 0.3)", "au_pro"))
    lines += [f"| {label} | {_fmt(m[key])} |" for label, key in names]
    by_defect = report.get("by_defect_type") or {}
    if by_defect:
        lines += ["", "Per defect type (each against all normal images):", "",
                  "| defect type | images | image AUROC | image AUROC (max of map) | pixel AUROC | AU-PRO |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {e['images']} | {_fmt(e['image_auroc'])} | {_fmt(e['image_auroc_max_of_map'])} | "
                  f"{_fmt(e['pixel_auroc'])} | {_fmt(e['au_pro'])} |" for name, e in by_defect.items()]
    loco = report.get("loco")
    if loco:
        kinds = (*M.LOCO_ANOMALY_KINDS, "mean")
        lines += ["", "MVTec LOCO (each kind against all normal images):", "",
                  "| metric | " + " | ".join(k.replace("_anomalies", "") for k in kinds) + " |",
                  "|---|" + "---|" * len(kinds)]
        lines.append("| image AUROC (official: max of map) | " + " | ".join(_fmt(loco[k]["image_auroc"]) for k in kinds) + " |")
        lines.append("| image AUROC (model's image score) | " + " | ".join(_fmt(loco[k]["image_auroc_model_score"]) for k in kinds) + " |")
        lines.append("| pixel AUROC | " + " | ".join(_fmt(loco[k]["pixel_auroc"]) for k in kinds) + " |")
        for limit in loco["mean"]["au_spro"]:
            quoted = " (quoted)" if float(limit) == QUOTED_SPRO_LIMIT else ""
            lines.append(f"| AU-sPRO FPR {limit}{quoted} | " + " | ".join(_fmt(loco[k]["au_spro"][limit]) for k in kinds) + " |")
        lines += ["", "Tied image scores count half (sklearn's AUROC); the official script steps through tied images one by one."]
    if report["notes"]:
        lines += ["", "Notes:", *[f"- {note}" for note in report["notes"]]]
    if report["cases"]["worst"]:
        low, high = report["cases"]["map_range"]
        lines += ["", f"Worst and best handled images: {SHEET_PNG} (anomaly maps coloured on one scale, {low:.3g} blue to {high:.3g} red)"]
    return "\n".join(lines) + "\n"


def evaluate(
    run_dir: str | Path,
    *,
    dataset: str,
    root: str | Path | None,
    category: str,
    kinds: tuple[str, ...] = (),
    extra_normals: tuple[str, ...] = (),
    out: str | Path | None = None,
    eval_side: int | None = DEFAULT_EVAL_SIDE,
    batch_size: int = 8,
    device: str = "auto",
    workers: int = 0,
    sheet_count: int = DEFAULT_SHEET_COUNT,
) -> dict[str, Any]:
    """Evaluate the model of ``run_dir``; writes report.json, report.md, sheet.png into ``out`` and returns the report.

    ``out`` default: RUN/eval/DATASET-CATEGORY[-KINDS].
    """
    if eval_side is not None and eval_side < 1:
        raise SynthgenError(f"--eval-size: must be a positive number of pixels or 'full', got {eval_side}")
    if sheet_count < 0:
        raise SynthgenError(f"--sheet-count: must be 0 or more, got {sheet_count}")
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    torch_device = torch.device(resolve_device(device))
    model = load_model(run_dir, torch_device)
    spec = TestSetSpec(dataset, Path(root) if root is not None else None, category, tuple(kinds), tuple(extra_normals))
    data = SynthgenDataModule(test=spec, image_size=model.image_size, batch_size=batch_size, workers=workers)
    data.setup("test")
    items, index = data.test_images.items, data.test_index

    started = time.perf_counter()
    pred = predict(model, data, torch_device, eval_side)
    truth = load_ground_truth(items, index, [m.shape for m in pred.maps])
    labels = np.array([item.label for item in items])
    defect_types = [item.defect_type for item in items]
    metrics, notes = compute_metrics(pred, truth, labels)
    if masks_all_empty(truth, labels):
        warnings.warn(f"{index.root / category}: every ground-truth mask of the anomalous test images is empty; "
                      "pixel metrics left out (check the masks' values and folder)")
    by_defect = defect_type_metrics(pred, truth, items)
    loco = loco_metrics(pred, truth, defect_types)

    order = rank_cases(pred.scores, labels)
    worst = order[:sheet_count].tolist()
    best = [i for i in order[::-1].tolist() if i not in worst][:sheet_count]
    out = Path(out) if out is not None else run_dir / "eval" / "-".join((dataset, category, *kinds))
    out.mkdir(parents=True, exist_ok=True)

    report: dict[str, Any] = {
        "run": str(run_dir),
        "folder": str(out),
        "method": info["method"],
        "test_set": {
            "dataset": dataset,
            "root": str(index.root),
            "category": category,
            "kinds": sorted({t for t, label in zip(defect_types, labels) if label == 1}),
            "normals_from": ["test", *extra_normals],
            "counts": dict(sorted(Counter(f"{i.split}/{i.defect_type}" for i in items).items())),
        },
        "evaluation": {
            "model_image_size": list(model.image_size),
            "resolution": "original resolution" if eval_side is None else f"longer side {eval_side} px (aspect kept, never enlarged)",
            "eval_sizes": [list(size) for size in sorted({m.shape for m in pred.maps})],
            "map_upsampling": "bilinear, align_corners=False",
            "spro_saturation": "absolute thresholds scaled by evaluation pixels / original pixels",
        },
        "metrics": metrics,
        "by_defect_type": by_defect,
        "notes": notes,
        "cases": {
            "worst": [_case(items[i], labels[i], pred.scores[i]) for i in worst],
            "best": [_case(items[i], labels[i], pred.scores[i]) for i in best],
            "map_range": list(map_range(pred)),
        },
        "timing": {
            "device": str(torch_device),
            "images": len(items),
            "model_seconds": round(pred.model_seconds, 3),
            "images_per_second": len(items) / pred.model_seconds if pred.model_seconds > 0 else None,
            "batch_size": batch_size,
        },
    }
    if loco is not None:
        report["loco"] = loco
    if sheet_count:
        write_sheet(out / SHEET_PNG, items, index, pred, truth, worst, best)
    report["timing"]["total_seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(out / REPORT_JSON, report)
    with atomic_path(out / REPORT_MD) as tmp:
        tmp.write_text(render_markdown(report))
    return report
