"""How the methods turn per-position scores into anomaly maps and image scores.

Feature-space methods (PBAS Eq. 12, SimpleNet's inference; used by PBAS, GLASS and the feature-level
ensemble): patch scores on the (H_m, W_m) grid are upsampled bilinearly to the image size, then
smoothed by a Gaussian of sigma 4 pixels (the official code's ``RescaleSegmentor``:
scipy.ndimage.gaussian_filter, mode "reflect", truncate 4). The image score is the maximum patch
score (Eq. 11), taken before upsampling.

Pixel-space methods (DRAEM's test_DRAEM.py; used by reconstruction and LogicAL): the image score is
the maximum of the anomaly map after a mean filter whose width :func:`score_kernel` gives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Official code (common.RescaleSegmentor): Gaussian smoothing of the upsampled map, sigma 4.
SMOOTHING_SIGMA = 4.0
#: scipy.ndimage.gaussian_filter's default kernel radius in sigmas.
GAUSSIAN_TRUNCATE = 4.0
#: DRAEM test_DRAEM.py: avg_pool2d(..., 21, stride=1, padding=21 // 2) at 256x256.
SCORE_KERNEL_AT_256 = 21


def gaussian_kernel(sigma: float, truncate: float = GAUSSIAN_TRUNCATE) -> torch.Tensor:
    """The normalised 1-D Gaussian scipy.ndimage uses: radius int(truncate * sigma + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _reflect_pad(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """scipy's "reflect" mode (d c b a | a b c d | d c b a): the edge sample is repeated."""
    size = x.shape[dim]
    if radius > size:
        raise ValueError(f"map of size {size} too small for a Gaussian of radius {radius}")
    left = x.narrow(dim, 0, radius).flip(dim)
    right = x.narrow(dim, size - radius, radius).flip(dim)
    return torch.cat((left, x, right), dim=dim)


def gaussian_smooth(maps: torch.Tensor, sigma: float = SMOOTHING_SIGMA) -> torch.Tensor:
    """Smooth (B, H, W) maps like scipy.ndimage.gaussian_filter(map, sigma) (mode reflect, truncate 4)."""
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel(sigma).to(device=maps.device, dtype=maps.dtype)
    radius = (len(kernel) - 1) // 2
    x = maps[:, None]
    x = F.conv2d(_reflect_pad(x, radius, 3), kernel.view(1, 1, 1, -1))
    x = F.conv2d(_reflect_pad(x, radius, 2), kernel.view(1, 1, -1, 1))
    return x[:, 0]


def scores_to_maps(patch_scores: torch.Tensor, image_size: tuple[int, int], sigma: float = SMOOTHING_SIGMA) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch scores (B, H_m, W_m) -> (anomaly maps (B, H, W): Eq. 12, image scores (B,): Eq. 11)."""
    scores = patch_scores.flatten(1).max(dim=1).values
    up = F.interpolate(patch_scores[:, None], size=tuple(image_size), mode="bilinear", align_corners=False)[:, 0]
    return gaussian_smooth(up, sigma), scores


def score_kernel(image_size: tuple[int, int]) -> int:
    """DRAEM's 21-pixel mean filter at 256 px, scaled with the shorter side and kept odd (>= 1)."""
    k = SCORE_KERNEL_AT_256 * min(image_size) / 256
    return max(1, 2 * math.floor(k / 2) + 1)
