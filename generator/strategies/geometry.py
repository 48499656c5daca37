"""The geometry the image strategies share: rotations (batched and one array at a time) and bilinear
sampling at pixel coordinates.

:func:`rotate_images` (per-sample angles: the ``rotation`` strategy, DRAEM's noise and normal
rotation), :func:`warp_rotate` (one array with OpenCV; DRAEM's texture augmenter, the Perlin noise),
:func:`sample_bilinear` (exact at integer coordinates: CutPaste and NDAA). A helper module, not a
strategy: strategy modules import it and never each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

PADDINGS = ("border", "reflection", "zeros")


#: rotate_images' padding modes as OpenCV border modes. grid_sample's ``reflection`` (align_corners
#: False) mirrors about the image's outer edges, which is OpenCV's BORDER_REFLECT (fedcba|abcdef).
_CV2_BORDERS = {"zeros": cv2.BORDER_CONSTANT, "border": cv2.BORDER_REPLICATE, "reflection": cv2.BORDER_REFLECT}


def rotation_matrix(angle_deg: float, h: int, w: int) -> np.ndarray:
    """The 2x3 map from an output pixel (x, y) to the input pixel it samples, for a rotation by
    ``angle_deg`` about the image centre ((w - 1) / 2, (h - 1) / 2), counter-clockwise as displayed.

    Relative to the centre (y down): x_in = c x - s y, y_in = s x + c y. For cv2.warpAffine with
    WARP_INVERSE_MAP; the same geometry as the grid_sample path of :func:`rotate_images`.
    """
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]])


def warp_rotate(pixels: np.ndarray, angle_deg: float, padding: str = "zeros") -> np.ndarray:
    """Rotate one (H, W) or (H, W, C) array (uint8 or float32) with OpenCV, bilinearly.

    OpenCV interpolates at 1/32 of a pixel (fixed-point weights; 8-bit inputs round to 8 bits), as
    imgaug's Affine, which calls it, does in DRAEM.

    Three channels are warped as four: OpenCV's vectorised bilinear loops cover 1 and 4 channels, and
    its 3-channel loop takes 1.5-3x longer for the same per-channel arithmetic (the outputs are equal
    bit for bit; tests/test_strategies.py checks it).
    """
    h, w = pixels.shape[:2]
    three = pixels.ndim == 3 and pixels.shape[2] == 3
    out = cv2.warpAffine(
        cv2.cvtColor(pixels, cv2.COLOR_RGB2RGBA) if three else pixels, rotation_matrix(angle_deg, h, w), (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=_CV2_BORDERS[padding], borderValue=0,
    )
    if three:
        return cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)
    return out.reshape(pixels.shape)  # OpenCV drops a trailing channel axis of length 1


def rotate_images(images: torch.Tensor, angles_deg: Sequence[float] | torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Rotate each image of a (B, C, H, W) batch about its centre by its own angle, bilinearly.

    Positive angles turn the content counter-clockwise as displayed (the convention of PIL and
    torchvision). ``padding`` is ``zeros`` (fill 0, as imgaug's Affine default cval=0 that DRAEM
    uses), ``border`` or ``reflection`` (grid_sample's padding modes). Rotation happens in pixel units, so non-square images are not sheared.

    On the CPU each image goes through :func:`warp_rotate` (OpenCV, several times faster than
    grid_sample; it samples at 1/32 pixel, so values differ from the exact bilinear value by up to
    1/64 pixel's worth of the local gradient). Elsewhere grid_sample does the exact bilinear sampling.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    b, _, h, w = images.shape
    angles = torch.as_tensor(angles_deg, dtype=torch.float64).reshape(b)
    if images.device.type == "cpu" and images.dtype == torch.float32:
        channels_last = images.permute(0, 2, 3, 1).numpy()  # a view when the batch is channels-last
        rotated = np.stack([warp_rotate(np.ascontiguousarray(x), float(a), padding) for x, a in zip(channels_last, angles)])
        return torch.from_numpy(rotated).permute(0, 3, 1, 2)  # channels-last in memory, like the input
    theta = angles * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    # Output pixel -> input pixel about the centre (y down): x_in = c x - s y, y_in = s x + c y,
    # written for normalised coordinates, in which x and y are divided by W/2 and H/2.
    affine = torch.stack(
        [torch.stack([cos, -sin * (h / w), zero], 1), torch.stack([sin * (w / h), cos, zero], 1)], 1
    ).to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(affine, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def sample_bilinear(images: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sample (B, C, H, W) images at pixel coordinates y, x of shape (B, h, w), clamped to the border.

    Pixel (i, j) has coordinates (i, j). At integer coordinates the result is the pixel itself,
    exactly (the weights are 0 and 1), so a pure translation copies pixels bit for bit.
    """
    b, c, h, w = images.shape
    y = y.clamp(0, h - 1)
    x = x.clamp(0, w - 1)
    y0, x0 = y.floor(), x.floor()
    wy, wx = (y - y0).unsqueeze(1), (x - x0).unsqueeze(1)
    y0, x0 = y0.long(), x0.long()
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    flat = images.reshape(b, c, h * w)

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        index = (yi * w + xi).reshape(b, 1, -1).expand(b, c, -1)
        return flat.gather(2, index).reshape(b, c, *yi.shape[1:])

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy
