"""The real-pixel renderer (``--renderer real``): real texture inside an edit, the network on its seam only.

The inpainting renderer (:mod:`.inpaint`) repaints the whole edit region with a CPU-trained
generator: its fills keep 0.66-0.73 of the photo's high-frequency energy (blurred), and that texture is
what a seam probe learns. Where real pixels exist, this renderer uses them (issue 27):

- replace: the region shows the other normal image's real pixels, under the same augmentation A
  (flip or resize, :func:`generator.strategies.logical.augment_photo`) as the edges that were pasted;
- merge: the other image's real pixels where, under A, it has an object (its region map's labels
  > 0), the photo elsewhere: the merged edges appear as the object they belong to;
- remove: the region filled from the photo's own texture elsewhere (:func:`texture_fill`), the
  source chosen so that its edges match the edited (absent) edges and its surroundings match the
  region's ring;
- the whole ``footprint`` (the pixels given new content) is then pasted into the photo, and the
  edge-guided inpainting generator renders only a band around the footprint's outline, conditioned
  on the edited edges (:func:`render_seam_band`): the interior is real texture, the seam is learned.
  In the band the network supplies only a low-frequency correction (the join); the fine detail stays
  the real pixels', so no pixel of a sample carries the CPU-trained network's smeared texture.

Identity samples (the seam guard) paste the photo into itself and render the same band from the
unedited edges, so they carry the same trace as the edits and are stored as normals. With the
``tps`` option, the content is warped with the sample's TPS together with the photo and its edges.

The content is composed on the CPU in the strategy's draw (it needs the other image's pixels and
regions); :func:`render_seam_band` is the batched device part. The generator is the inpainting
renderer's (same file, same auto-training): :class:`RealPixelModel` wraps an
:class:`.inpaint.InpaintModel` so the strategy can tell which renderer the build uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
import torch

from .inpaint import InpaintModel, dilate, holes_and_weights, inpaint_tensor
from .layers import gaussian_kernel, separable_blur

#: half-width in px of the band the network renders around the footprint's outline: the hole is the
#: outline (1 px on either side) dilated by this, and the blend weight is 1 within half of it.
#: Wide enough for the generator's receptive field to join the two textures (the inpainting
#: renderer's own feather zone is HOLE_DILATION // 2 = 3 px), narrow against the regions (arbitrary
#: shapes have a shortest side of 1/16 of the image: 8 px at 128)
SEAM_BAND = 4
#: standard deviation in px of the Gaussian that low-passes the generator's correction in the seam
#: band (:func:`render_seam_band`): the band's half-width, so the correction is no more detailed than
#: a join across the band needs, and every finer detail stays the photo's or the pasted content's
#: own. Chosen on the demo with the seam probe (benchmarks/seam_probe.py, 48 identity samples at
#: 256 px, seeds 0-2, before the colour cast was taken out): sigma = SEAM_BAND / 2 left an AUROC of
#: 0.56-0.62, SEAM_BAND 0.54-0.59
DETAIL_SIGMA = SEAM_BAND
#: texture_fill: width in px of the ring around the region whose pixels the copied texture must continue
RING = 4
#: texture_fill: weight of the edge term (edge probabilities in [0, 1]) against the ring's colour term
#: (RGB in [0, 1]): equal, so a source whose edges disagree everywhere costs as much as one whose
#: surroundings differ by the full range
EDGE_WEIGHT = 1.0


@dataclass(frozen=True)
class RealPixelModel:
    """The build's renderer when it is ``real``: the inpainting generator that renders the seam band."""

    inpainter: InpaintModel
    #: the real photo stays outside the edit (logical.py asks this instead of the model's type)
    repaints_whole_image: ClassVar[bool] = False
    #: the --renderer this model renders for (recorded in every sample's params)
    renderer_name: ClassVar[str] = "real"

    @property
    def sha256(self) -> str:
        return self.inpainter.sha256


def outline(footprints: torch.Tensor) -> torch.Tensor:
    """(B, H, W) {0, 1}: pixels within 1 px of a footprint's border, inside or outside."""
    inner = 1 - dilate(1 - footprints.float(), 1)
    return dilate(footprints, 1) - inner


