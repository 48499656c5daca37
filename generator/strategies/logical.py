"""LogicAL: anomalies made by editing a normal image's edge map and rendering it back to a photo.

LogicAL (Zhao, sec. 3.1; supp. sec. 6 and 8) selects regions of the normal edge map E_j, edits the
edges inside them, and turns the edited map into the anomaly image with an edge-to-image generator
(generator/models/e2i*.py) trained on the class's normal (edge, photo) pairs.

Region selection (``region``):
- semantic: one candidate region of the precomputed exclusive region map (``ctx.maps(j)["regions"]``:
  LogicAL's refined SAM segmentation, or the classical proposer), chosen uniformly, together with
  the regions nested inside it (an object with its parts: :func:`semantic_region`);
- arbitrary: "three regions with different aspect ratios or shapes", here one rotated rectangle,
  one ellipse and one star-shaped polygon, each with side U(1/16, 1/4) of the image's shorter side
  and aspect ratio log-uniform in [1/3, 3], centred on a random edge pixel (a region on blank
  background would edit nothing). The paper gives no sizes; these keep the union of the three well
  below half of the image (supp. Fig. 7: "enormous" edits collapse the generator).

Edge modification, Eq. 1. The paper writes edge maps as white background with dark edges (1 = no
edge), so remove is M + (1 - M) E and merge M (A(E_i) + E_j - 1) + (1 - M) E_j. synthgen's edge maps
are edge probabilities (1 = edge, :mod:`generator.models.edges`); with e = 1 - E the same equations
read:

    remove   e_A = (1 - M) e_j
    replace  e_A = M A(e_i) + (1 - M) e_j
    merge    e_A = M min(A(e_i) + e_j, 1) + (1 - M) e_j

e_i is the first-scale edge map of another normal image of the class (chosen uniformly), A a random
flip (horizontal or vertical) or resize (factor U(0.5, 1.5) about the image centre; the paper gives
no range) with probability one half each. Only the first scale is edited: it is the one the
generator reads (sec. 4.2) and the anomaly edge map is not stored.

Controlled portion (supp. sec. 6: "a suitable portion of anomaly edges is the key"; "as the most of
the original edges remained, the generator derives ... better anomaly images"): the changed edge
mass sum|e_A - e_j| must be at most ``MAX_EDGE_PORTION`` = 1/2 of the normal map's edge mass, i.e.
most of the original edges remain. ``draw`` tries up to ``REGION_TRIES`` regions for one that
changes some edges and stays under the cap.

Ground truth and rejection (sec. 3.2, :mod:`.ssim_mask`): the generator renders both e_j and e_A;
the mask is their SSIM below one half (option ``<strategy>.ssim_threshold``). A sample is rejected
(``accepted`` False, redrawn by the pipeline and counted) when its mask is empty (the edit changed
nothing visible), covers more than
half of the image (the issue's "most of the image"), or when the mean SSIM away from the edited
region (outside M dilated by the SSIM window) is below ``MIN_NORMAL_SSIM``: the generator changed
the image globally, i.e. collapsed (supp. Fig. 7).

The anomaly image is the generator's output for e_A; the reconstruction target stays the real
normal photo (supp. eq. 4: "I ... input normal image"). Extras stored per sample, as the LogicAL
trainer reads them (trainers/logical/data.py): ``edge`` (1, H, W) uint8, the normal image's
first-scale PiDiNet map (the L_edge target), and ``jnd`` (1, H, W) float16, its normalised JND map.

Renderers (``--renderer``, :mod:`generator.models.renderers`). ``inpaint``: the sample is
the real photo with the edit region, dilated, re-rendered by the edge-guided inpainting generator
from the edited edges (:mod:`generator.models.inpaint`); the mask is SSIM(real photo, sample) below
the threshold, restricted to the edit region widened by ``MASK_MARGIN`` = 1 px. Why not the whole
hole: the edit changes the edge map inside the region only; outside it every edge is kept (the
outer half of the region's outline too), so there the generator is asked to repaint the photo as it
was, and what SSIM marks there is rendering error and the SSIM window's 5 px reach across the
region's border. Identity samples re-render the same ring and store it as normal, so marking it in
the edits would teach a detector contradictory labels. The 1 px is the photo's own anti-aliasing:
resampling to the build size spreads an object's boundary over about one pixel on either side of
the region's border. Measured on the demo (benchmarks/bench_logical.py --renderer inpaint, 128 px,
the generator then in use): restricting to the hole left 40% of the mask outside the region (IoU
0.54-0.63 per strategy), with the margin 16-21% (IoU 0.73-0.81); but identity inpaints (no edit)
also had SSIM < 0.5 on 83-89% of the region: most of such a mask was the generator's checkerboard,
not the edit. With today's generator (no checkerboard, trained with paste items; demo preset) and
the visibility test below, 48 samples per strategy: IoU with the region 0.79 for semantic remove,
0.70 semantic replace, 0.57 arbitrary remove, 0.49 arbitrary replace, 0.25 arbitrary merge, 0.59
logical; every semantic merge was rejected (the demo's merges add almost no edge pixels, and the
generator's renders of the edited and unedited maps did not differ at all). The region is an upper
bound of the change: an oracle renderer pasting the other image's real pixels reaches 0.79 / 0.60
for semantic / arbitrary replace and only 0.27 / 0.11 for merges, which change the region only
where the other image has an object (bench_logical.py, oracle column).
Collapse rejection keeps the empty and the over-half-image masks and the edge-portion cap (the
global-collapse test below concerns a renderer that repaints everything, and the inpaint renderer
cannot). In its place, a visibility test: an edit of a region without edges, or one the generator
paints back anyway, leaves a mask made of rendering error alone, an anomaly label on a sample that
shows none. So the region is also re-rendered from its unedited edges (one more generator pass per
edit, batched with the first). Where the edit can show is around the edge pixels it changed (edge
probability moved by at least ``EDGE_CHANGE`` = 1/2), within the SSIM window's reach, on the region
and its margin; there, the edit is kept when the pixels it changes against the unedited re-render
(SSIM below the threshold) are at least ``visible_ratio`` (default ``VISIBLE_RATIO`` = 1) times as
many as those where the unedited re-render differs from the photo: the edit's change is at least the
size of the renderer's own error, whatever the generator and the data. (Counted over the whole
region instead, merges, which add a few lines to a region the renderer re-paints whole, were all
rejected on the demo.) Rejected edits are redrawn and counted like the others; the two shares of
that area are kept in each sample's params (``edit_change``, ``rerender_change``).
``full``: the paper's configuration described above.
``real`` (:mod:`generator.models.real_pixels`): real pixels inside the edit, composed in ``draw``
(:func:`real_content`): replace shows the other image's pixels under the same A as its edges, merge
the other image's pixels where it has an object, remove the photo's own edge-matched texture from
elsewhere; the inpainting generator renders only a band around the outline of what was pasted.
Ground truth, identity samples and acceptance tests are the inpaint renderer's (above), with the
band in place of the hole. Measured against ``inpaint`` with one generator (bench_logical.py, demo
at 128 px, the demo preset stopped at 125 steps, 16 samples per strategy; juice_bottle 256x128, a
300-step cpu generator, 60 samples): mask IoU / the real-pixel oracle's 1.00 semantic remove, 0.97
semantic replace, 0.52 semantic merge (3 of 16 kept; inpaint kept none), 0.98 arbitrary replace,
0.91 arbitrary merge, 0.94 logical; identity re-rendering marks 0.04-0.23 of a region (inpaint
0.07-0.57); juice_bottle semantic remove 29 edits kept of 60 (IoU 0.71) against 3 (0.38). Its seam
band is still the CPU generator's: a linear probe over every painted pixel (seam_probe.py --band
painted) gives AUROC 0.93-0.95 for both renderers on juice_bottle, 0.80-0.82 against 0.85-0.86 on the
demo (256 px, make demo's generator). At full training (make demo's generator, demo builds at
256 px, 48 samples per strategy, logical_mask_iou.py) it had the higher mask IoU for every strategy
(logical 0.57 against 0.41, semantic merge 0.47 against 0.24) with 62 redraws against 186 and no
fallback against 4, so it is the default.

Repaint caps (inpaint and real renderers; options ``<strategy>.max_repaint_image``, default
``MAX_REPAINT_IMAGE``, and ``max_repaint_object``, default ``MAX_REPAINT_OBJECT``): a sample whose
generator repaint (the hole, or the real renderer's band) covers more than that share of the image,
or of the object's extent (:func:`object_extent`), is rejected ("network repaints too much of the
image / object"), redrawn and counted in ``totals.rejections``; identity samples too, so the normals'
repaints stay like the edits'. A CPU generator repainting a whole object paints a blur that a
detector would learn, with a label that marks only part of it (issue 27: a merge over the whole parts
box of the demo, 72 % of the image). The full renderer repaints the whole image by design: no cap.

Whole-part swaps (option ``<strategy>.part_swap=P`` on a strategy that draws semantic replaces,
``--renderer real`` only): that share of semantic replaces takes a whole part (a label, a fill, an
icon: one candidate region with its nested parts, at most ``PART_MAX_OBJECT`` of the object's extent:
a larger one is the object itself) from another normal image of the class, in place,
without augmentation: the same part (:func:`matching_part`, IoU >= ``PART_MATCH_IOU``) of the one,
among ``PART_CANDIDATES`` others, whose part differs most in mean colour, i.e. most likely another
variant. The sample is plausible part by part and breaks the pairing rule (the fill of one juice with
another's label). Real pixels, so the repaint and edge-portion caps exempt it.

Seam guard (``<strategy>.identity_fraction``, default ``IDENTITY_FRACTION`` = 0.5): that share of
samples re-renders its region from the unedited edges and is stored as a normal (label 0, empty
mask, its edge and JND maps kept). Chosen on synthetic validation data, not on real anomalies: on the
demo (a build of identity samples only, benchmarks/seam_probe.py) a logistic regression on frozen
EfficientNet-Lite0 patch features tells re-rendered seam patches from the real photo's at held-out
AUROC 0.95 with the first (checkerboard) generator, 0.74 without checkerboard and 0.78 with today's
(trained with paste items), so the renderer leaves a trace a detector can learn. With a fraction f
of identity samples, a detector scoring that trace alone finds anomalies with precision 1 - f among the
re-rendered samples; f = 0.5 makes the trace say nothing about the label (as many re-rendered
normals as re-rendered anomalies), and matches DRAEM's half-normal convention. The cost is half of
the anomalies per sample drawn (raise ``--num-samples``).

``logical`` is the paper's best mix (Table 3: both region selections, all three edits, no TPS):
each sample draws its region selection and its edit uniformly. Option ``<strategy>.tps=true`` warps
the normal and anomaly edge maps, the photo and the stored maps with one DeepSIM TPS per sample
before generation (Table 3's TPS column; it lowered AU-sPRO on LOCO, hence off by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from scipy import ndimage

from ..errors import SynthgenError
from ..models.e2i import generate_tensor
from ..models.inpaint import dilate, inpaint_tensor
from ..models.real_pixels import RealPixelModel, render_seam_band, texture_fill
from ..models.renderers import INPAINT_HINT
from ..models.tps import apply_tps, draw_tps
from .base import EMPTY_MASK, REJECTED_BECAUSE, ExtraField, Recipe, Rendered, Strategy, StrategyContext, number_option, register_strategy
from .ssim_mask import SSIM_THRESHOLD, SSIM_WINDOW, jnd_map, ssim_masks

REGION_MODES = ("semantic", "arbitrary")
EDITS = ("remove", "replace", "merge")
#: PiDiNet side output the generator is trained on (LogicAL sec. 4.2: the first, most detailed)
EDGE_SCALE = 0
#: the changed edge mass may be at most this share of the normal map's (supp. sec. 6, see above)
MAX_EDGE_PORTION = 0.5
#: share of samples drawn as identity inpaints (the region re-rendered from its own, unedited edges)
#: and stored as normals (label 0, empty mask), so a detector cannot score the renderer's trace
#: (option ``<strategy>.identity_fraction``; see the module docstring for how it was chosen)
IDENTITY_FRACTION = 0.5
#: inpaint renderer: an edit is kept when, around the edge pixels it changed, it changes at least this
#: many times as many pixels (SSIM between the edited and an unedited re-render) as re-rendering alone
#: does (SSIM between the photo and the unedited re-render); option ``<strategy>.visible_ratio``,
#: 0 keeps every edit with a non-empty mask
VISIBLE_RATIO = 1.0
#: a changed edge pixel for the visibility test: its edge probability moved by at least one half
EDGE_CHANGE = 0.5
#: inpaint renderer: the ground truth may reach this many px outside the edit region (the photo's
#: anti-aliased border of the edited object; see the module docstring)
MASK_MARGIN = 1
#: regions tried per draw before giving up (the sample then fails and is redrawn by the pipeline)
REGION_TRIES = 16
#: a mask covering more than this share of the image is a collapse ("most of the image")
MAX_MASK_FRACTION = 0.5
#: mean SSIM of the two generated images away from the edit below this = global collapse. Two renders
#: of edge maps that agree there differ only through the generator's instance normalisation: on the
#: demo (bench_logical.py, tiny generator) accepted edits keep 0.92-0.999 there, while a global
#: collapse drives it towards 0 (tests/test_logical_strategies.py). 0.8 leaves a margin below the former.
MIN_NORMAL_SSIM = 0.8
#: arbitrary regions: side lengths as fractions of the shorter image side, aspect ratio range
ARBITRARY_SIDE = (1 / 16, 1 / 4)
ARBITRARY_ASPECT = 3.0
ARBITRARY_SHAPES = ("rectangle", "ellipse", "polygon")
#: replace/merge augmentation A: resize factor range about the image centre
RESIZE_RANGE = (0.5, 1.5)
#: an edge pixel for centring arbitrary regions: probability at least one half
EDGE_PIXEL = 128
#: inpaint and real renderers: the most the generator may repaint (its hole: the dilated region, or
#: the real renderer's seam band), as a share of the image and of the object (the pixels of the
#: source's candidate regions, labels > 0); a larger repaint is refused (rejected, redrawn, counted).
#: Options ``<strategy>.max_repaint_image`` / ``max_repaint_object``. Chosen on the demo
#: (bench_logical.py --no-repaint-cap, inpaint renderer, 128 px, 86 kept edits): mask IoU 0.78 for
#: repaints under a quarter of the object's extent, 0.66 up to half, 0.51 above (32 edits); a
#: quarter of the image was exceeded by 3. With the caps on, the kept edits' IoU rose (arbitrary
#: replace 0.54 -> 0.61, logical 0.71 -> 0.73). A CPU generator repainting a whole object paints a blur
MAX_REPAINT_IMAGE = 0.25
MAX_REPAINT_OBJECT = 0.5
#: whole-part swaps (option ``<strategy>.part_swap``): the other image's part must overlap the
#: chosen part by at least this IoU to be "the same part" (bottles of one category stand alike)
PART_MATCH_IOU = 0.5
#: whole-part swaps: how many other normal images are compared for the most different-looking part
PART_CANDIDATES = 8
#: whole-part swaps: a part covers at most this share of the object's extent; a larger "part" is the
#: object itself, and swapping a whole object for another normal one makes a normal image (seen on
#: the demo's contact sheet: a whole parts box swapped, labelled anomalous)
PART_MAX_OBJECT = 0.5

EXTRA_FIELDS = {
    "edge": ExtraField(
        shape=lambda h, w: (1, h, w),
        dtype="uint8",
        scale=255.0,
        doc="first-scale PiDiNet edge map of the normal image, round(255 p)",
    ),
    "jnd": ExtraField(
        shape=lambda h, w: (1, h, w),
        dtype="float16",
        doc="normalised NAMM JND map of the normal image in [0, 1] (LogicAL sec. 3.2)",
    ),
}


# --------------------------------------------------------------------------------------------------
# maps and models from the context


def source_maps(ctx: StrategyContext, index: int) -> dict[str, np.ndarray]:
    """The precomputed maps of source ``index``, checked against the maps contract."""
    if ctx.maps is None:
        raise SynthgenError("LogicAL strategies need precomputed edge and region maps; this build has none")
    maps = ctx.maps(index)
    h, w = ctx.image_size
    expected = {"edges": ((4, h, w), np.uint8), "edges_fused": ((h, w), np.uint8), "regions": ((h, w), np.int32)}
    for name, (shape, dtype) in expected.items():
        if name not in maps or maps[name].shape != shape or maps[name].dtype != dtype:
            got = (maps[name].dtype, maps[name].shape) if name in maps else "nothing"
            raise SynthgenError(f"maps of source {index}: '{name}' must be {np.dtype(dtype)} {shape}, got {got}")
    return maps


def e2i_model(ctx: StrategyContext, strategy: str):
    """The build's renderer: an :class:`generator.models.inpaint.InpaintModel` (``--renderer
    inpaint``) or an :class:`generator.models.e2i.E2IModel` (``--renderer full``)."""
    model = ctx.models.get("e2i")
    if model is None:
        raise SynthgenError(f"--e2i: strategy {strategy} needs a generator file; {INPAINT_HINT}")
    return model


# --------------------------------------------------------------------------------------------------
# region selection (CPU, numpy)


def semantic_candidates(regions: np.ndarray) -> np.ndarray:
    """The labels 1..K present in an exclusive region map."""
    labels = np.unique(regions)
    return labels[labels > 0]


def semantic_region(regions: np.ndarray, label: int) -> np.ndarray:
    """The bool (H, W) edit mask of candidate region ``label``: the region with the regions nested in it.

    The exclusive map gives each pixel to the smallest mask covering it (generator/regions/refine.py),
    so an object with parts drawn on it, such as a label with its fruit icon, is a region with holes
    where the parts are. A semantic region is the object, parts included, as SAM's mask of the label
    covers its icon: removing the label's edges but keeping the icon's would leave the generator an
    icon to paint the label back around. So every candidate region lying wholly inside the holes of
    the selected one joins it. Background (label 0) seen through a hole, like the inside of a ring,
    stays out, and so does a region that only reaches into a hole.
    """
    selected = regions == label
    rows, cols = np.flatnonzero(selected.any(1)), np.flatnonzero(selected.any(0))
    if rows.size == 0:
        return selected
    # Holes lie inside the region's bounding box: fill there only (the draw tries up to REGION_TRIES
    # regions per sample, so this stays proportional to the region, not the image).
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    outline = ndimage.binary_fill_holes(selected[box])
    inside = regions[box][outline & ~selected[box]]
    parts, counts = np.unique(inside[inside > 0], return_counts=True)
    if parts.size:
        # a part is nested when all of its pixels are inside the outline
        nested = parts[counts == np.bincount(regions.ravel(), minlength=parts.max() + 1)[parts]]
        selected[box] |= outline & np.isin(regions[box], nested)
    return selected


def draw_arbitrary_shapes(rng: np.random.Generator, edge: np.ndarray) -> list[dict]:
    """Three shapes (one of each kind) centred on random edge pixels, as JSON-able parameters."""
    h, w = edge.shape
    ys, xs = np.nonzero(edge >= EDGE_PIXEL)
    shorter = min(h, w)
    shapes = []
    for kind in ARBITRARY_SHAPES:
        if len(ys):
            k = int(rng.integers(len(ys)))
            centre = (float(xs[k]), float(ys[k]))
        else:
            centre = (float(rng.uniform(0, w)), float(rng.uniform(0, h)))
        side = float(rng.uniform(*ARBITRARY_SIDE)) * shorter
        aspect = float(np.exp(rng.uniform(-np.log(ARBITRARY_ASPECT), np.log(ARBITRARY_ASPECT))))
        shape = {"kind": kind, "centre": centre, "size": (side, side * aspect), "angle": float(rng.uniform(0, 180))}
        if kind == "polygon":  # star-shaped: 5-8 vertices at sorted angles, radii U(0.5, 1) of the half size
            n = int(rng.integers(5, 9))
            shape["vertex_angles"] = np.sort(rng.uniform(0, 2 * np.pi, n)).tolist()
            shape["vertex_radii"] = rng.uniform(0.5, 1.0, n).tolist()
        shapes.append(shape)
    return shapes


def rasterize_shapes(shapes: list[dict], size: tuple[int, int]) -> np.ndarray:
    """The union of the shapes as a bool (H, W) mask."""
    canvas = np.zeros(size, np.uint8)
    for s in shapes:
        (cx, cy), (sw, sh), angle = s["centre"], s["size"], s["angle"]
        if s["kind"] == "rectangle":
            corners = cv2.boxPoints(((cx, cy), (sw, sh), angle))
            cv2.fillPoly(canvas, [np.round(corners).astype(np.int32)], 1)
        elif s["kind"] == "ellipse":
            cv2.ellipse(canvas, (round(cx), round(cy)), (max(1, round(sw / 2)), max(1, round(sh / 2))), angle, 0, 360, 1, -1)
        else:
            t, r = np.asarray(s["vertex_angles"]), np.asarray(s["vertex_radii"])
            x, y = r * sw / 2 * np.cos(t), r * sh / 2 * np.sin(t)
            a = np.radians(angle)
            px = cx + x * np.cos(a) - y * np.sin(a)
            py = cy + x * np.sin(a) + y * np.cos(a)
            cv2.fillPoly(canvas, [np.round(np.stack([px, py], 1)).astype(np.int32)], 1)
    return canvas.astype(bool)


def candidate_regions(rng: np.random.Generator, maps: dict[str, np.ndarray], mode: str):
    """Up to REGION_TRIES edit regions of one source, as (bool (H, W) mask, JSON description): its
    semantic regions with their nested parts in random order (description: the label), or random
    arbitrary shapes."""
    normal = maps["edges"][EDGE_SCALE]
    if mode == "semantic":
        for label in rng.permutation(semantic_candidates(maps["regions"]))[:REGION_TRIES]:
            yield semantic_region(maps["regions"], label), int(label)
    else:
        for _ in range(REGION_TRIES):
            shapes = draw_arbitrary_shapes(rng, normal)
            yield rasterize_shapes(shapes, normal.shape), shapes


# --------------------------------------------------------------------------------------------------
# edge modification (Eq. 1, CPU, uint8 edge probabilities)


def draw_augmentation(rng: np.random.Generator) -> dict:
    """LogicAL's A: a random flip or a random resize, with probability one half each."""
    if rng.random() < 0.5:
        return {"op": "flip", "axis": str(rng.choice(["horizontal", "vertical"]))}
    return {"op": "resize", "scale": float(rng.uniform(*RESIZE_RANGE))}


def augment_edges(edge: np.ndarray, augmentation: dict) -> np.ndarray:
    """A(e_i): the flipped, or resized about the centre (bilinear, no edges outside), edge map."""
    return _augment(edge, augmentation, cv2.BORDER_CONSTANT)


def augment_photo(image: np.ndarray, augmentation: dict) -> np.ndarray:
    """The photo (H, W, 3) under the same A, pixel for pixel where its edge map goes (the inpainting
    generator's training pastes it, generator/training/inpaint.py). Shrinking uncovers a border the
    edge map leaves blank (no edges): the photo's own border is replicated there, which has none either."""
    return _augment(image, augmentation, cv2.BORDER_REPLICATE)


def _augment(array: np.ndarray, augmentation: dict, border: int) -> np.ndarray:
    if augmentation["op"] == "flip":
        return np.ascontiguousarray(array[:, ::-1] if augmentation["axis"] == "horizontal" else array[::-1])
    h, w = array.shape[:2]
    s = augmentation["scale"]
    affine = np.array([[s, 0, (1 - s) * (w - 1) / 2], [0, s, (1 - s) * (h - 1) / 2]])
    return cv2.warpAffine(array, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def edit_edges(normal: np.ndarray, region: np.ndarray, edit: str, candidate: np.ndarray | None) -> np.ndarray:
    """Eq. 1 on uint8 edge probabilities (see the module docstring for the convention)."""
    if edit == "remove":
        inside = np.zeros_like(normal)
    elif edit == "replace":
        inside = candidate
    else:  # merge: the union of both maps' edges, saturating at certain edge
        inside = np.minimum(normal.astype(np.uint16) + candidate, 255).astype(np.uint8)
    return np.where(region, inside, normal)


def edge_portion(normal: np.ndarray, anomaly: np.ndarray) -> float:
    """Changed edge mass as a share of the normal map's edge mass (inf when the map has no edges)."""
    total = float(normal.sum(dtype=np.int64))
    changed = float(np.abs(anomaly.astype(np.int16) - normal).sum(dtype=np.int64))
    return changed / total if total > 0 else float("inf")


def real_content(ctx: StrategyContext, source_index: int, other: int, augmentation: dict | None, region: np.ndarray,
                 edit: str, anomaly_edge: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """The real-pixel renderer's content of an edit (:mod:`generator.models.real_pixels`): (the photo
    with real pixels in the footprint (H, W, 3) uint8, the footprint (H, W) bool, how a removal was
    filled or None). Replace: the other image under A in the whole region; merge: the other image
    under A where it has an object (its regions > 0 under A) inside the region; remove: the photo's
    own texture from elsewhere, matching the edited edges (:func:`texture_fill`)."""
    photo = ctx.source_pixels(source_index)
    if edit == "remove":
        edges = source_maps(ctx, source_index)["edges"][EDGE_SCALE]
        filled, offset = texture_fill(photo, region, edges, anomaly_edge)
        how = {"offset": offset} if offset is not None else {"telea": True} if region.any() else None
        return filled, region, how
    pasted = augment_photo(ctx.source_pixels(other), augmentation)
    footprint = region
    if edit == "merge":
        objects = (source_maps(ctx, other)["regions"] > 0).astype(np.uint8) * 255
        footprint = region & (augment_edges(objects, augmentation) >= 128)
    return np.where(footprint[..., None], pasted, photo), footprint, None


def object_extent(regions: np.ndarray) -> float:
    """The object's share of the image, for the repaint cap: the bounding box of the candidate
    regions (labels > 0), i.e. the extent of what is inspected, parts and the gaps between them
    included (0 when there is no candidate)."""
    rows, cols = np.flatnonzero((regions > 0).any(1)), np.flatnonzero((regions > 0).any(0))
    if rows.size == 0:
        return 0.0
    return float((rows[-1] + 1 - rows[0]) * (cols[-1] + 1 - cols[0]) / regions.size)


def matching_part(regions: np.ndarray, part: np.ndarray) -> int | None:
    """The label of the semantic region of ``regions`` (another image's map) that is the same part
    as ``part`` (bool (H, W)): the candidate with the highest IoU, when that is at least
    PART_MATCH_IOU; None when there is none."""
    best, best_iou = None, PART_MATCH_IOU
    for label in semantic_candidates(regions[part] if part.any() else regions[:0]):
        theirs = semantic_region(regions, int(label))
        overlap = float((theirs & part).sum() / (theirs | part).sum())
        if overlap >= best_iou:
            best, best_iou = int(label), overlap
    return best


def part_swap_region(regions: np.ndarray, their_regions: np.ndarray, params: dict) -> np.ndarray:
    """The edit region of a whole-part swap from its params: the union of both parts."""
    return semantic_region(regions, params["region"]) | semantic_region(their_regions, params["candidate_region"])


# --------------------------------------------------------------------------------------------------
# rendering helpers (device, batched)


def normal_region_ssim(ssim: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (B,) outside each edited region widened by the SSIM window (1 where nothing is left)."""
    outside = 1 - dilate(regions, SSIM_WINDOW)
    count = outside.flatten(1).sum(1)
    total = (ssim * outside).flatten(1).sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.ones_like(total))


def _stack(recipes: list[Recipe], name: str, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.stack([r.arrays[name] for r in recipes])).to(device)


# --------------------------------------------------------------------------------------------------
# the strategies


class _LogicAL(Strategy):
    """Region selection in ``region_modes`` and edits in ``edits``, each drawn uniformly per sample."""

    needs = frozenset({"maps", "models"})
    extra_fields = EXTRA_FIELDS
    region_modes: ClassVar[tuple[str, ...]]
    edits: ClassVar[tuple[str, ...]]

    def draw(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int) -> Recipe:
        options = ctx.options_of(self.name)
        _check_part_swap_renderer(self.name, options, ctx)
        identity = bool(rng.random() < options["identity_fraction"])
        mode = self.region_modes[int(rng.integers(len(self.region_modes)))]
        edit = self.edits[int(rng.integers(len(self.edits)))]
        # drawn only when the option is on, so builds without it keep their random streams
        if not identity and mode == "semantic" and edit == "replace" and options["part_swap"] \
                and rng.random() < options["part_swap"]:
            return self._draw_part_swap(rng, ctx, source_index)
        return self._draw(rng, ctx, source_index, options, identity, mode, edit)

    def redraw(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int, rejected: Recipe) -> Recipe:
        # A rejected edit is redrawn as the same kind of edit (identity or not, region selection,
        # edit): only its region and candidate are drawn again. Were the kind drawn again, every
        # rejection would shift the mix towards what renders most easily (on juice_bottle's
        # ``logical`` build merges fell to 7% of the kept edits instead of a third, and each rejected
        # edit could turn into an identity normal): the configured mix holds among the samples kept,
        # and a kind the generator cannot render shows in the fallback count instead.
        p = rejected.params
        if p.get("part_swap"):
            return self._draw_part_swap(rng, ctx, source_index)
        return self._draw(rng, ctx, source_index, ctx.options_of(self.name), p["edit"] == "identity", p["region_mode"], p["edit"])

    def _draw_part_swap(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int) -> Recipe:
        """A whole-part swap: one of the photo's semantic regions (a label, a fill, an icon) replaced,
        in place, by the same part of another normal image (:func:`matching_part`), the one whose part
        looks most different (mean colour) among up to PART_CANDIDATES others: another variant's part,
        real pixels. The edit region is the union of both parts (:func:`part_swap_region`); the edges
        inside it are the other image's."""
        maps = source_maps(ctx, source_index)
        normal = maps["edges"][EDGE_SCALE]
        photo = ctx.source_pixels(source_index)
        others = [i for i in range(len(ctx.sources)) if i != source_index]
        others = [others[k] for k in rng.permutation(len(others))[:PART_CANDIDATES]]
        best = None  # (colour distance, other image, this photo's label, the other's label, union region)
        extent = object_extent(maps["regions"])
        for part, label in candidate_regions(rng, maps, "semantic"):
            if part.mean() > PART_MAX_OBJECT * extent:
                continue
            for other in others:
                found = matching_part(source_maps(ctx, other)["regions"], part)
                if found is None:
                    continue
                theirs = semantic_region(source_maps(ctx, other)["regions"], found)
                if (part | theirs).mean() > PART_MAX_OBJECT * extent:
                    continue
                distance = float(np.abs(ctx.source_pixels(other)[theirs].mean(0) - photo[part].mean(0)).sum())
                if best is None or distance > best[0]:
                    best = (distance, other, label, found, part | theirs)
            if best is not None:
                break
        params: dict[str, Any] = {"region_mode": "semantic", "edit": "replace", "part_swap": True}
        if best is None:  # no part of this photo has a counterpart: render rejects it ("no edge changed")
            region, anomaly, content = np.zeros(normal.shape, bool), normal, photo
            params.update(region=None, candidate_source=None)
        else:
            distance, other, label, their_label, region = best
            anomaly = edit_edges(normal, region, "replace", source_maps(ctx, other)["edges"][EDGE_SCALE])
            content = np.where(region[..., None], ctx.source_pixels(other), photo)
            params.update(region=int(label), candidate_source=ctx.sources[other].id, candidate_region=int(their_label),
                          colour_distance=round(distance, 2))
        params.update(edge_portion=edge_portion(normal, anomaly), edit_area=float(region.mean()), object_area=extent)
        return Recipe(params, {"normal_edge": normal, "anomaly_edge": anomaly, "region": region, "content": content,
                               "footprint": region})

    def _draw(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int, options: dict[str, Any],
              identity: bool, mode: str, edit: str) -> Recipe:
        maps = source_maps(ctx, source_index)
        normal = maps["edges"][EDGE_SCALE]
        if identity:  # the seam guard: the region re-rendered from its own edges, stored as a normal
            params: dict = {"region_mode": mode, "edit": "identity"}
            region, description = np.zeros(normal.shape, bool), None
            for region, description in candidate_regions(rng, maps, mode):
                if region.any():
                    break
            params.update(region=description, edge_portion=0.0, edit_area=float(region.mean()),
                          object_area=object_extent(maps["regions"]))
            if options["tps"]:
                params["tps"] = draw_tps(rng).tolist()
            arrays = {"normal_edge": normal, "anomaly_edge": normal, "region": region}
            if isinstance(ctx.models.get("e2i"), RealPixelModel):  # the photo pasted into itself
                arrays.update(content=ctx.source_pixels(source_index), footprint=region)
            return Recipe(params, arrays)
        params = {"region_mode": mode, "edit": edit}
        candidate, other = None, source_index
        if edit != "remove":
            others = [i for i in range(len(ctx.sources)) if i != source_index] or [source_index]
            other = others[int(rng.integers(len(others)))]
            params["candidate_source"] = ctx.sources[other].id
            params["augmentation"] = draw_augmentation(rng)
            candidate = augment_edges(source_maps(ctx, other)["edges"][EDGE_SCALE], params["augmentation"])

        # Try regions until one changes some edges and at most MAX_EDGE_PORTION of them; a draw that
        # finds none keeps its last try, which render rejects (the pipeline then redraws).
        region, description, anomaly, portion = np.zeros(normal.shape, bool), None, normal, 0.0
        for region, description in candidate_regions(rng, maps, mode):
            anomaly = edit_edges(normal, region, edit, candidate)
            portion = edge_portion(normal, anomaly)
            if 0 < portion <= MAX_EDGE_PORTION:
                break
        params["region"] = description
        params["edge_portion"] = portion
        params["edit_area"] = float(region.mean())
        params["object_area"] = object_extent(maps["regions"])
        if options["tps"]:
            params["tps"] = draw_tps(rng).tolist()
        arrays = {"normal_edge": normal, "anomaly_edge": anomaly, "region": region}
        if isinstance(ctx.models.get("e2i"), RealPixelModel):
            arrays["content"], arrays["footprint"], fill = real_content(ctx, source_index, other, params.get("augmentation"),
                                                                        region, edit, anomaly)
            if fill is not None:
                params["fill"] = fill
        return Recipe(params, arrays)

    def read_options(self, ctx: StrategyContext) -> dict[str, Any]:
        tps = ctx.option(self.name, "tps", False)
        if not isinstance(tps, bool):
            raise SynthgenError(f"option {self.name}.tps: must be true or false, got {tps!r}")
        options = {"tps": tps, "ssim_threshold": number_option(ctx, self.name, "ssim_threshold", SSIM_THRESHOLD, 0.0, 1.0),
                   "identity_fraction": number_option(ctx, self.name, "identity_fraction", IDENTITY_FRACTION, 0.0, 1.0),
                   "visible_ratio": number_option(ctx, self.name, "visible_ratio", VISIBLE_RATIO, 0.0, 100.0),
                   "max_repaint_image": number_option(ctx, self.name, "max_repaint_image", MAX_REPAINT_IMAGE, 0.0, 1.0),
                   "max_repaint_object": number_option(ctx, self.name, "max_repaint_object", MAX_REPAINT_OBJECT, 0.0, 100.0),
                   "part_swap": number_option(ctx, self.name, "part_swap", 0.0, 0.0, 1.0)}
        if options["part_swap"] and not ("semantic" in self.region_modes and "replace" in self.edits):
            raise SynthgenError(f"option {self.name}.part_swap: whole-part swaps are semantic replaces; "
                                f"{self.name} draws no semantic replace")
        _check_part_swap_renderer(self.name, options, ctx)
        return options

    def identity_share(self, options: Mapping[str, Any]) -> float:
        return options["identity_fraction"]

    def render(self, images: torch.Tensor, recipes: list[Recipe], ctx: StrategyContext) -> Rendered:
        model = e2i_model(ctx, self.name)
        device = images.device
        normal_edge = _stack(recipes, "normal_edge", device)[:, None].float() / 255
        anomaly_edge = _stack(recipes, "anomaly_edge", device)[:, None].float() / 255
        regions = _stack(recipes, "region", device).float()
        real = isinstance(model, RealPixelModel)
        if real:  # the real pixels composed by draw (real_content), and where they differ from the photo
            content = _stack(recipes, "content", device).permute(0, 3, 1, 2).float() / 255
            footprints = _stack(recipes, "footprint", device).float()
        normals = None
        if "tps" in recipes[0].params:  # one option per build: all recipes agree
            shifts = np.array([r.params["tps"] for r in recipes])
            stack = [normal_edge, anomaly_edge, regions[:, None], images] + ([content, footprints[:, None]] if real else [])
            warped = apply_tps(torch.cat(stack, 1), shifts)
            normal_edge, anomaly_edge, regions = warped[:, :1], warped[:, 1:2], (warped[:, 2] >= 0.5).float()
            normals = images = warped[:, 3:6].clamp(0, 1)
            if real:
                content, footprints = warped[:, 6:9].clamp(0, 1), (warped[:, 9] >= 0.5).float()

        identity = torch.tensor([r.params["edit"] == "identity" for r in recipes], device=device)
        portions = torch.tensor([r.params["edge_portion"] for r in recipes], device=device)
        # whole-part swaps paste real pixels: the caps that keep the generator's repaint small exempt them
        part_swaps = torch.tensor([bool(r.params.get("part_swap")) for r in recipes], device=device)
        options = ctx.options_of(self.name)
        threshold = options["ssim_threshold"]
        if not model.repaints_whole_image:  # inpaint and real: the real photo outside the edit
            # The sample is the real photo with the dilated region re-rendered (inpaint), or with the
            # real pixels of the edit pasted and a band around their outline re-rendered (real);
            # ground truth: where it differs from the real photo (SSIM below the threshold) on the
            # edit region and its anti-aliased border (module docstring: why not the whole hole). For
            # the visibility test the edits are also rendered unedited (the photo's own pixels and
            # edges), in the same pass (an identity sample is its own unedited re-render: it has
            # nothing to test).
            edits = torch.nonzero(~identity).flatten()
            edges = torch.cat([anomaly_edge, normal_edge[edits]])
            if real:
                both, holes = render_seam_band(model, torch.cat([content, images[edits]]), edges, torch.cat([footprints, footprints[edits]]))
            else:
                both, holes = inpaint_tensor(model, torch.cat([images, images[edits]]), edges, torch.cat([regions, regions[edits]]))
            # what the network repainted, as a share of the image and of the object (no object check
            # where the source has no candidate regions)
            repaint = holes[: len(recipes)].to(device).flatten(1).mean(1)
            objects = torch.tensor([r.params["object_area"] for r in recipes], device=device)
            area_checks = [("network repaints too much of the image", part_swaps | (repaint <= options["max_repaint_image"])),
                           ("network repaints too much of the object",
                            part_swaps | (objects == 0) | (repaint <= options["max_repaint_object"] * objects))]
            anomalies, rerendered = both[: len(recipes)].to(device), both[len(recipes):].to(device)
            allowed = dilate(regions, MASK_MARGIN)
            masks, _ = ssim_masks(images, anomalies, threshold)
            masks = masks.to(device) * allowed
            # where the edit can show: around the certain edge pixels it changed, within the SSIM
            # window's reach, on the region and its margin
            reach = dilate((anomaly_edge - normal_edge).abs()[:, 0] >= EDGE_CHANGE, SSIM_WINDOW // 2) * allowed
            changed_area, noise_area = torch.zeros(len(recipes), device=device), torch.zeros(len(recipes), device=device)
            if len(edits):
                changed = ssim_masks(rerendered, anomalies[edits], threshold)[0].to(device) * reach[edits]
                noise = ssim_masks(images[edits], rerendered, threshold)[0].to(device) * reach[edits]
                changed_area[edits], noise_area[edits] = changed.flatten(1).sum(1), noise.flatten(1).sum(1)
            reach_area = reach.flatten(1).sum(1).clamp(min=1)
            notes_extra = {"edit_change": (changed_area / reach_area).cpu().tolist(),
                           "rerender_change": (noise_area / reach_area).cpu().tolist(), "repaint_area": repaint.cpu().tolist()}
            # an edit must show more than re-rendering alone
            renderer_checks = [("edit shows nothing", changed_area > 0),
                               ("edit shows less than re-rendering alone", changed_area >= options["visible_ratio"] * noise_area)]
        else:
            generated = generate_tensor(model, torch.cat([normal_edge, anomaly_edge]))
            generated_normal, anomalies = generated.split(len(recipes))
            masks, ssim = ssim_masks(generated_normal, anomalies, threshold)
            masks, anomalies = masks.to(device), anomalies.to(device)
            normal_ssim = normal_region_ssim(ssim.to(device), regions)
            notes_extra = {"normal_ssim": normal_ssim.cpu().tolist()}
            # the full renderer may change the whole image: reject global collapse
            renderer_checks = [("image changed outside the edit (collapse)", normal_ssim >= MIN_NORMAL_SSIM)]
            area_checks = []  # the full renderer repaints the whole image by design
        masks = masks * ~identity[:, None, None]  # identity samples are normals: empty mask, label 0
        area = masks.flatten(1).mean(1)
        # acceptance: (the reason a sample is rejected for, whether each sample passes), in the order
        # they are tested; a rejected sample's note names the first check it failed
        # The repaint caps come first and hold for identity samples too (they are redrawn like edits):
        # the normals' repaints must look like the edits'.
        checks: list[tuple[str, torch.Tensor]] = [
            *area_checks,
            ("no edge changed", portions > 0),
            ("edit changes over half of the edges", part_swaps | (portions <= MAX_EDGE_PORTION)),
            (EMPTY_MASK, area > 0), ("mask over half of the image", area <= MAX_MASK_FRACTION), *renderer_checks]
        area_ok = torch.stack([passed for _, passed in area_checks]).all(0) if area_checks else torch.ones_like(identity)
        accepted = torch.stack([passed for _, passed in checks]).all(0)
        renderer = model.renderer_name
        notes = [{"mask_area": a, "renderer": renderer} for a in area.cpu().tolist()]
        for name, values in notes_extra.items():
            for note, value in zip(notes, values):
                note[name] = value
        accepted = (accepted | identity) & area_ok
        for k in torch.nonzero(~accepted).flatten().tolist():
            notes[k][REJECTED_BECAUSE] = next(reason for reason, passed in checks if not passed[k])
        return Rendered(
            images=anomalies,
            masks=masks,
            normals=normals,
            extras={"edge": normal_edge, "jnd": jnd_map(images)[:, None]},
            accepted=accepted,
            notes=notes,
        )


def _check_part_swap_renderer(name: str, options: Mapping[str, Any], ctx: StrategyContext) -> None:
    """Whole-part swaps paste real pixels: with another renderer loaded they are a one-line error. (The
    plan parses options before any model is loaded; draw checks again, with the build's model.)"""
    if options["part_swap"] and ctx.models and not isinstance(ctx.models.get("e2i"), RealPixelModel):
        raise SynthgenError(f"option {name}.part_swap: whole-part swaps paste real pixels; use --renderer real")


def _summary(edit: str, mode: str) -> str:
    return f"LogicAL: {edit} edges in {mode} regions, rendered by the edge-to-image generator"


@register_strategy
class SemanticRemove(_LogicAL):
    name, region_modes, edits, summary = "semantic-remove", ("semantic",), ("remove",), _summary("remove", "semantic")


@register_strategy
class SemanticReplace(_LogicAL):
    name, region_modes, edits, summary = "semantic-replace", ("semantic",), ("replace",), _summary("replace", "semantic")


@register_strategy
class SemanticMerge(_LogicAL):
    name, region_modes, edits, summary = "semantic-merge", ("semantic",), ("merge",), _summary("merge", "semantic")


@register_strategy
class ArbitraryRemove(_LogicAL):
    name, region_modes, edits, summary = "arbitrary-remove", ("arbitrary",), ("remove",), _summary("remove", "arbitrary")


@register_strategy
class ArbitraryReplace(_LogicAL):
    name, region_modes, edits, summary = "arbitrary-replace", ("arbitrary",), ("replace",), _summary("replace", "arbitrary")


@register_strategy
class ArbitraryMerge(_LogicAL):
    name, region_modes, edits, summary = "arbitrary-merge", ("arbitrary",), ("merge",), _summary("merge", "arbitrary")


@register_strategy
class Logical(_LogicAL):
    name, region_modes, edits = "logical", REGION_MODES, EDITS
    summary = "LogicAL's mix (Table 3): semantic or arbitrary regions, remove/replace/merge, drawn per sample"
