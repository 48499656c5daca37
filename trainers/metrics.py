"""Evaluation metrics shared by every trainer and ``synthgen-eval``.

Image level: AUROC and average precision (AP) of one score per image. Pixel level: AUROC and AP over all
pixels of all images, AU-PRO (MVTec AD) and AU-sPRO (MVTec LOCO). Inputs may be numpy arrays or torch
tensors; everything is computed in float64.

Every metric returns a Python float in [0, 1], or ``None`` where the metric is undefined for the data
(the cases are listed in each docstring); never NaN. Constant scores give AUROC 0.5.

How the curves are computed
---------------------------
All curves are exact: every distinct score is a threshold. Scores are sorted once (descending) and the
per-pixel contributions (true positives, false positives, region overlap) are summed cumulatively; the
curve keeps one point per distinct score, taken after all pixels tied at that score (ties enter
together, as in sklearn's ``_binary_clf_curve`` and MVTec AD's ``compute_pro``). No Python loop runs
over thresholds or pixels; the only Python loops are over images and ground-truth regions.

Facts from the official evaluation code (read for facts, not copied)
--------------------------------------------------------------------
MVTec AD evaluation (``pro_curve_util.compute_pro``, ``generic_util.trapezoid``):
- regions are the connected components of the binary ground truth with a 3x3 structuring element of
  ones (8-connectivity); PRO at a threshold is the mean over all regions of all images of
  |region & predicted| / |region|;
- FPR is over all anomaly-free pixels of all images (the good images and the defect-free pixels of
  anomalous images); a pixel is predicted anomalous when its score >= the threshold, every distinct
  score is a threshold, tied scores enter together, the curve is given the points (0, 0) and (1, 1);
- the area is the trapezoidal rule over FPR up to the integration limit; when the limit falls between
  two curve points, the PRO at the limit is linearly interpolated between them; the area is divided by
  the limit (0.3 by default).

MVTec LOCO AD evaluation, version 2.0 (``src/image.py``, ``src/metrics.py``, ``src/aggregation.py``,
``src/util.py``, ``evaluate_experiment.py``):
- every mask PNG of an image is one region ("channel"), its single non-zero pixel value is the defect
  type; regions of one image may share pixels: each region's true positives are counted on its own
  mask, and a pixel is a false positive only when it lies in none of the image's regions;
- saturation area (``GroundTruthChannel.get_saturation_area``): relative defects
  ``int(threshold * region_area)`` (truncated), absolute defects ``min(threshold, region_area)``;
- sPRO of a region = min(TP area / saturation area, 1); the curve value is the mean over all regions of
  all evaluated images (every region counts once, not averaged per image first);
- FPR is NOT computed on good images only: it is FP / (FP + TN) over the defect-free pixels of all
  evaluated images, i.e. the good test images plus the pixels outside every region of the anomalous
  images (``get_fp_areas_for_thresholds``, ``get_fp_rates``);
- logical and structural anomalies are evaluated separately, each together with all good test images
  (``get_auc_spros_per_subdir(add_good_images=True)``); the reported mean is 0.5 * (logical +
  structural); image scores are the maximum of each anomaly map and the image AUROC is computed per
  kind against the good images in the same way;
- the area is the same trapezoid with interpolation at the limit, divided by the limit; limits reported
  by the script: 0.01, 0.05, 0.1, 0.3, 1 (0.05 is the one papers quote, e.g. LogicAL section 4.1);
- binarisation is ``score > threshold`` and the thresholds are sampled adaptively (50 quantiles, then
  refined until neighbouring curve points are at most 0.001 apart, the script's default step). That curve is a subsampling of the
  exact curve computed here, whose points are the limit of that refinement.

Deliberate differences, for cases where the official scripts fail or give NaN:
- AUROC and AP follow sklearn's ``roc_auc_score`` / ``average_precision_score`` exactly, ties included.
  (MVTec LOCO's ``compute_classification_roc`` steps through tied images one by one instead of
  counting ties half, so the two differ where image scores tie; its value does not depend on the
  order of tied images, since the script lists good images before anomalous ones and sorts stably.
  MVTec AD's agrees with sklearn.)
- A region with no pixels (e.g. one that vanished when its mask was resized) is ignored: it cannot be
  detected at that resolution. The official script refuses empty mask files.
- A saturation area below one pixel (relative thresholds on tiny regions truncate to 0, where the
  official script divides by zero) is raised to one pixel: the region saturates when any of its pixels
  is found.
- Absolute saturation thresholds are pixel counts at the dataset's image resolution. When masks are
  resized to a smaller anomaly map, :func:`load_loco_regions` scales them by the ratio of pixel counts,
  so that a saturation keeps covering the same fraction of the object; at the original resolution the
  scale is 1 and the official value results.

Cost: one sort of all pixel scores per metric. On 100 maps of 256x256 (6.6 M pixels, 2-core CPU shared
with other jobs) each metric took 1.0-2.3 s, most of it the argsort (1.1 s); the process peaked at
0.7 GB (about 100 bytes per pixel). ``tests/test_metrics.py::test_speed_100_maps_256`` prints the times.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
from scipy import ndimage

from generator.datasets.base import DatasetIndex, DefectSpec, SourceImage
from generator.errors import SynthgenError
from generator.imageio import read_mask, resize_mask

# Integration limits of the official scripts.
AU_PRO_FPR_LIMIT = 0.3  # MVTec AD evaluation code, default integration limit
AU_SPRO_FPR_LIMIT = 0.05  # MVTec LOCO AD evaluation v2.0, the limit papers report (LogicAL 4.1)

# The two anomaly kinds of MVTec LOCO, each evaluated against the good test images.
LOCO_ANOMALY_KINDS = ("logical_anomalies", "structural_anomalies")
LOCO_GOOD = "good"

# 8-connectivity, as the 3x3 structuring element of ones in MVTec AD's compute_pro.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


class SaturatedRegions(NamedTuple):
    """The ground truth of one image for sPRO: one boolean mask per defect region and its saturation.

    ``saturations[i]`` is the number of true-positive pixels at which region ``i`` counts as fully
    found (in pixels of the anomaly map). A good image has no regions: ``SaturatedRegions((), ())``.
    """

    masks: Sequence[Any]
    saturations: Sequence[float]


# --------------------------------------------------------------------------------------- input checks


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of a numpy array, torch tensor (any device) or nested sequence."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _scores(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(_to_numpy(x), dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise SynthgenError(f"{name}: contains NaN or infinite scores")
    return arr


def _labels(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x).ravel()
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        raise SynthgenError(f"{name}: labels must be 0 (normal) or 1 (anomalous)")
    return arr.astype(bool)


def _maps(anomaly_maps: Any) -> list[np.ndarray]:
    """A (N, H, W) array/tensor or a sequence of (H, W) maps -> list of float64 (H, W) arrays."""
    maps = [_scores(m, f"anomaly map {i}") for i, m in enumerate(anomaly_maps)]
    for i, m in enumerate(maps):
        if m.ndim != 2:
            raise SynthgenError(f"anomaly map {i}: expected a 2-D (H, W) map, got shape {m.shape}")
    return maps


def _masks(gt_masks: Any, maps: list[np.ndarray]) -> list[np.ndarray]:
    """Ground-truth masks (non-zero = anomalous) -> list of boolean arrays shaped like their maps."""
    masks = [_to_numpy(g) != 0 for g in gt_masks]
    if len(masks) != len(maps):
        raise SynthgenError(f"ground-truth masks: {len(masks)} masks for {len(maps)} anomaly maps")
    for i, (g, m) in enumerate(zip(masks, maps)):
        if g.shape != m.shape:
            raise SynthgenError(f"ground-truth mask {i}: shape {g.shape} does not match its map {m.shape}")
    return masks


def _region_masks(regions: SaturatedRegions, score_map: np.ndarray, image: int) -> list[np.ndarray]:
    """The boolean region masks of one image, checked against its anomaly map and saturations."""
    if len(regions.masks) != len(regions.saturations):
        n_masks, n_saturations = len(regions.masks), len(regions.saturations)
        raise SynthgenError(f"ground truth {image}: {n_masks} region masks but {n_saturations} saturations")
    masks = [_to_numpy(r) != 0 for r in regions.masks]
    for j, mask in enumerate(masks):
        if mask.shape != score_map.shape:
            raise SynthgenError(
                f"ground truth {image}, region {j}: shape {mask.shape} does not match its map "
                f"{score_map.shape}"
            )
    return masks


def _check_limit(fpr_limit: float) -> float:
    if not 0.0 < fpr_limit <= 1.0:
        raise SynthgenError(f"fpr_limit: must be in (0, 1], got {fpr_limit}")
    return float(fpr_limit)


# ------------------------------------------------------------------------------------- shared machinery


def _cumulative_at_thresholds(scores: np.ndarray, *weights: np.ndarray) -> list[np.ndarray]:
    """For every distinct score t, from the highest down: the sum of each weight over pixels with score >= t.

    One sort, one cumulative sum per weight, then the value at the last element of each run of tied
    scores (so tied pixels always enter together).
    """
    order = np.argsort(scores)[::-1]
    sorted_scores = scores[order]
    run_ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    return [np.cumsum(w[order])[run_ends] for w in weights]


def partial_area(fpr: np.ndarray, y: np.ndarray, fpr_limit: float) -> float:
    """Trapezoidal area under the polyline (fpr, y) from fpr 0 to ``fpr_limit``.

    ``fpr`` must be non-decreasing, start at 0 and end at 1. Where ``fpr_limit`` falls between two
    points, y at the limit is linearly interpolated between them (MVTec's ``trapezoid(x_max=...)``).
    """
    inside = int(np.searchsorted(fpr, fpr_limit, side="right"))  # points with fpr <= limit
    x, v = fpr[:inside], y[:inside]
    area = float(np.sum((x[1:] - x[:-1]) * (v[1:] + v[:-1]) / 2.0))
    if inside < len(fpr) and x[-1] < fpr_limit:
        x0, x1, y0, y1 = fpr[inside - 1], fpr[inside], y[inside - 1], y[inside]
        y_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        area += (fpr_limit - x0) * (y0 + y_limit) / 2.0
    return area


def _normalised_area(curve: tuple[np.ndarray, np.ndarray] | None, fpr_limit: float) -> float | None:
    """Area of an (FPR, overlap) curve up to ``fpr_limit`` divided by the limit; None for no curve."""
    if curve is None:
        return None
    return _unit(partial_area(*curve, fpr_limit) / fpr_limit)


def _unit(value: float) -> float:
    """Clamp rounding residue (cumulative sums of 1/area) into [0, 1]."""
    return float(min(max(value, 0.0), 1.0))


def _with_origin(fpr: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prepend the point (0, 0) (threshold above every score) and clamp rounding residue above 1."""
    return np.concatenate(([0.0], np.minimum(fpr, 1.0))), np.concatenate(([0.0], np.minimum(y, 1.0)))


# -------------------------------------------------------------------------------------- ranking metrics


def _ranking_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at every distinct threshold (sklearn's _binary_clf_curve)."""
    positive = labels.astype(np.int64)
    tps, fps = _cumulative_at_thresholds(scores, positive, 1 - positive)
    return tps, fps


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    if scores.size != labels.size:
        raise SynthgenError(f"labels: {labels.size} labels for {scores.size} scores")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    tps, fps = _ranking_counts(scores, labels)
    fpr, tpr = _with_origin(fps / n_neg, tps / n_pos)
    return _unit(partial_area(fpr, tpr, 1.0))


def _average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    if scores.size != labels.size:
        raise SynthgenError(f"labels: {labels.size} labels for {scores.size} scores")
    n_pos = int(labels.sum())
    if n_pos == 0:
        return None
    tps, fps = _ranking_counts(scores, labels)
    recall = tps / n_pos
    precision = tps / (tps + fps)
    # sklearn: AP = sum_k (R_k - R_{k-1}) P_k, step-wise, R_0 = 0, no interpolation.
    return _unit(float(np.sum(np.diff(recall, prepend=0.0) * precision)))


def image_auroc(scores: Any, labels: Any) -> float | None:
    """Area under the ROC curve of image scores, as sklearn's ``roc_auc_score`` (ties count half).

    None when only one class is present (sklearn raises there).
    """
    return _auroc(_scores(scores, "image scores").ravel(), _labels(labels, "image labels"))


def image_average_precision(scores: Any, labels: Any) -> float | None:
    """Average precision of image scores, as sklearn's ``average_precision_score`` (step-wise).

    None when there is no anomalous image (recall is undefined). All anomalous gives 1.
    """
    return _average_precision(_scores(scores, "image scores").ravel(), _labels(labels, "image labels"))


def _flat_pixels(anomaly_maps: Any, gt_masks: Any) -> tuple[np.ndarray, np.ndarray]:
    maps = _maps(anomaly_maps)
    masks = _masks(gt_masks, maps)
    if not maps:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate([m.ravel() for m in maps]), np.concatenate([g.ravel() for g in masks])


def pixel_auroc(anomaly_maps: Any, gt_masks: Any) -> float | None:
    """ROC AUC over all pixels of all images (mask non-zero = anomalous pixel).

    None when every pixel is normal or every pixel is anomalous.
    """
    return _auroc(*_flat_pixels(anomaly_maps, gt_masks))


def pixel_average_precision(anomaly_maps: Any, gt_masks: Any) -> float | None:
    """Average precision over all pixels of all images. None when no pixel is anomalous."""
    return _average_precision(*_flat_pixels(anomaly_maps, gt_masks))


# ------------------------------------------------------------------------------------------ AU-PRO


def pro_curve(anomaly_maps: Any, gt_masks: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The exact (FPR, PRO) curve of MVTec AD, from (0, 0) to (1, 1).

    Regions are the 8-connected components of each binary mask. None when there is no region or no
    anomaly-free pixel (the FPR or the PRO would divide by zero).
    """
    maps = _maps(anomaly_maps)
    masks = _masks(gt_masks, maps)
    overlap_weights, normal_flags = [], []
    n_regions = 0
    for mask in masks:
        labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        labels = labels.ravel()
        # Each pixel of a region adds 1/|region| to that region's overlap once it is predicted.
        per_label = 1.0 / np.maximum(np.bincount(labels), 1)
        per_label[0] = 0.0  # label 0 is the anomaly-free background
        overlap_weights.append(per_label[labels])
        normal_flags.append(~mask.ravel())
        n_regions += count
    normal = np.concatenate(normal_flags) if normal_flags else np.zeros(0, dtype=bool)
    n_normal = int(normal.sum())
    if n_regions == 0 or n_normal == 0:
        return None
    scores = np.concatenate([m.ravel() for m in maps])
    fps, overlap = _cumulative_at_thresholds(scores, normal.astype(np.int64), np.concatenate(overlap_weights))
    return _with_origin(fps / n_normal, overlap / n_regions)


def au_pro(anomaly_maps: Any, gt_masks: Any, fpr_limit: float = AU_PRO_FPR_LIMIT) -> float | None:
    """Area under the PRO curve up to ``fpr_limit``, divided by ``fpr_limit`` (MVTec AD; default 0.3).

    None when :func:`pro_curve` is undefined (no anomalous region, or no anomaly-free pixel).
    """
    fpr_limit = _check_limit(fpr_limit)
    return _normalised_area(pro_curve(anomaly_maps, gt_masks), fpr_limit)


# ----------------------------------------------------------------------------------------- AU-sPRO


def _saturation_gains(region_scores: np.ndarray, saturation: float) -> np.ndarray:
    """What each region pixel adds to min(TP / saturation, 1) when it becomes a true positive.

    Pixels are taken from the highest score down: the j-th adds (min(j, s) - min(j - 1, s)) / s, i.e.
    1/s until the region saturates and 0 after. Within a run of tied scores the order is arbitrary,
    but tied pixels always enter together, so the sum at every threshold is exact.
    """
    order = np.argsort(region_scores)[::-1]
    found = np.minimum(np.arange(region_scores.size + 1), saturation)
    gains = np.empty(region_scores.size)
    gains[order] = np.diff(found) / saturation
    return gains


def spro_curve(
    anomaly_maps: Any, ground_truth: Sequence[SaturatedRegions]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The exact (FPR, mean sPRO) curve of MVTec LOCO, from (0, 0) to (1, 1).

    ``ground_truth[i]`` holds the regions of image ``i`` (empty for good images). A pixel is a false
    positive when it is in none of its image's regions; regions may overlap. The saturation of a
    region is clipped to its area (as ``min(threshold, area)`` in the official code) and raised to at
    least one pixel; regions without pixels are ignored. None when no region has pixels or when no
    pixel is anomaly-free.
    """
    maps = _maps(anomaly_maps)
    if len(ground_truth) != len(maps):
        raise SynthgenError(f"ground truth: {len(ground_truth)} entries for {len(maps)} anomaly maps")
    spro_weights, normal_flags = [], []
    n_regions = 0
    for i, (score_map, regions) in enumerate(zip(maps, ground_truth)):
        scores = score_map.ravel()
        weight = np.zeros(scores.size)
        anomalous = np.zeros(scores.size, dtype=bool)
        region_masks = _region_masks(regions, score_map, i)
        for j, (region_mask, saturation) in enumerate(zip(region_masks, regions.saturations)):
            pixels = np.flatnonzero(region_mask.ravel())
            if pixels.size == 0:
                continue
            if not saturation > 0:
                raise SynthgenError(f"ground truth {i}, region {j}: saturation must be > 0, got {saturation}")
            saturation = min(max(float(saturation), 1.0), float(pixels.size))
            weight[pixels] += _saturation_gains(scores[pixels], saturation)
            anomalous[pixels] = True
            n_regions += 1
        spro_weights.append(weight)
        normal_flags.append(~anomalous)
    normal = np.concatenate(normal_flags) if normal_flags else np.zeros(0, dtype=bool)
    n_normal = int(normal.sum())
    if n_regions == 0 or n_normal == 0:
        return None
    scores = np.concatenate([m.ravel() for m in maps])
    fps, spro = _cumulative_at_thresholds(scores, normal.astype(np.int64), np.concatenate(spro_weights))
    return _with_origin(fps / n_normal, spro / n_regions)


def au_spro(
    anomaly_maps: Any, ground_truth: Sequence[SaturatedRegions], fpr_limit: float = AU_SPRO_FPR_LIMIT
) -> float | None:
    """Area under the sPRO curve up to ``fpr_limit``, divided by it (MVTec LOCO; default 0.05).

    None when :func:`spro_curve` is undefined (no region with pixels, or no anomaly-free pixel).
    """
    fpr_limit = _check_limit(fpr_limit)
    return _normalised_area(spro_curve(anomaly_maps, ground_truth), fpr_limit)


def saturation_area(spec: DefectSpec, region_area: int, pixel_scale: float = 1.0) -> float:
    """Saturation in pixels of a region of ``region_area`` pixels (official ``get_saturation_area``).

    Relative: ``int(threshold * area)``. Absolute: ``min(threshold * pixel_scale, area)``, where
    ``pixel_scale`` = (pixels of the anomaly map) / (pixels of the dataset image) converts the
    dataset's pixel count to the map's grid (1 at the original resolution). Never below one pixel for a
    non-empty region (see the module notes); 0 for an empty one.
    """
    if region_area <= 0:
        return 0.0
    if spec.relative_saturation:
        saturation = float(int(spec.saturation_threshold * region_area))
    else:
        saturation = min(spec.saturation_threshold * pixel_scale, float(region_area))
    return max(saturation, 1.0)


def _region_value(mask: np.ndarray, ref_value: int | None, path: Any) -> int:
    """The defect value of a LOCO mask file: the MaskRef's, or the file's single non-zero value."""
    values = np.unique(mask[mask > 0])
    if ref_value is not None:
        if ref_value not in values:
            raise SynthgenError(f"{path}: no pixel has the defect value {ref_value}")
        return ref_value
    if values.size != 1:
        found = "no defect pixels" if values.size == 0 else f"several defect values {values.tolist()}"
        raise SynthgenError(f"{path}: mask has {found}; a LOCO mask holds exactly one defect region")
    return int(values[0])


def load_loco_regions(source: SourceImage, index: DatasetIndex, size_hw: tuple[int, int]) -> SaturatedRegions:
    """Read the region masks of one MVTec LOCO test image, resized to an anomaly map's (H, W).

    One region per mask file; its pixels are those carrying the defect value, its saturation comes
    from the defect type's row of defects_config.json (``index.defects``). Masks are resized with
    nearest neighbour, so a region keeps its exact pixels at the original size; absolute saturations
    are scaled to the new pixel grid (see :func:`saturation_area`). Good images give no regions; an
    anomalous image without masks is an error (the official script refuses it too).
    """
    if source.label == 1 and not source.masks:
        raise SynthgenError(f"{source.path}: anomalous test image {source.id} has no ground-truth masks")
    masks, saturations = [], []
    for ref in source.masks:
        raw = read_mask(ref.path)
        value = _region_value(raw, ref.pixel_value, ref.path)
        spec = index.defect_for_value(value)
        if spec is None:
            raise SynthgenError(f"{ref.path}: defect value {value} is not in defects_config.json")
        region = resize_mask((raw == value).astype(np.uint8), size_hw).astype(bool)
        pixel_scale = (size_hw[0] * size_hw[1]) / (raw.shape[0] * raw.shape[1])
        masks.append(region)
        saturations.append(saturation_area(spec, int(region.sum()), pixel_scale))
    return SaturatedRegions(tuple(masks), tuple(saturations))


# ------------------------------------------------------------------------------------ LOCO reporting


def loco_report(
    anomaly_maps: Any,
    defect_types: Sequence[str],
    ground_truth: Sequence[SaturatedRegions],
    image_scores: Any = None,
    fpr_limits: Sequence[float] = (AU_SPRO_FPR_LIMIT,),
) -> dict[str, dict[str, Any]]:
    """MVTec LOCO results per anomaly kind and their mean, as the official script reports them.

    ``defect_types[i]`` is ``good``, ``logical_anomalies`` or ``structural_anomalies`` (SourceImage's
    defect_type). Each kind is evaluated on its images plus all good images: ``image_auroc`` (image
    score = max of the map unless ``image_scores`` is given), ``pixel_auroc`` (pixels inside any region
    are anomalous) and ``au_spro`` {limit: value}. ``mean`` averages the two kinds. A kind without
    images gives None for all three (and ``image_auroc`` is None without good images); a mean is None
    when either kind's value is None.
    """
    maps = _maps(anomaly_maps)
    if not (len(defect_types) == len(ground_truth) == len(maps)):
        raise SynthgenError(
            f"loco report: {len(maps)} anomaly maps, {len(defect_types)} defect types, "
            f"{len(ground_truth)} ground truths"
        )
    unknown = sorted(set(defect_types) - {LOCO_GOOD, *LOCO_ANOMALY_KINDS})
    if unknown:
        known = ", ".join((LOCO_GOOD, *LOCO_ANOMALY_KINDS))
        raise SynthgenError(f"defect types: {unknown} are not MVTec LOCO test folders ({known})")
    if image_scores is None:
        scores = np.array([m.max() for m in maps])  # the official image score: max of the map
    else:
        scores = _scores(image_scores, "image scores").ravel()
    if scores.size != len(maps):
        raise SynthgenError(f"image scores: {scores.size} scores for {len(maps)} anomaly maps")
    limits = [_check_limit(limit) for limit in fpr_limits]

    report: dict[str, dict[str, Any]] = {}
    for kind in LOCO_ANOMALY_KINDS:
        # This kind's images plus all good images; every metric is None by itself when this kind
        # (or, for the image AUROC, the good class) is missing.
        chosen = [i for i, t in enumerate(defect_types) if t in (LOCO_GOOD, kind)]
        kind_maps = [maps[i] for i in chosen]
        kind_truth = [ground_truth[i] for i in chosen]
        labels = np.array([defect_types[i] == kind for i in chosen], dtype=bool)
        union_masks = [_region_union(truth, m, i) for i, truth, m in zip(chosen, kind_truth, kind_maps)]
        curve = spro_curve(kind_maps, kind_truth)
        report[kind] = {
            "image_auroc": _auroc(scores[chosen], labels),
            "pixel_auroc": pixel_auroc(kind_maps, union_masks),
            "au_spro": {limit: _normalised_area(curve, limit) for limit in limits},
        }
    logical, structural = (report[k] for k in LOCO_ANOMALY_KINDS)
    report["mean"] = {
        "image_auroc": _mean_of_two(logical["image_auroc"], structural["image_auroc"]),
        "pixel_auroc": _mean_of_two(logical["pixel_auroc"], structural["pixel_auroc"]),
        "au_spro": {lim: _mean_of_two(logical["au_spro"][lim], structural["au_spro"][lim]) for lim in limits},
    }
    return report


def _region_union(regions: SaturatedRegions, score_map: np.ndarray, image: int) -> np.ndarray:
    """Pixels inside any region of one image (the binary ground truth for pixel AUROC)."""
    union = np.zeros(score_map.shape, dtype=bool)
    for mask in _region_masks(regions, score_map, image):
        union |= mask
    return union


def _mean_of_two(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else 0.5 * (a + b)
