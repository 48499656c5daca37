"""Tests of trainers/metrics.py against independent references.

AUROC / AP: sklearn (a test-time reference only; the library does not import it).
AU-PRO / AU-sPRO: a slow brute force written here, one binarisation per distinct score, connected
components from scikit-image (not scipy, which the library uses), and a segment-by-segment integration
with np.trapezoid (numpy 2's name for np.trapz).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.measure import label as skimage_label
from sklearn.metrics import average_precision_score, roc_auc_score

from synthgen.generator.datasets.base import DatasetIndex, DefectSpec, MaskRef, SourceImage
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import write_png
from synthgen.trainers import metrics as M

# ------------------------------------------------------------------------------------- references


def ref_partial_area(fprs, ys, limit):
    """Area under the polyline up to ``limit`` / limit, clipping segment by segment."""
    area = 0.0
    for x0, y0, x1, y1 in zip(fprs[:-1], ys[:-1], fprs[1:], ys[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += np.trapezoid([y0, y1], [x0, x1])
    return area / limit


def ref_curve(maps, anomalous, overlap_at):
    """(FPR, overlap) points at every distinct score, by binarising all maps once per threshold."""
    maps = np.asarray(maps, dtype=np.float64)
    normal = ~np.asarray(anomalous)
    fprs, ys = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        predicted = maps >= t
        fprs.append((predicted & normal).sum() / normal.sum())
        ys.append(overlap_at(predicted))
    return fprs, ys


def ref_au_pro(maps, gts, limit=0.3):
    gts = np.asarray(gts, dtype=bool)
    regions = []
    for i, gt in enumerate(gts):
        labels = skimage_label(gt, connectivity=2)  # 8-connectivity
        regions += [(i, labels == k) for k in range(1, labels.max() + 1)]

    def pro(predicted):
        return np.mean([(predicted[i] & r).sum() / r.sum() for i, r in regions])

    return ref_partial_area(*ref_curve(maps, gts, pro), limit)


def ref_au_spro(maps, truths, limit=0.05):
    """Official LOCO semantics, one threshold at a time: sPRO = mean over regions of min(TP/s, 1)."""
    regions = [
        (i, np.asarray(m, bool), min(max(s, 1.0), np.asarray(m, bool).sum()))
        for i, t in enumerate(truths)
        for m, s in zip(t.masks, t.saturations)
        if np.asarray(m, bool).any()
    ]
    union = np.zeros(np.shape(maps), dtype=bool)
    for i, m, _ in regions:
        union[i] |= m

    def spro(predicted):
        return np.mean([min((predicted[i] & m).sum() / s, 1.0) for i, m, s in regions])

    return ref_partial_area(*ref_curve(maps, union, spro), limit)


def random_rectangles(rng, shape, count):
    """``count`` random axis-aligned boxes (they may touch or overlap)."""
    masks = []
    for _ in range(count):
        h, w = rng.integers(1, shape[0] // 2 + 1), rng.integers(1, shape[1] // 2 + 1)
        y, x = rng.integers(0, shape[0] - h + 1), rng.integers(0, shape[1] - w + 1)
        m = np.zeros(shape, dtype=bool)
        m[y : y + h, x : x + w] = True
        masks.append(m)
    return masks


def random_maps(rng, n, shape, quantised):
    maps = rng.random((n, *shape))
    return np.round(maps * 8) / 8 if quantised else maps  # quantised: many ties


# --------------------------------------------------------------------------- image AUROC and AP


@pytest.mark.parametrize(
    "scores, labels, auroc, ap",
    [
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0, 1.0),  # perfect separation
        ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0, 0.5 * 1 / 3 + 0.5 * 2 / 4),  # inverted
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5, 0.5),  # constant: AUROC 0.5, AP = prevalence
        ([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1], 0.875, 0.5 * 1 + 0.5 * 2 / 3),  # a tie across classes
    ],
)
def test_image_metrics_hand_cases(scores, labels, auroc, ap):
    assert M.image_auroc(scores, labels) == pytest.approx(auroc, abs=1e-12)
    assert M.image_average_precision(scores, labels) == pytest.approx(ap, abs=1e-12)
    assert M.image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert M.image_average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )


def test_image_metrics_undefined_cases_give_none():
    assert M.image_auroc([0.1, 0.2], [1, 1]) is None
    assert M.image_auroc([0.1, 0.2], [0, 0]) is None
    assert M.image_auroc([], []) is None
    assert M.image_average_precision([0.1, 0.2], [0, 0]) is None
    assert M.image_average_precision([0.3, 0.1], [1, 1]) == 1.0  # all anomalous: precision is 1 throughout


@pytest.mark.parametrize("seed", range(40))
def test_image_metrics_match_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 6, n) / 5 if seed % 2 else rng.normal(size=n)  # odd seeds: heavy ties
    assert M.image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert M.image_average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )


def test_bad_image_inputs_are_user_errors():
    with pytest.raises(SynthgenError, match="NaN"):
        M.image_auroc([0.1, float("nan")], [0, 1])
    with pytest.raises(SynthgenError, match="0 \\(normal\\) or 1"):
        M.image_auroc([0.1, 0.2], [0, 2])
    with pytest.raises(SynthgenError, match="3 labels for 2 scores"):
        M.image_auroc([0.1, 0.2], [0, 1, 1])


# --------------------------------------------------------------------------- pixel AUROC and AP


@pytest.mark.parametrize("seed", range(10))
def test_pixel_metrics_match_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    maps = random_maps(rng, 5, (16, 12), quantised=seed % 2 == 1)
    gts = np.stack([np.any(random_rectangles(rng, (16, 12), 2), axis=0) for _ in range(5)])
    gts[0] = False  # an image without anomalies
    assert M.pixel_auroc(maps, gts) == pytest.approx(roc_auc_score(gts.ravel(), maps.ravel()), abs=1e-12)
    assert M.pixel_average_precision(maps, gts) == pytest.approx(
        average_precision_score(gts.ravel(), maps.ravel()), abs=1e-12
    )


def test_pixel_metrics_accept_torch_tensors_and_lists():
    rng = np.random.default_rng(3)
    maps = rng.random((3, 8, 8)).astype(np.float32)
    gts = rng.random((3, 8, 8)) > 0.8
    expected = M.pixel_auroc(maps, gts)
    assert M.pixel_auroc(torch.from_numpy(maps), torch.from_numpy(gts)) == expected
    assert M.pixel_auroc(list(maps), list(gts.astype(np.uint8) * 255)) == expected


def test_pixel_metrics_undefined_and_bad_shapes():
    maps = np.zeros((2, 4, 4))
    assert M.pixel_auroc(maps, np.zeros((2, 4, 4))) is None  # no anomalous pixel
    assert M.pixel_average_precision(maps, np.zeros((2, 4, 4))) is None
    assert M.pixel_auroc(maps, np.ones((2, 4, 4))) is None  # no normal pixel
    assert M.pixel_auroc(maps, np.eye(4)[None].repeat(2, 0)) == 0.5  # constant scores
    with pytest.raises(SynthgenError, match="does not match"):
        M.pixel_auroc(maps, np.zeros((2, 4, 5)))
    with pytest.raises(SynthgenError, match="1 masks for 2 anomaly maps"):
        M.pixel_auroc(maps, np.zeros((1, 4, 4)))
    with pytest.raises(SynthgenError, match="2-D"):
        M.pixel_auroc(np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4, 4)))


# ---------------------------------------------------------------------------------------- AU-PRO


def test_au_pro_hand_cases():
    gt = np.zeros((1, 10, 10), dtype=bool)
    gt[0, 2:5, 2:6] = True
    assert M.au_pro(gt.astype(float), gt) == 1.0  # perfect
    assert M.au_pro(1.0 - gt, gt) == 0.0  # inverted: every normal pixel first
    # constant: the curve is the diagonal, area to 0.3 = 0.045, normalised 0.15
    assert M.au_pro(np.full((1, 10, 10), 0.7), gt) == pytest.approx(0.15, abs=1e-12)
    assert M.au_pro(np.full((1, 10, 10), 0.7), gt, fpr_limit=1.0) == pytest.approx(0.5, abs=1e-12)


def test_pro_regions_are_8_connected():
    gt = np.zeros((1, 8, 8), dtype=bool)
    gt[0, 0, 0] = gt[0, 1, 1] = True  # touch diagonally: one region under 8-connectivity
    gt[0, 5, 5] = gt[0, 5, 6] = True  # a second region
    scores = np.zeros((1, 8, 8))
    scores[0, 0, 0] = 1.0
    fpr, pro = M.pro_curve(scores, gt)
    # first point after the origin: only (0, 0) predicted -> regions {1/2, 0} -> 0.25
    # (4-connectivity would give three regions {1, 0, 0} -> 1/3)
    assert fpr[1] == 0.0 and pro[1] == pytest.approx(0.25)
    assert fpr[-1] == 1.0 and pro[-1] == pytest.approx(1.0)


def test_au_pro_undefined_without_regions_or_normal_pixels():
    assert M.au_pro(np.random.default_rng(0).random((2, 5, 5)), np.zeros((2, 5, 5))) is None
    assert M.au_pro(np.random.default_rng(0).random((1, 5, 5)), np.ones((1, 5, 5))) is None
    with pytest.raises(SynthgenError, match="fpr_limit"):
        M.au_pro(np.zeros((1, 3, 3)), np.eye(3)[None], fpr_limit=0.0)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_au_pro_matches_brute_force(seed, limit):
    rng = np.random.default_rng(200 + seed)
    shape = (12, 14)
    maps = random_maps(rng, 4, shape, quantised=seed % 2 == 0)
    gts = np.stack([np.any(random_rectangles(rng, shape, int(rng.integers(1, 4))), axis=0) for _ in range(4)])
    gts[1] = False  # an image without anomalies only adds normal pixels
    # make anomalies somewhat detectable so the curve is not trivial
    maps = maps + 0.5 * gts * rng.random(gts.shape)
    assert M.au_pro(maps, gts, fpr_limit=limit) == pytest.approx(ref_au_pro(maps, gts, limit), abs=1e-9)


# --------------------------------------------------------------------------------------- AU-sPRO


def test_au_spro_saturation_hand_case():
    gt = np.zeros((1, 10, 10), dtype=bool)
    gt[0, 0:2, :] = True  # 20 pixels
    scores = np.zeros((1, 10, 10))
    scores[0, 0, :] = 1.0  # 10 of them found before any normal pixel
    saturated = [M.SaturatedRegions([gt[0]], [10])]
    assert M.au_spro(scores, saturated) == pytest.approx(1.0, abs=1e-12)
    # Saturation = area is plain PRO: curve (0,0) -> (0, 0.5) -> (1, 1); y(0.05) = 0.525.
    unsaturated = [M.SaturatedRegions([gt[0]], [20])]
    expected = 0.05 * (0.5 + 0.525) / 2 / 0.05
    assert M.au_spro(scores, unsaturated) == pytest.approx(expected, abs=1e-12)
    assert M.au_pro(scores, gt, fpr_limit=0.05) == pytest.approx(expected, abs=1e-12)


def test_au_spro_overlapping_regions():
    a = np.zeros((4, 5), dtype=bool)
    b = np.zeros((4, 5), dtype=bool)
    a.flat[0:10] = True
    b.flat[5:15] = True  # shares pixels 5..9 with a
    scores = np.zeros((1, 4, 5))
    scores.flat[5:10] = 1.0  # only the shared pixels are found first
    truth = [M.SaturatedRegions([a, b], [5, 10])]
    fpr, spro = M.spro_curve(scores, truth)
    # a saturates (5/5), b is half found (5/10): mean 0.75 with no false positive. Pixels of b outside
    # a are not false positives for a: only pixels outside both regions are.
    assert (fpr[1], spro[1]) == (0.0, pytest.approx(0.75))
    expected = 0.05 * (0.75 + 0.7625) / 2 / 0.05  # then straight to (1, 1)
    assert M.au_spro(scores, truth) == pytest.approx(expected, abs=1e-12)
    assert M.au_spro(scores, truth) == pytest.approx(ref_au_spro(scores, truth), abs=1e-12)


def test_au_spro_region_smaller_than_saturation_is_plain_pro():
    rng = np.random.default_rng(7)
    maps = rng.random((3, 9, 9))
    gts = np.zeros((3, 9, 9), dtype=bool)
    gts[0, 1:4, 1:4] = True
    gts[2, 5:9, 2:8] = True
    truths = [M.SaturatedRegions([g], [1e9]) if g.any() else M.SaturatedRegions((), ()) for g in gts]
    assert M.au_spro(maps, truths, fpr_limit=0.3) == pytest.approx(M.au_pro(maps, gts), abs=1e-12)


def test_au_spro_empty_regions_and_good_images():
    rng = np.random.default_rng(8)
    region = np.zeros((6, 6), dtype=bool)
    region[1:3, 1:4] = True
    maps = rng.random((3, 6, 6)) + 0.5 * region  # found early, but not before every normal pixel
    empty = np.zeros((6, 6), dtype=bool)
    good = M.SaturatedRegions((), ())
    with_empty = [M.SaturatedRegions([region, empty], [3, 5]), good, good]
    without = [M.SaturatedRegions([region], [3]), good, good]
    assert M.au_spro(maps, with_empty) == M.au_spro(maps, without)  # an empty region is ignored
    assert M.au_spro(maps, [good, good, good]) is None  # no region at all
    assert M.au_spro(maps, [M.SaturatedRegions([empty], [5]), good, good]) is None
    # good images add normal pixels to the FPR, nothing else
    only_anomalous = M.au_spro(maps[:1], without[:1])
    assert 0.0 < only_anomalous < 1.0 and only_anomalous != M.au_spro(maps, without)
    assert only_anomalous == pytest.approx(ref_au_spro(maps[:1], without[:1]), abs=1e-12)
    assert M.au_spro(maps, without) == pytest.approx(ref_au_spro(maps, without), abs=1e-12)


def test_au_spro_bad_inputs():
    maps = np.zeros((1, 4, 4))
    region = np.eye(4, dtype=bool)
    with pytest.raises(SynthgenError, match="saturation must be > 0"):
        M.au_spro(maps, [M.SaturatedRegions([region], [0])])
    with pytest.raises(SynthgenError, match="1 region masks but 2 saturations"):
        M.au_spro(maps, [M.SaturatedRegions([region], [1, 2])])
    with pytest.raises(SynthgenError, match="does not match"):
        M.au_spro(maps, [M.SaturatedRegions([np.ones((3, 3))], [1])])
    with pytest.raises(SynthgenError, match="2 entries for 1 anomaly maps"):
        M.au_spro(maps, [M.SaturatedRegions((), ())] * 2)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_au_spro_matches_brute_force(seed, limit):
    rng = np.random.default_rng(300 + seed)
    shape = (10, 13)
    maps = random_maps(rng, 4, shape, quantised=seed % 2 == 0)
    truths = []
    for i in range(4):
        masks = [] if i == 0 else random_rectangles(rng, shape, int(rng.integers(1, 4)))  # image 0 is good
        # saturations below, within and above the area, integral and fractional
        sats = [float(rng.uniform(0.3, 1.5) * m.sum()) for m in masks]
        truths.append(M.SaturatedRegions(masks, sats))
        for m in masks:
            maps[i] += 0.4 * m * rng.random(shape)
    fast = M.au_spro(maps, truths, fpr_limit=limit)
    assert fast == pytest.approx(ref_au_spro(maps, truths, limit), abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_pixel_curves_in_score_bands_equal_one_global_sort(seed, monkeypatch):
    """The streamed curves (pixels cut into bands of scores, each sorted alone) give the numbers of
    one sort over all pixels: float32 and float64 maps, heavy ties, saturated and overlapping regions."""
    rng = np.random.default_rng(600 + seed)
    shape = (24, 31)
    maps = random_maps(rng, 6, shape, quantised=seed % 2 == 0)
    truths, masks = [], []
    for i in range(6):
        regions = [] if i < 2 else random_rectangles(rng, shape, int(rng.integers(1, 4)))
        sats = [float(rng.choice([1.0, 3.0, rng.uniform(0.2, 1.5) * r.sum()])) for r in regions]
        truths.append(M.SaturatedRegions(regions, sats))
        union = np.zeros(shape, dtype=bool)
        for r in regions:
            maps[i] += 0.3 * r * rng.random(shape)
            union |= r
        masks.append(union)
    maps = maps.astype(np.float32) if seed % 3 == 0 else maps
    limits = (0.01, 0.05, 0.3, 1.0)

    def everything():
        return {
            "pixel_auroc": M.pixel_auroc(maps, masks),
            "pixel_ap": M.pixel_average_precision(maps, masks),
            "au_pro": M.au_pro(maps, masks),
            **{f"au_spro@{limit}": M.au_spro(maps, truths, fpr_limit=limit) for limit in limits},
            "loco": M.loco_report(maps, ["good"] * 2 + ["logical_anomalies", "structural_anomalies"] * 2, truths,
                                  fpr_limits=limits),
            "spro_curve": M.spro_curve(maps, truths),
            "pro_curve": M.pro_curve(maps, masks),
        }

    whole = everything()  # the default band size holds every pixel: one global sort
    monkeypatch.setattr(M, "CURVE_CHUNK_PIXELS", 97)  # ~46 bands, boundaries inside runs of ties too
    banded = everything()
    for key in ("pixel_auroc", "pixel_ap", "au_pro", *(f"au_spro@{limit}" for limit in limits)):
        assert banded[key] == pytest.approx(whole[key], abs=1e-9), key
    for kind in ("logical_anomalies", "structural_anomalies", "mean"):
        for limit in limits:
            assert banded["loco"][kind]["au_spro"][limit] == pytest.approx(whole["loco"][kind]["au_spro"][limit], abs=1e-9)
        assert banded["loco"][kind]["pixel_auroc"] == pytest.approx(whole["loco"][kind]["pixel_auroc"], abs=1e-9)
    for key in ("spro_curve", "pro_curve"):
        for a, b in zip(banded[key], whole[key]):
            assert a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-12)


# -------------------------------------------------------------------------------- saturation, loader


def test_saturation_area_relative_and_absolute():
    relative = DefectSpec("r", 252, 0.5, True)
    absolute = DefectSpec("a", 255, 30.0, False)
    assert M.saturation_area(relative, 101) == 50.0  # int(0.5 * 101), truncated as the official code
    assert M.saturation_area(DefectSpec("r", 252, 1.0, True), 77) == 77.0
    assert M.saturation_area(relative, 1) == 1.0  # int(0.5) = 0 is raised to one pixel
    assert M.saturation_area(absolute, 100) == 30.0
    assert M.saturation_area(absolute, 20) == 20.0  # min(threshold, area)
    assert M.saturation_area(absolute, 100, pixel_scale=0.25) == 7.5  # map has 1/4 of the pixels
    assert M.saturation_area(absolute, 0) == 0.0


def _write_loco_image(tmp_path: Path, masks: dict[str, np.ndarray]) -> SourceImage:
    refs = []
    for name, arr in masks.items():
        path = tmp_path / f"{name}.png"
        write_png(path, arr.astype(np.uint8))
        refs.append(MaskRef(path))
    return SourceImage("test/logical_anomalies/000", tmp_path / "img.png", "test", "logical_anomalies", 1, tuple(refs))


def _loco_index(tmp_path: Path) -> DatasetIndex:
    defects = (DefectSpec("missing", 254, 100, False), DefectSpec("extra", 250, 0.5, True))
    return DatasetIndex("mvtec_loco", "demo", tmp_path, [], defects=defects)


def test_load_loco_regions_resizes_and_scales_saturation(tmp_path):
    a = np.zeros((40, 20), dtype=np.uint8)
    a[0:20, 0:10] = 254  # 200 px, absolute 100
    b = np.zeros((40, 20), dtype=np.uint8)
    b[10:30, 4:20] = 250  # 320 px, relative 0.5; overlaps a
    source = _write_loco_image(tmp_path, {"000": a, "001": b})
    masks, sats = M.load_loco_regions(source, _loco_index(tmp_path), (20, 10))
    assert [m.shape for m in masks] == [(20, 10), (20, 10)]
    assert masks[0].sum() == 50 and masks[1].sum() == 80 and (masks[0] & masks[1]).any()
    assert sats == (25.0, 40.0)  # 100 px * (200 / 800), int(0.5 * 80)
    full_masks, full_sats = M.load_loco_regions(source, _loco_index(tmp_path), (40, 20))
    assert np.array_equal(full_masks[0], a == 254) and full_sats == (100.0, 160.0)  # official values


def test_load_loco_regions_errors(tmp_path):
    index = _loco_index(tmp_path)
    unknown = np.zeros((8, 8), dtype=np.uint8)
    unknown[2:4, 2:4] = 200
    with pytest.raises(SynthgenError, match="defect value 200 is not in defects_config.json"):
        M.load_loco_regions(_write_loco_image(tmp_path, {"u": unknown}), index, (8, 8))
    mixed = unknown.copy()
    mixed[0, 0] = 254
    with pytest.raises(SynthgenError, match="several defect values"):
        M.load_loco_regions(_write_loco_image(tmp_path, {"m": mixed}), index, (8, 8))
    with pytest.raises(SynthgenError, match="no defect pixels"):
        M.load_loco_regions(_write_loco_image(tmp_path, {"e": np.zeros((8, 8))}), index, (8, 8))
    no_masks = SourceImage("test/structural_anomalies/001", tmp_path / "x.png", "test", "structural_anomalies", 1)
    with pytest.raises(SynthgenError, match="no ground-truth masks"):
        M.load_loco_regions(no_masks, index, (8, 8))
    good = SourceImage("test/good/000", tmp_path / "g.png", "test", "good", 0)
    assert M.load_loco_regions(good, index, (8, 8)) == ((), ())


def test_load_loco_regions_on_real_juice_bottle(loco_root):
    category = loco_root / "juice_bottle"
    defects = tuple(
        DefectSpec(d["defect_name"], d["pixel_value"], float(d["saturation_threshold"]), d["relative_saturation"])
        for d in json.loads((category / "defects_config.json").read_text())
    )
    index = DatasetIndex("mvtec_loco", "juice_bottle", loco_root, [], defects=defects)
    mask_path = category / "ground_truth" / "logical_anomalies" / "000" / "000.png"
    source = SourceImage(
        "test/logical_anomalies/000",
        category / "test" / "logical_anomalies" / "000.png",
        "test",
        "logical_anomalies",
        1,
        (MaskRef(mask_path, 255),),
    )
    # Full resolution (1600 x 800): the official saturation of value 255 (missing_top_label, 70400 px).
    (full,), (full_sat,) = M.load_loco_regions(source, index, (1600, 800))
    assert full.sum() == 187976 and full_sat == 70400.0
    # 256 x 128 keeps 1/39.0625 of the pixels; the saturation keeps covering the same part of the region.
    (small,), (small_sat,) = M.load_loco_regions(source, index, (256, 128))
    scale = 256 * 128 / (1600 * 800)
    assert small_sat == pytest.approx(70400 * scale)
    assert small.sum() == pytest.approx(187976 * scale, rel=0.02)


# ----------------------------------------------------------------------------------- LOCO report


def test_loco_report_kinds_and_mean():
    rng = np.random.default_rng(11)
    shape = (8, 8)
    types = ["good", "good", "logical_anomalies", "logical_anomalies", "structural_anomalies"]
    maps = rng.random((5, *shape))
    truths = [M.SaturatedRegions((), ())] * 2 + [
        M.SaturatedRegions(random_rectangles(rng, shape, 2), [4, 6]) for _ in range(3)
    ]
    report = M.loco_report(maps, types, truths, fpr_limits=(0.05, 0.3))
    logical = [0, 1, 2, 3]
    assert report["logical_anomalies"]["image_auroc"] == pytest.approx(
        roc_auc_score([0, 0, 1, 1], maps[logical].max(axis=(1, 2)))
    )
    assert report["logical_anomalies"]["au_spro"][0.3] == pytest.approx(
        ref_au_spro(maps[logical], [truths[i] for i in logical], 0.3), abs=1e-9
    )
    assert report["structural_anomalies"]["au_spro"][0.05] == M.au_spro(maps[[0, 1, 4]], [truths[i] for i in (0, 1, 4)])
    union = np.any(truths[4].masks, axis=0)
    assert report["structural_anomalies"]["pixel_auroc"] == pytest.approx(
        roc_auc_score(np.concatenate([np.zeros(128), union.ravel()]), maps[[0, 1, 4]].ravel())
    )
    for key in ("image_auroc", "pixel_auroc"):
        assert report["mean"][key] == pytest.approx(
            0.5 * (report["logical_anomalies"][key] + report["structural_anomalies"][key])
        )
    json.dumps(report)  # synthgen-eval writes it as JSON


def test_loco_report_missing_kind_gives_none():
    rng = np.random.default_rng(12)
    maps = rng.random((3, 6, 6))
    region = np.zeros((6, 6), dtype=bool)
    region[:2, :2] = True
    truths = [M.SaturatedRegions((), ()), M.SaturatedRegions((), ()), M.SaturatedRegions([region], [4])]
    report = M.loco_report(maps, ["good", "good", "logical_anomalies"], truths, image_scores=[0.1, 0.2, 0.9])
    assert report["logical_anomalies"]["image_auroc"] == 1.0
    assert report["structural_anomalies"] == {"image_auroc": None, "pixel_auroc": None, "au_spro": {0.05: None}}
    assert report["mean"] == {"image_auroc": None, "pixel_auroc": None, "au_spro": {0.05: None}}
    with pytest.raises(SynthgenError, match="not MVTec LOCO test folders"):
        M.loco_report(maps, ["good", "good", "broken"], truths)


# -------------------------------------------------------------------------------- range and NaN


@pytest.mark.parametrize("seed", range(30))
def test_metrics_stay_in_unit_interval_and_never_nan(seed):
    rng = np.random.default_rng(400 + seed)
    shape = (int(rng.integers(1, 7)), int(rng.integers(1, 7)))
    n = int(rng.integers(1, 4))
    kind = seed % 3  # random, constant, or extreme-valued scores
    maps = rng.random((n, *shape)) if kind == 0 else np.full((n, *shape), 3.0)
    if kind == 2:
        maps = rng.choice([-1e300, 0.0, 1e300, 1e-300], size=(n, *shape))
    gts = rng.random((n, *shape)) < rng.random()
    truths = [M.SaturatedRegions([g], [float(rng.uniform(0.1, 50))]) for g in gts]
    values = [
        M.pixel_auroc(maps, gts),
        M.pixel_average_precision(maps, gts),
        M.au_pro(maps, gts, fpr_limit=float(rng.uniform(0.01, 1))),
        M.au_spro(maps, truths, fpr_limit=float(rng.uniform(0.01, 1))),
        M.image_auroc(maps.reshape(n, -1).max(1), gts.reshape(n, -1).any(1)),
        M.image_average_precision(maps.reshape(n, -1).max(1), gts.reshape(n, -1).any(1)),
    ]
    for v in values:
        assert v is None or (isinstance(v, float) and 0.0 <= v <= 1.0 and not math.isnan(v))
    if kind == 1 and values[0] is not None:
        assert values[0] == 0.5  # constant scores


def test_partial_area_interpolates_at_the_limit_and_handles_vertical_steps():
    fpr = np.array([0.0, 0.0, 0.2, 0.2, 0.6, 1.0])
    y = np.array([0.0, 0.4, 0.6, 0.8, 0.9, 1.0])
    for limit in (0.1, 0.2, 0.3, 0.6, 0.75, 1.0):
        assert M.partial_area(fpr, y, limit) / limit == pytest.approx(ref_partial_area(fpr, y, limit), abs=1e-12)


# ----------------------------------------------------------------------------------------- speed


def test_speed_100_maps_256():
    """100 maps of 256x256: every metric is one sort, not a loop over thresholds (minutes)."""
    rng = np.random.default_rng(500)
    maps = rng.random((100, 256, 256)).astype(np.float32)
    gts = np.zeros((100, 256, 256), dtype=bool)
    gts[:50, 100:140, 60:160] = True
    gts[:50, 10:30, 10:20] = True
    maps[gts] += 0.3
    # two overlapping regions per anomalous image (the whole anomaly and its upper half)
    upper = np.zeros((256, 256), dtype=bool)
    upper[:128] = True
    truths = [
        M.SaturatedRegions([g, g & upper], [1500.0, 300.0]) if g.any() else M.SaturatedRegions((), ())
        for g in gts
    ]
    timings = {}
    for name, call in {
        "pixel_auroc": lambda: M.pixel_auroc(maps, gts),
        "pixel_ap": lambda: M.pixel_average_precision(maps, gts),
        "au_pro": lambda: M.au_pro(maps, gts),
        "au_spro": lambda: M.au_spro(maps, truths),
    }.items():
        start = time.perf_counter()
        value = call()
        timings[name] = time.perf_counter() - start
        assert 0.0 < value < 1.0
    print("seconds for 100 maps of 256x256:", {k: round(v, 2) for k, v in timings.items()})
    assert sum(timings.values()) < 60.0
