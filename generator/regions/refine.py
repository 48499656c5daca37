"""LogicAL's refinement of over-segmented masks into one exclusive map of candidate regions.

LogicAL (sec. 3.1, "Edge manipulation") takes Segment Anything's masks, which over-segment the
image and overlap, and refines them "by removing background, grouping small regions and merging
overlapped regions" into a map of candidate semantic regions (its Fig. 2d); its supplementary
Fig. 8 further restricts the selection to an extracted foreground. The paper gives no numbers.
This module makes every step an explicit filter over the list of masks, with thresholds expressed
relative to the image (area, perimeter, short side) so that they mean the same at every resolution:

1. drop background masks: too large, hugging the image border, or outside the foreground;
2. merge overlapping masks: duplicates and crossing masks become their union (nested masks, a
   part inside its whole, stay separate);
3. build the exclusive map: where masks still overlap the smaller mask wins, because SAM's
   smaller masks are the more specific parts;
4. group small regions: pieces below the minimum area or width join the region they touch;
   solid pieces that touch none are grouped with nearby ones, and groups still too small, like
   thin seams between background surfaces, are dropped;
5. number the regions 1..K by decreasing area (0 = not a candidate).

The thresholds were validated on synthetic scenes with known objects (tests/test_regions.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import cv2
import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components
from skimage import measure

from ..errors import SynthgenError

MAX_REGIONS = np.iinfo(np.uint16).max


@dataclass(frozen=True)
class RefineParams:
    """Thresholds of the refinement, all relative to the image so they hold at any resolution.

    max_area_fraction: a mask covering more than this fraction of the image is background (or the
        whole scene). LogicAL's supp. Fig. 7 shows that replacing "enormous" parts of the edge map
        collapses the edge-to-image generator, so such a region is no usable candidate either.
        "Most of the image" = more than half.
    max_border_fraction: a mask covering more than this fraction of the image's one-pixel frame is
        background. An object cut by the frame covers at most one side (a quarter of the frame of a
        square image); background surfaces run along two or more sides. 0.3 sits just above one side.
    min_foreground_fraction: when a foreground mask is given (supp. Fig. 8's restriction, e.g. a
        thresholded JND map), a region must have at least this fraction of its pixels inside it.
        Half: the foreground "is not necessary to be perfect" (supp. sec. 6), so the rule is a
        majority vote rather than containment.
    merge_iou: two masks with IoU at or above this are duplicates and merge. 0.7 is the IoU that
        SAM's own automatic mask generator uses to call two masks duplicates (box_nms_thresh).
    part_containment: when at least this fraction of the smaller mask lies inside the larger one,
        the smaller is a part of the larger (label on a bottle) and both stay, unless they are
        duplicates by merge_iou.
    merge_overlap: masks that share at least this fraction of the smaller one without being
        nested are two crossing hypotheses of one thing and merge. Below it the overlap is
        boundary jitter: a 2 px strip along one side of the smallest allowed region (about 11x11
        px at min_area_fraction) is under 0.2 of it.
    min_area_fraction: regions smaller than this fraction of the image are grouped or dropped.
        0.002 is an 11x11 px patch at LogicAL's 256x256 working size: smaller regions hold only a
        few edge pixels, so editing their edges gives no visible anomaly (supp. Fig. 7: "a
        suitable portion of anomaly edges is the key").
    min_width_fraction: pieces narrower than this fraction of the image's short side (6.4 px at
        256) count as small whatever their area. They are the seams left where a mask and its
        slightly larger duplicate or whole disagree by a few pixels of boundary jitter: a ring or
        strip with no interior of its own, which belongs to the object it borders.
    group_gap_fraction: small pieces closer than this fraction of the image's short side (5 px at
        256) form one group, e.g. a cluster of nuts that together make one candidate region.
    """

    max_area_fraction: float = 0.5
    max_border_fraction: float = 0.3
    min_foreground_fraction: float = 0.5
    merge_iou: float = 0.7
    part_containment: float = 0.9
    merge_overlap: float = 0.2
    min_area_fraction: float = 0.002
    min_width_fraction: float = 0.025
    group_gap_fraction: float = 0.02

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not 0.0 < value <= 1.0:
                raise SynthgenError(f"regions.refine.{name}: {value} is not in (0, 1]")
        if self.merge_overlap >= self.part_containment:
            raise SynthgenError(
                f"regions.refine.merge_overlap: {self.merge_overlap} must be below "
                f"part_containment ({self.part_containment})"
            )


def refine_masks(
    masks: Sequence[np.ndarray],
    image_size: tuple[int, int],
    params: RefineParams = RefineParams(),
    foreground: np.ndarray | None = None,
) -> np.ndarray:
    """Turn overlapping boolean masks (H, W) into an exclusive uint16 label map (H, W).

    Labels are 1..K in order of decreasing area; 0 marks pixels that belong to no candidate region.
    ``foreground`` (H, W) bool, optional, restricts candidates to the foreground (supp. Fig. 8).
    """
    height, width = image_size
    stack = _stack_masks(masks, (height, width))
    if foreground is not None and foreground.shape != (height, width):
        raise ValueError(f"foreground is {foreground.shape}, image is {(height, width)}")

    stack = stack[~_is_background(stack, params, foreground)]
    stack = _merge_overlapping(stack, params)
    # A union can grow into background (e.g. two crossing masks spanning the scene): check again.
    stack = stack[~_is_background(stack, params, foreground)]
    labels = _paint_smallest_on_top(stack)
    labels = _group_small_regions(labels, params)
    return _relabel_by_area(labels)


def _stack_masks(masks: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) bool from a list of masks, without the empty ones."""
    if len(masks) == 0:
        return np.zeros((0, *size), dtype=bool)
    for m in masks:
        if m.shape != size:
            raise ValueError(f"mask is {m.shape}, image is {size}")
    stack = np.stack([np.asarray(m, dtype=bool) for m in masks])
    return stack[stack.any(axis=(1, 2))]


