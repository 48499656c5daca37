"""Near-distribution Anomaly Augmentation (NDAA) of the augmentation framework (Lin & Yan, AAAI 2024).

The paper's procedure (Sec. "Near-distribution Anomaly Augmentation", Fig. 2):
1. select a rectangular area and distort it according to a sine curve;
2. threshold the absolute difference between the original and the distorted image into a
   primitive mask M_o (it holds scattered dots besides the dense changed areas);
3. block-reduce M_o, resize it back to the image size and threshold it into M_l (this joins
   nearby dots into regions but enlarges them);
4. M = M_o * M_l keeps the dense areas and drops the noise;
5. replace the pixels under M by the distorted image.

The paper gives no numbers. The choices below are options of the strategy (``options.ndaa.<key>``)
and every sample records the values it used:

- ``rect_min``/``rect_max`` = 0.15/0.45: each side of the rectangle is U(rect_min, rect_max) of the
  image side, so the rectangle covers 2%-20% of the image, about the size range of CutPaste's
  patches (2%-15%) and DRAEM's Perlin blobs: big enough to hold a structure that can bend.
- ``amplitude_min``/``amplitude_max`` = 0.01/0.04 of the image's short side (2.6-10 px at 256):
  the displacement of the sine. Small, so the result is a bend or a wobble of the local structure
  (near the normal distribution), not a scramble; more than a pixel, so shifted edges differ by
  more than the threshold.
- ``periods_min``/``periods_max`` = 0.5/2: sine periods across the rectangle (along the axis that
  modulates the shift). Half a period is a single bend, two are a wave; more would read as texture.
- ``diff_threshold`` = 0.1: on |original - distorted| (max over RGB, [0, 1] scale). Well above 8-bit
  sensor noise and the blur that bilinear resampling adds to smooth areas, so M_o marks visible
  changes only.
- ``block_fraction`` = 1/32: the block side as a fraction of the short image side (8 px at 256),
  about the width of the band a shifted edge leaves in M_o, so one block spans one such band.
- ``density_threshold`` = 0.2: a pixel is in M_l where the bilinearly resized block means of M_o
  exceed it. An edge shifted by a few pixels fills a quarter or more of its blocks; scattered dots
  (one to five pixels of a 64-pixel block, i.e. 0.02-0.08) stay below it.

A sample whose final mask is empty (e.g. the rectangle fell on a flat background) is rejected
(``accepted`` False) so the pipeline redraws it.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SynthgenError
from .base import BYTE_LEVELS, Recipe, Rendered, RenderedPixels, Strategy, StrategyContext, mask_notes, number_option, register_strategy, to_bytes
from .geometry import sample_bilinear

SHIFT_AXES = ("x", "y")


def _range_option(ctx: StrategyContext, name: str, key: str, default: tuple[float, float], high: float) -> tuple[float, float]:
    low_value = number_option(ctx, name, f"{key}_min", default[0], 0.0, high)
    high_value = number_option(ctx, name, f"{key}_max", default[1], 0.0, high)
    if low_value > high_value:
        raise SynthgenError(f"option {name}.{key}_min: {low_value} is above {key}_max {high_value}")
    return low_value, high_value


def _rect(params: dict) -> tuple[slice, slice]:
    """The rectangle's (rows, columns) in the image."""
    top, left, rect_h, rect_w = params["rect"]
    return slice(top, top + rect_h), slice(left, left + rect_w)


def _band(params: dict, h: int, w: int) -> tuple[slice, slice]:
    """The part of the image the distortion reads, (rows, columns): a shift along x moves pixels within
    their rows, so the rectangle's rows across the full width; a shift along y, its columns over the
    full height."""
    rows, cols = _rect(params)
    return (rows, slice(0, w)) if params["shift_axis"] == "x" else (slice(0, h), cols)


def _rect_in_band(params: dict) -> tuple[slice, slice]:
    """The rectangle's (rows, columns) inside its band."""
    rows, cols = _rect(params)
    return (slice(None), cols) if params["shift_axis"] == "x" else (rows, slice(None))


def _distorted_window(band: torch.Tensor, params: dict) -> torch.Tensor:
    """The rectangle's content shifted by amplitude * sin(2 pi t / wavelength + phase), (3, rect_h, rect_w).

    ``band`` (3, ., .) is the image restricted to :func:`_band`. The coordinates along the band's
    short side are the rectangle's own integers (relative to the band): sampling there reads those
    pixels exactly, so the result equals sampling the whole image."""
    top, left, rect_h, rect_w = params["rect"]
    ys = torch.arange(top, top + rect_h, dtype=band.dtype, device=band.device).reshape(1, rect_h, 1)
    xs = torch.arange(left, left + rect_w, dtype=band.dtype, device=band.device).reshape(1, 1, rect_w)
    if params["shift_axis"] == "x":  # a shift along x varies down the rows
        src_x = xs + params["amplitude"] * torch.sin(2 * math.pi * (ys - top) / params["wavelength"] + params["phase"])
        src_y = (ys - top).expand(1, rect_h, rect_w)
    else:
        src_y = ys + params["amplitude"] * torch.sin(2 * math.pi * (xs - left) / params["wavelength"] + params["phase"])
        src_x = (xs - left).expand(1, rect_h, rect_w)
    return sample_bilinear(band[None], src_y, src_x)[0]


