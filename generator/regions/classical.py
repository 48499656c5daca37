"""A weight-free region proposer (``--regions classical``): graph-based segmentation plus edges.

When no Segment Anything checkpoint is available, candidate regions come from Felzenszwalb and
Huttenlocher's graph-based segmentation (IJCV 2004, via scikit-image), which follows object
boundaries more closely than compact superpixels such as SLIC, whose regular tiles cut objects into
pieces of similar size whatever their content. If an edge map is given (e.g. PiDiNet's, the edges
LogicAL edits), strong edges cut segments: a segment that a closed strong-edge contour crosses
splits into the parts on either side. The resulting partition goes through the same refinement
as SAM's masks (background, small regions), so both methods yield the same kind of region map.
Outputs are labelled ``felzenszwalb`` in manifests, never mistaken for SAM regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import measure
from skimage.segmentation import felzenszwalb

from ..errors import SynthgenError


@dataclass(frozen=True)
class ClassicalParams:
    """Parameters of the weight-free proposer.

    scale, sigma, min_size: Felzenszwalb's k (larger = larger segments), Gaussian pre-smoothing,
        and minimum segment size in pixels. Defaults are the "typical parameters sigma = 0.5,
        k = 500, min = 20" of the authors' reference implementation (segment.cpp README);
        scikit-image rescales ``scale`` to behave like that implementation's k.
    edge_threshold: edge-map values (uint8, 0..255) at or above this are strong edges that cut
        segments. 128 is edge probability 0.5, the usual binarisation of PiDiNet/HED outputs.
    """

    scale: float = 500.0
    sigma: float = 0.5
    min_size: int = 20
    edge_threshold: int = 128

    def __post_init__(self):
        if self.scale <= 0:
            raise SynthgenError(f"regions.classical.scale: must be > 0, got {self.scale}")
        if self.sigma < 0:
            raise SynthgenError(f"regions.classical.sigma: must be >= 0, got {self.sigma}")
        if self.min_size < 1:
            raise SynthgenError(f"regions.classical.min_size: must be >= 1, got {self.min_size}")
        if not 1 <= self.edge_threshold <= 255:
            raise SynthgenError(f"regions.classical.edge_threshold: must be in 1..255, got {self.edge_threshold}")


def classical_masks(
    image: np.ndarray, params: ClassicalParams = ClassicalParams(), edges: np.ndarray | None = None
) -> list[np.ndarray]:
    """Segments of an (H, W, 3) uint8 image as (H, W) bool masks (an exclusive partition).

    ``edges``: optional (H, W) uint8 edge map; its strong edges separate segments.
    """
    segments = felzenszwalb(image, scale=params.scale, sigma=params.sigma, min_size=params.min_size)
    if edges is not None:
        if edges.shape != image.shape[:2]:
            raise ValueError(f"edge map is {edges.shape}, image is {image.shape[:2]}")
        segments = split_along_edges(segments, edges >= params.edge_threshold)
    return [segments == s for s in np.unique(segments)]


def split_along_edges(segments: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Cut each segment along strong-edge pixels, then give each edge pixel to its nearest piece.

    Pieces are 4-connected, so a one-pixel-wide diagonal edge line still separates its two sides.
    Edge pixels are not a region of their own: they join the nearest piece so the result remains
    a complete partition of the image.
    """
    cut = np.where(strong, 0, segments.astype(np.int64) + 1)
    pieces = measure.label(cut, background=0, connectivity=1)
    if pieces.max() == 0:  # everything is a strong edge: nothing to cut along
        return segments
    _, (rows, cols) = ndimage.distance_transform_edt(pieces == 0, return_indices=True)
    return pieces[rows, cols]