def _is_background(
    stack: np.ndarray, params: RefineParams, foreground: np.ndarray | None
) -> np.ndarray:
    """(N,) bool: masks that are too large, hug the image frame, or lie outside the foreground."""
    _, height, width = stack.shape
    areas = stack.sum(axis=(1, 2))
    too_large = areas > params.max_area_fraction * height * width

    frame_sides = (stack[:, 0, :], stack[:, -1, :], stack[:, 1:-1, 0], stack[:, 1:-1, -1])
    on_frame = sum(side.sum(axis=1) for side in frame_sides)
    frame_length = 2 * width + 2 * (height - 2)
    hugs_border = on_frame > params.max_border_fraction * frame_length

    background = too_large | hugs_border
    if foreground is not None:
        inside = (stack & foreground).sum(axis=(1, 2))
        background |= inside < params.min_foreground_fraction * areas
    return background


def _merge_overlapping(stack: np.ndarray, params: RefineParams) -> np.ndarray:
    """Replace each set of duplicate or crossing masks by its union; nested masks stay apart.

    Repeated until stable: a union can duplicate another union (two halves of an object merge
    into the object, which duplicates SAM's slightly larger mask of the same object).
    """
    while True:
        merged = _merge_once(stack, params)
        if len(merged) == len(stack):
            return stack
        stack = merged


def _merge_once(stack: np.ndarray, params: RefineParams) -> np.ndarray:
    n = len(stack)
    if n < 2:
        return stack
    flat = _as_sparse_rows(stack)
    inter = (flat @ flat.T).toarray()  # exact pairwise intersections, cost ~ overlapping pixels
    areas = np.diag(inter).astype(np.float64)
    smaller = np.minimum(areas[:, None], areas[None, :])
    union = areas[:, None] + areas[None, :] - inter
    iou = inter / union
    cover = inter / smaller  # fraction of the smaller mask inside the other

    duplicate = iou >= params.merge_iou
    crossing = (cover >= params.merge_overlap) & (cover < params.part_containment)
    merge = duplicate | crossing
    np.fill_diagonal(merge, False)
    n_groups, group = connected_components(sparse.csr_matrix(merge), directed=False)
    if n_groups == n:
        return stack
    merged = np.zeros((n_groups, *stack.shape[1:]), dtype=bool)
    for i, g in enumerate(group):
        merged[g] |= stack[i]
    return merged


def _as_sparse_rows(stack: np.ndarray) -> sparse.csr_matrix:
    """(N, H*W) sparse 0/1 matrix of the masks, built without a dense integer copy."""
    rows = [np.flatnonzero(m) for m in stack.reshape(len(stack), -1)]
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])])
    indices = np.concatenate(rows)
    data = np.ones(indices.size, dtype=np.int32)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(stack), stack[0].size))


def _paint_smallest_on_top(stack: np.ndarray) -> np.ndarray:
    """int32 label map where each pixel takes the smallest mask covering it (labels 1..N)."""
    labels = np.zeros(stack.shape[1:], dtype=np.int32)
    areas = stack.sum(axis=(1, 2))
    for i in np.argsort(-areas, kind="stable"):
        labels[stack[i]] = i + 1
    return labels


def _group_small_regions(labels: np.ndarray, params: RefineParams) -> np.ndarray:
    """Give every connected piece below the minimum area to a neighbour, a group, or nothing.

    Pieces are connected components of one label, so slivers that the exclusive painting cut off a
    large mask are handled like SAM's small fragments. A piece is small when its area or its width
    is below the minimum. A small piece that touches a large region joins the one it shares the
    longest boundary with (a fragment or seam of that object). Small pieces that touch no large
    region are grouped by proximity, and a group becomes a region when it reaches the minimum area
    (a cluster of small objects); thin ones among them, and groups still too small, are dropped.
    """
    height, width = labels.shape
    min_area = params.min_area_fraction * height * width
    pieces, origin, areas = _pieces(labels)
    wide = _widths(pieces) >= params.min_width_fraction * min(height, width)
    is_large = (areas >= min_area) & wide & (origin > 0)
    final = np.where(is_large, origin, 0)  # final label per piece; 0 = undecided or dropped
    small = np.flatnonzero(~is_large & (origin > 0))
    if small.size == 0:
        return final[pieces]

    _absorb_into_neighbours(pieces, final, small)
    # Isolated seams (thin pieces between two background surfaces) are dropped; isolated small but
    # solid pieces may form a group.
    isolated = small[(final[small] == 0) & wide[small]]
    if isolated.size:
        gap = max(1, round(params.group_gap_fraction * min(height, width)))
        _group_by_proximity(pieces, final, isolated, areas, gap, min_area, next_label=origin.max() + 1)
    return final[pieces]


