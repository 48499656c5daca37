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

Cost: pixel curves sort the pixels band by band of scores (see "streamed pixel curves" below), so
memory stays at about CURVE_CHUNK_PIXELS x 50 bytes however many pixels are evaluated, plus the
maps themselves and a sparse copy of the ground truth; the result is the one global sort's. On 100
maps of 256x256 (6.6 M pixels, 2-core CPU shared with other jobs) each metric took 1.0-2.3 s.
``tests/test_metrics.py::test_speed_100_maps_256`` prints the times.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
from scipy import ndimage

from synthgen.generator.datasets.base import DatasetIndex, DefectSpec, SourceImage
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import read_mask, resize_mask

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
    """A (N, H, W) array/tensor or a sequence of (H, W) maps -> list of float (H, W) arrays.

    float32 maps stay float32 (no copy): the pixel curves read them one band of scores at a time and
    convert only that band to float64, which is exact, so the metrics do not change.
    """
    maps = []
    for i, m in enumerate(anomaly_maps):
        arr = _to_numpy(m)
        if arr.dtype != np.float32:
            arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim != 2:
            raise SynthgenError(f"anomaly map {i}: expected a 2-D (H, W) map, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise SynthgenError(f"anomaly map {i}: contains NaN or infinite scores")
        maps.append(arr)
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


def _unit(value: float) -> float:
    """Clamp rounding residue (cumulative sums of 1/area) into [0, 1]."""
    return float(min(max(value, 0.0), 1.0))


def _with_origin(fpr: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prepend the point (0, 0) (threshold above every score) and clamp rounding residue above 1."""
    return np.concatenate(([0.0], np.minimum(fpr, 1.0))), np.concatenate(([0.0], np.minimum(y, 1.0)))


# ------------------------------------------------------------------------------- streamed pixel curves
#
# A full-resolution evaluation has tens of millions of pixels (126 MVTec LOCO juice_bottle images at
# 1600x800: 161 M pixel scores over the two kinds). Sorting them all at once, with their weights and
# the full curve, peaked at 13.9 GB. The pixel curves below give the same exact curve (every distinct
# score a threshold, ties entering together) in bands of scores: the pixels are cut by score value
# into bands of about CURVE_CHUNK_PIXELS, each band is sorted alone (a distinct score lies in one band,
# so ties stay together), and the cumulative sums carry over from band to band. Areas are summed band
# by band, so neither the sorted pixels nor the curve are ever held whole; a band's working memory is
# about 50 bytes per pixel. The per-image ground truth is kept sparse: anomalous pixels only.


#: pixels sorted at once by a pixel curve (about 100 MB of working memory)
CURVE_CHUNK_PIXELS = 2_000_000


class _PixelTruth(NamedTuple):
    """What one image's pixels add to a curve once predicted: each pixel in ``anomalous`` (sorted flat
    indices) adds its ``weights`` entry to the curve's y sum; every other pixel is anomaly-free and
    adds one false positive."""

    anomalous: np.ndarray
    weights: np.ndarray


def _score_bands(maps: list[np.ndarray], chunk_pixels: int) -> list[float]:
    """Band boundaries [inf, b_1, ..., -inf], descending, that cut all pixels into bands of about
    ``chunk_pixels`` (quantiles of a regular subsample of the scores; any boundaries give exact
    results, these only balance the bands)."""
    total = sum(m.size for m in maps)
    bands = -(-total // chunk_pixels)
    if bands <= 1:
        return [np.inf, -np.inf]
    stride = max(1, total // (bands * 1000))  # about a thousand sampled scores per band
    sample = np.concatenate([m.ravel()[::stride] for m in maps]).astype(np.float64)
    inner = np.unique(np.quantile(sample, np.linspace(0.0, 1.0, bands + 1)[1:-1]))[::-1]
    return [np.inf, *inner.tolist(), -np.inf]


def _descending_sums(
    maps: list[np.ndarray], truths: list[_PixelTruth]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For every distinct score t, from the highest down: (false positives, sum of weights) over the
    pixels with score >= t, yielded one score band at a time (see the section comment)."""
    bounds = _score_bands(maps, CURVE_CHUNK_PIXELS)
    false_positives, weight_sum = 0, 0.0
    for upper, lower in zip(bounds[:-1], bounds[1:]):
        scores, normal, weights = [], [], []
        for score_map, truth in zip(maps, truths):
            flat = score_map.ravel()
            in_band = (flat >= lower) & (flat < upper)
            pixels = np.flatnonzero(in_band)
            if pixels.size == 0:
                continue
            hit = in_band[truth.anomalous]
            at = np.searchsorted(pixels, truth.anomalous[hit])
            weight = np.zeros(pixels.size)
            weight[at] = truth.weights[hit]
            is_normal = np.ones(pixels.size, dtype=np.int8)  # summed in int64 below
            is_normal[at] = 0
            scores.append(flat[pixels].astype(np.float64))
            normal.append(is_normal)
            weights.append(weight)
        if not scores:
            continue
        band = np.concatenate(scores)
        order = np.argsort(band)[::-1]
        band = band[order]
        run_ends = np.flatnonzero(np.append(band[1:] != band[:-1], True))
        fps = false_positives + np.cumsum(np.concatenate(normal)[order], dtype=np.int64)
        # the running sum continues from the previous band, element by element, as one cumsum would
        sums = np.cumsum(np.concatenate(([weight_sum], np.concatenate(weights)[order])))[1:]
        false_positives, weight_sum = int(fps[-1]), float(sums[-1])
        yield fps[run_ends], sums[run_ends]


def _curve_bands(
    maps: list[np.ndarray], truths: list[_PixelTruth], n_normal: int, y_total: float
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (FPR, y / y_total) points of the exact curve, band by band (without the origin)."""
    for fps, sums in _descending_sums(maps, truths):
        yield np.minimum(fps / n_normal, 1.0), np.minimum(sums / y_total, 1.0)


def _whole_curve(bands: Iterator[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """All points of a streamed curve, with the origin (for callers that want the curve itself)."""
    parts = list(bands)
    return _with_origin(np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))


def _streamed_areas(bands: Iterator[tuple[np.ndarray, np.ndarray]], limits: Sequence[float]) -> dict[float, float]:
    """:func:`partial_area` of a curve from (0, 0), for each limit, from its points band by band."""
    areas = dict.fromkeys(limits, 0.0)
    open_limits = list(limits)
    last_x, last_y = 0.0, 0.0
    for x, y in bands:
        if not open_limits:
            break
        xs, ys = np.concatenate(([last_x], x)), np.concatenate(([last_y], y))
        for limit in list(open_limits):
            inside = int(np.searchsorted(xs, limit, side="right"))  # >= 1: xs[0] is below the limit
            areas[limit] += float(np.sum((xs[1:inside] - xs[: inside - 1]) * (ys[1:inside] + ys[: inside - 1]) / 2.0))
            if inside < len(xs):  # the curve passes the limit in this band
                x0, x1, y0, y1 = xs[inside - 1], xs[inside], ys[inside - 1], ys[inside]
                if x0 < limit:
                    y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
                    areas[limit] += (limit - x0) * (y0 + y_limit) / 2.0
                open_limits.remove(limit)
        last_x, last_y = float(xs[-1]), float(ys[-1])
    return areas


def _mask_truths(maps: list[np.ndarray], masks: list[np.ndarray]) -> list[_PixelTruth]:
    """Binary ground truth: every anomalous pixel weighs 1 (it is a true positive once predicted)."""
    truths = []
    for mask in masks:
        anomalous = np.flatnonzero(mask.ravel()).astype(np.int32)  # one image has < 2**31 pixels
        truths.append(_PixelTruth(anomalous, np.ones(anomalous.size)))
    return truths


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


def _pixel_counts(anomaly_maps: Any, gt_masks: Any) -> tuple[list[np.ndarray], list[_PixelTruth], int, int]:
    maps = _maps(anomaly_maps)
    truths = _mask_truths(maps, _masks(gt_masks, maps))
    n_pos = sum(t.anomalous.size for t in truths)
    return maps, truths, n_pos, sum(m.size for m in maps) - n_pos


def pixel_auroc(anomaly_maps: Any, gt_masks: Any) -> float | None:
    """ROC AUC over all pixels of all images (mask non-zero = anomalous pixel).

    None when every pixel is normal or every pixel is anomalous.
    """
    maps, truths, n_pos, n_neg = _pixel_counts(anomaly_maps, gt_masks)
    if n_pos == 0 or n_neg == 0:
        return None
    return _unit(_streamed_areas(_curve_bands(maps, truths, n_neg, n_pos), [1.0])[1.0])


def pixel_average_precision(anomaly_maps: Any, gt_masks: Any) -> float | None:
    """Average precision over all pixels of all images. None when no pixel is anomalous."""
    maps, truths, n_pos, _ = _pixel_counts(anomaly_maps, gt_masks)
    if n_pos == 0:
        return None
    # sklearn: AP = sum_k (R_k - R_{k-1}) P_k, step-wise, R_0 = 0, no interpolation.
    total, last_recall = 0.0, 0.0
    for fps, tps in _descending_sums(maps, truths):
        recall = tps / n_pos
        total += float(np.sum(np.diff(recall, prepend=last_recall) * (tps / (tps + fps))))
        last_recall = float(recall[-1])
    return _unit(total)


# ------------------------------------------------------------------------------------------ AU-PRO


def _pro_truths(anomaly_maps: Any, gt_masks: Any) -> tuple[list[np.ndarray], list[_PixelTruth], int, int]:
    """Maps, per-image truths (a region pixel weighs 1/|region|), anomaly-free pixels, regions."""
    maps = _maps(anomaly_maps)
    masks = _masks(gt_masks, maps)
    truths, n_regions, n_normal = [], 0, 0
    for mask in masks:
        labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        labels = labels.ravel()
        # Each pixel of a region adds 1/|region| to that region's overlap once it is predicted.
        per_label = 1.0 / np.maximum(np.bincount(labels), 1)
        anomalous = np.flatnonzero(labels).astype(np.int32)
        truths.append(_PixelTruth(anomalous, per_label[labels[anomalous]]))
        n_regions += count
        n_normal += labels.size - anomalous.size
    return maps, truths, n_normal, n_regions


def pro_curve(anomaly_maps: Any, gt_masks: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The exact (FPR, PRO) curve of MVTec AD, from (0, 0) to (1, 1).

    Regions are the 8-connected components of each binary mask. None when there is no region or no
    anomaly-free pixel (the FPR or the PRO would divide by zero).
    """
    maps, truths, n_normal, n_regions = _pro_truths(anomaly_maps, gt_masks)
    if n_regions == 0 or n_normal == 0:
        return None
    return _whole_curve(_curve_bands(maps, truths, n_normal, n_regions))


def au_pro(anomaly_maps: Any, gt_masks: Any, fpr_limit: float = AU_PRO_FPR_LIMIT) -> float | None:
    """Area under the PRO curve up to ``fpr_limit``, divided by ``fpr_limit`` (MVTec AD; default 0.3).

    None when :func:`pro_curve` is undefined (no anomalous region, or no anomaly-free pixel).
    """
    fpr_limit = _check_limit(fpr_limit)
    maps, truths, n_normal, n_regions = _pro_truths(anomaly_maps, gt_masks)
    if n_regions == 0 or n_normal == 0:
        return None
    area = _streamed_areas(_curve_bands(maps, truths, n_normal, n_regions), [fpr_limit])[fpr_limit]
    return _unit(area / fpr_limit)


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


def _spro_truths(
    anomaly_maps: Any, ground_truth: Sequence[SaturatedRegions]
) -> tuple[list[np.ndarray], list[_PixelTruth], int, int]:
    """Maps, per-image truths (a pixel's summed saturation gains over the regions that hold it),
    anomaly-free pixels, regions with pixels."""
    maps = _maps(anomaly_maps)
    if len(ground_truth) != len(maps):
        raise SynthgenError(f"ground truth: {len(ground_truth)} entries for {len(maps)} anomaly maps")
    truths, n_regions, n_normal = [], 0, 0
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
            weight[pixels] += _saturation_gains(scores[pixels].astype(np.float64), saturation)
            anomalous[pixels] = True
            n_regions += 1
        in_regions = np.flatnonzero(anomalous).astype(np.int32)
        truths.append(_PixelTruth(in_regions, weight[in_regions]))
        n_normal += scores.size - in_regions.size
    return maps, truths, n_normal, n_regions


def spro_curve(
    anomaly_maps: Any, ground_truth: Sequence[SaturatedRegions]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The exact (FPR, mean sPRO) curve of MVTec LOCO, from (0, 0) to (1, 1).

    ``ground_truth[i]`` holds the regions of image ``i`` (empty for good images). A pixel is a false
    positive when it is in none of its image's regions; regions may overlap. The saturation of a
    region is clipped to its area (as ``min(threshold, area)`` in the official code) and raised to at
    least one pixel; regions without pixels are ignored. None when no region has pixels or when no
    pixel is anomaly-free. The whole curve is one point per distinct score: for the areas alone,
    :func:`au_spro` and :func:`loco_report` stream it instead.
    """
    maps, truths, n_normal, n_regions = _spro_truths(anomaly_maps, ground_truth)
    if n_regions == 0 or n_normal == 0:
        return None
    return _whole_curve(_curve_bands(maps, truths, n_normal, n_regions))


def _spro_areas(
    anomaly_maps: Any, ground_truth: Sequence[SaturatedRegions], limits: Sequence[float]
) -> dict[float, float | None]:
    """Normalised AU-sPRO at each limit, from the streamed curve; None for every limit when undefined."""
    maps, truths, n_normal, n_regions = _spro_truths(anomaly_maps, ground_truth)
    if n_regions == 0 or n_normal == 0:
        return dict.fromkeys(limits)
    areas = _streamed_areas(_curve_bands(maps, truths, n_normal, n_regions), limits)
    return {limit: _unit(area / limit) for limit, area in areas.items()}


def au_spro(
    anomaly_maps: Any, ground_truth: Sequence[SaturatedRegions], fpr_limit: float = AU_SPRO_FPR_LIMIT
) -> float | None:
    """Area under the sPRO curve up to ``fpr_limit``, divided by it (MVTec LOCO; default 0.05).

    None when :func:`spro_curve` is undefined (no region with pixels, or no anomaly-free pixel).
    """
    fpr_limit = _check_limit(fpr_limit)
    return _spro_areas(anomaly_maps, ground_truth, [fpr_limit])[fpr_limit]


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
        report[kind] = {
            "image_auroc": _auroc(scores[chosen], labels),
            "pixel_auroc": pixel_auroc(kind_maps, union_masks),
            "au_spro": _spro_areas(kind_maps, kind_truth, limits),
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