@register_strategy
class NDAA(Strategy):
    name = "ndaa"
    summary = "near-distribution anomaly: a rectangle bent by a sine, pasted where it changed densely (framework)"

    def read_options(self, ctx: StrategyContext) -> dict[str, Any]:
        options = {}
        for key, default, high in (("rect", (0.15, 0.45), 1.0), ("amplitude", (0.01, 0.04), 0.5), ("periods", (0.5, 2.0), 64.0)):
            options[f"{key}_min"], options[f"{key}_max"] = _range_option(ctx, self.name, key, default, high)
        options["diff_threshold"] = number_option(ctx, self.name, "diff_threshold", 0.1, 0.0, 1.0)
        options["block_fraction"] = number_option(ctx, self.name, "block_fraction", 1 / 32, 0.0, 1.0)
        options["density_threshold"] = number_option(ctx, self.name, "density_threshold", 0.2, 0.0, 1.0)
        return options

    def draw(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int) -> Recipe:
        h, w = ctx.image_size
        options = ctx.options_of(self.name)
        rect, amplitude, periods = ((options[f"{key}_min"], options[f"{key}_max"]) for key in ("rect", "amplitude", "periods"))
        rect_h = max(1, round(rng.uniform(*rect) * h))
        rect_w = max(1, round(rng.uniform(*rect) * w))
        top = int(rng.integers(0, h - rect_h + 1))
        left = int(rng.integers(0, w - rect_w + 1))
        shift_axis = SHIFT_AXES[int(rng.integers(2))]
        # A shift along x varies down the rows, a shift along y across the columns.
        extent = rect_h if shift_axis == "x" else rect_w
        return Recipe(
            {
                "rect": [top, left, rect_h, rect_w],
                "shift_axis": shift_axis,
                "amplitude": float(rng.uniform(*amplitude) * min(h, w)),
                "wavelength": float(extent / rng.uniform(*periods)),
                "phase": float(rng.uniform(0.0, 2.0 * math.pi)),
                "diff_threshold": options["diff_threshold"],
                "block_size": max(2, round(min(h, w) * options["block_fraction"])),
                "density_threshold": options["density_threshold"],
            }
        )

    def render(self, images: torch.Tensor, recipes: list[Recipe], ctx: StrategyContext) -> Rendered:
        distorted = self._distort(images, recipes)
        diff = (distorted - images).abs().amax(1)
        primitive = (diff > self._per_sample(recipes, "diff_threshold", images)).float()  # M_o
        dense = self._dense_regions(primitive, recipes)  # M_l
        masks = primitive * dense
        out = torch.where(masks[:, None] > 0, distorted, images)
        counts = (masks > 0).flatten(1).sum(1).cpu().tolist()
        return Rendered(images=out, masks=masks, accepted=masks.flatten(1).amax(1) > 0, notes=mask_notes(counts, masks[0].numel()))

    renders_pixels = True

    def render_pixels(self, pixels: np.ndarray, recipes: list[Recipe], ctx: StrategyContext) -> RenderedPixels:
        """The CPU path: only the rectangle is distorted and compared (outside it the distorted image is
        the image, so M_o is empty there); M_l needs the whole M_o, which is one channel of zeros
        around the rectangle's."""
        b, h, w, _ = pixels.shape
        images = pixels.copy()
        primitive = torch.zeros(b, h, w)
        windows = []
        for i, r in enumerate(recipes):
            rows, cols = _band(r.params, h, w)
            band = torch.from_numpy(cv2.LUT(pixels[i, rows, cols], BYTE_LEVELS)).permute(2, 0, 1)
            window = _distorted_window(band, r.params)
            diff = (window - band[(slice(None), *_rect_in_band(r.params))]).abs().amax(0)
            primitive[(i, *_rect(r.params))] = (diff > self._per_sample([r], "diff_threshold", diff)[0]).float()
            windows.append(window)
        inside = (primitive * self._dense_regions(primitive, recipes)).numpy() > 0
        for i, (r, window) in enumerate(zip(recipes, windows)):
            rows, cols = _rect(r.params)
            chosen = inside[i, rows, cols]
            images[i, rows, cols][chosen] = to_bytes(window.permute(1, 2, 0)).numpy()[chosen]
        counts = inside.reshape(b, -1).sum(1)
        return RenderedPixels(images=images, masks=inside, accepted=counts > 0, notes=mask_notes(counts, h * w))

    @staticmethod
    def _per_sample(recipes: list[Recipe], key: str, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor([r.params[key] for r in recipes], dtype=like.dtype, device=like.device).reshape(-1, 1, 1)

    def _distort(self, images: torch.Tensor, recipes: list[Recipe]) -> torch.Tensor:
        """Each image with its rectangle's content shifted (:func:`_distorted_window`); outside the
        rectangle the image is copied, which is what resampling at the pixels' own integer coordinates
        gives bit for bit."""
        _, _, h, w = images.shape
        distorted = images.clone()
        for b, r in enumerate(recipes):
            rows, cols = _rect(r.params)
            distorted[b, :, rows, cols] = _distorted_window(images[(b, slice(None), *_band(r.params, h, w))], r.params)
        return distorted

    def _dense_regions(self, primitive: torch.Tensor, recipes: list[Recipe]) -> torch.Tensor:
        """M_l: block means of M_o, resized back bilinearly, above the density threshold."""
        _, h, w = primitive.shape
        dense = torch.zeros_like(primitive)
        for block in sorted({r.params["block_size"] for r in recipes}):
            idx = [i for i, r in enumerate(recipes) if r.params["block_size"] == block]
            reduced = F.adaptive_avg_pool2d(primitive[idx, None], (math.ceil(h / block), math.ceil(w / block)))
            resized = F.interpolate(reduced, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            dense[idx] = (resized > self._per_sample([recipes[i] for i in idx], "density_threshold", primitive)).float()
        return dense