def _pieces(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected pieces of equal label: piece map, each piece's label, each piece's area.

    Piece 0 is the unlabelled background. 4-connectivity, so a one-pixel diagonal cut separates.
    """
    pieces = measure.label(labels, background=0, connectivity=1)
    origin = np.zeros(pieces.max() + 1, dtype=np.int64)
    origin[pieces.ravel()] = labels.ravel()
    areas = np.bincount(pieces.ravel(), minlength=origin.size)
    return pieces, origin, areas


def _widths(pieces: np.ndarray) -> np.ndarray:
    """Each piece's width in px: the diameter of the largest disc inside it (2 * max distance + 1).

    Distances are measured to the nearest pixel of another piece or of the background; the image
    frame does not count as a boundary, so an object cut by the frame keeps its width.
    """
    padded = np.pad(pieces, 1, mode="edge")
    interior = (
        (padded[1:-1, 1:-1] == padded[:-2, 1:-1]) & (padded[1:-1, 1:-1] == padded[2:, 1:-1])
        & (padded[1:-1, 1:-1] == padded[1:-1, :-2]) & (padded[1:-1, 1:-1] == padded[1:-1, 2:])
    )
    distance = cv2.distanceTransform(interior.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    max_distance = ndimage.maximum(distance, labels=pieces, index=np.arange(pieces.max() + 1))
    return 2 * np.asarray(max_distance) + 1


def _shared_boundaries(pieces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Touching piece pairs (p, q), both orders, with their shared boundary length in pixel pairs."""
    a = np.concatenate([pieces[:, :-1].ravel(), pieces[:-1, :].ravel()]).astype(np.int64)
    b = np.concatenate([pieces[:, 1:].ravel(), pieces[1:, :].ravel()]).astype(np.int64)
    touching = (a != b) & (a > 0) & (b > 0)
    low, high = np.minimum(a[touching], b[touching]), np.maximum(a[touching], b[touching])
    base = int(pieces.max()) + 1
    codes, lengths = np.unique(low * base + high, return_counts=True)
    p, q = codes // base, codes % base
    return np.concatenate([p, q]), np.concatenate([q, p]), np.concatenate([lengths, lengths])


def _absorb_into_neighbours(pieces: np.ndarray, final: np.ndarray, small: np.ndarray) -> None:
    """Small pieces join the labelled neighbour with the longest shared boundary (in place).

    Runs in rounds until nothing changes, so a chain of fragments leading to an object joins it
    too; within a round every piece decides from the previous round's labels (order-independent).
    """
    p, q, length = _shared_boundaries(pieces)
    pending = np.zeros(len(final), dtype=bool)
    pending[small] = True
    while True:
        usable = pending[p] & (final[q] > 0)
        if not usable.any():
            return
        cp, cq, cl = p[usable], q[usable], length[usable]
        order = np.lexsort((cq, -cl, cp))  # per piece: longest boundary first, ties to lower id
        cp, cq = cp[order], cq[order]
        first = np.concatenate([[True], cp[1:] != cp[:-1]])
        final[cp[first]] = final[cq[first]]
        pending[cp[first]] = False


def _group_by_proximity(
    pieces: np.ndarray,
    final: np.ndarray,
    isolated: np.ndarray,
    areas: np.ndarray,
    gap: int,
    min_area: float,
    next_label: int,
) -> None:
    """Group isolated small pieces less than ``gap`` px apart; groups of min_area become regions.

    Dilating every piece by gap/2 makes pieces that are less than gap apart touch.
    """
    members = np.isin(pieces, isolated)
    radius = max(1, gap // 2)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    _, group_map = cv2.connectedComponents(cv2.dilate(members.astype(np.uint8), disc), connectivity=8)
    group_of_piece = np.zeros(len(final), dtype=np.int64)
    group_of_piece[pieces[members]] = group_map[members]
    groups = group_of_piece[isolated]
    group_area = np.bincount(groups, weights=areas[isolated])
    for group in np.unique(groups):
        if group_area[group] >= min_area:
            final[isolated[groups == group]] = next_label
            next_label += 1


def _relabel_by_area(labels: np.ndarray) -> np.ndarray:
    """uint16 map with labels 1..K ordered by decreasing area (ties: lower old label first)."""
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    old = np.flatnonzero(areas)
    if old.size > MAX_REGIONS:
        raise ValueError(f"{old.size} regions exceed the uint16 label range")
    order = old[np.argsort(-areas[old], kind="stable")]
    lut = np.zeros(areas.size, dtype=np.uint16)
    lut[order] = np.arange(1, order.size + 1, dtype=np.uint16)
    return lut[labels]