def render_seam_band(model: RealPixelModel, content: torch.Tensor, edges: torch.Tensor,
                     footprints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sample (B, 3, H, W), hole (B, H, W)): ``content`` (the photo with the real pixels pasted into
    the footprint) with a band of ``SEAM_BAND`` px around each footprint's outline re-rendered by the
    inpainting generator from ``edges`` (B, 1, H, W). Outside the band every pixel is ``content``'s.
    Each sample depends on its own inputs only (the generator's windows, :func:`.inpaint.render_window`).

    Two frequency bands, as in multi-band blending (Burt and Adelson, 1983): the network contributes
    only its correction of ``content`` blurred by a Gaussian of ``DETAIL_SIGMA`` (the smooth join of
    the two sides' colours, which is what it learned), and every finer detail stays ``content``'s.
    A CPU-trained generator's own fine texture is a smear (it keeps 0.66-0.73 of the photo's
    high-frequency energy) and is what a probe on frozen features sees. The correction's mean over
    the band (weighted by the blend) is taken out: a join moves the two sides' colours towards each
    other, and what the band as a whole gains is the generator's own colour cast (about +0.016 in
    brightness with juice_bottle's CPU preset), not part of any join. Re-rendering a region from its
    own edges by a perfect generator (correction 0) gives the photo back exactly."""
    rendered, hole = inpaint_tensor(model.inpainter, content, edges, outline(footprints), dilation=SEAM_BAND)
    content = content.to(rendered.device, torch.float32)
    # the blur reaches 3 sigma past the band: the blend weight (1 on the band's core, falling to 0
    # inside it) keeps every pixel outside the band content's
    _, weight = holes_and_weights(outline(footprints.to(rendered.device, torch.float32)), SEAM_BAND)
    correction = gaussian_blur(rendered - content, DETAIL_SIGMA)
    w = weight[:, None]
    # no colour cast (see above): the correction's blend-weighted mean over the band is 0
    correction = correction - (w * correction).sum((2, 3), keepdim=True) / w.sum((2, 3), keepdim=True).clamp(min=1)
    return (content + w * correction).clamp(0, 1), hole


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, C, H, W) blurred by a Gaussian of ``sigma`` px (3 sigma either side)."""
    return separable_blur(images, gaussian_kernel(2 * math.ceil(3 * sigma) + 1, sigma, images.device, images.dtype))


def texture_fill(photo: np.ndarray, region: np.ndarray, edges: np.ndarray, target_edges: np.ndarray) -> tuple[np.ndarray, list[int] | None]:
    """(filled photo (H, W, 3) uint8, source offset [dy, dx] or None): ``region`` refilled with the
    photo's own pixels from elsewhere, one offset for the whole region (an exemplar copy).

    The offset minimises, over every placement of the region whose ring-widened copy lies inside
    the image and off the region itself: the mean squared colour difference between the photo's
    ring of ``RING`` px around the region and the ring at the source (the copy continues its
    surroundings), plus ``EDGE_WEIGHT`` times the mean squared difference between the source's
    edges (``edges``, uint8 probabilities) and the edited edges the region must show
    (``target_edges``: none for a removal), so a removed label is filled with edge-free texture of
    the same surface. Computed with OpenCV's masked template matching (an FFT correlation), in
    float32. When no placement fits (a region too large to be copied from elsewhere), OpenCV's
    Telea inpainting fills it and the offset is None; an empty region returns the photo.
    """
    h, w = region.shape
    if not region.any():  # a draw that found no region: nothing to fill (render rejects the edit)
        return photo.copy(), None
    widened = cv2.dilate(region.astype(np.uint8), np.ones((2 * RING + 1, 2 * RING + 1), np.uint8)).astype(bool)
    rows, cols = np.flatnonzero(widened.any(1)), np.flatnonzero(widened.any(0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if y1 - y0 >= h or x1 - x0 >= w:
        return _telea(photo, region), None
    box = (slice(y0, y1), slice(x0, x1))
    rgb = photo.astype(np.float32) / 255
    ring = (widened & ~region)[box].astype(np.float32)
    inside = region[box].astype(np.float32)
    colour = cv2.matchTemplate(rgb, np.ascontiguousarray(rgb[box]), cv2.TM_SQDIFF, mask=np.repeat(ring[..., None], 3, 2))
    edge = edges.astype(np.float32) / 255
    target = np.ascontiguousarray(target_edges[box].astype(np.float32) / 255)
    structure = cv2.matchTemplate(edge, target, cv2.TM_SQDIFF, mask=inside)
    # a source overlapping the region (its widened copy) would copy what is being removed
    overlap = cv2.matchTemplate(region.astype(np.float32), widened[box].astype(np.float32), cv2.TM_CCORR)
    cost = colour / max(3 * ring.sum(), 1) + EDGE_WEIGHT * structure / max(inside.sum(), 1)
    cost[overlap > 0.5] = np.inf
    if not np.isfinite(cost).any():
        return _telea(photo, region), None
    sy, sx = np.unravel_index(int(np.argmin(cost)), cost.shape)  # first minimum: deterministic
    dy, dx = int(sy - y0), int(sx - x0)
    filled = photo.copy()
    ys, xs = np.nonzero(region)
    filled[ys, xs] = photo[ys + dy, xs + dx]
    return filled, [dy, dx]


def _telea(photo: np.ndarray, region: np.ndarray) -> np.ndarray:
    return cv2.inpaint(photo, region.astype(np.uint8), RING, cv2.INPAINT_TELEA)
