"""CutPaste and CutPaste-Scar (Li, Sohn, Yoon, Pfister, CVPR 2021).

A patch is cut from the normal image, colour-jittered, optionally rotated, and pasted back at a
random place of the same image; the mask is the pasted region.

Numbers (per sample, each an option of the strategy):
- ``cutpaste``: patch area U(0.02, 0.15) of the image (``area_min``, ``area_max``); aspect ratio
  w/h log-uniform in [0.3, 1/0.3] (``aspect_min``), so tall and wide patches are equally likely;
  width = int(sqrt(area * aspect)), height = int(sqrt(area / aspect)); no rotation.
- ``cutpaste-scar``: a long thin patch, width U{2..16} and length U{10..25} pixels at 256 x 256
  (``width_min/max``, ``length_min/max``; scaled by min(H, W) / 256 for other sizes, since the
  paper trains at 256), rotated by U(-45, 45) degrees (``max_angle``).
- colour jitter on the patch (``jitter`` = 0.1): torchvision ColorJitter semantics, brightness,
  contrast and saturation factors U(0.9, 1.1), hue shift U(-0.1, 0.1) of a turn, in random order.
These are the values of the paper's description as used by the public reimplementations
(LilitYolyan/CutPaste, Runinho/pytorch-cutpaste); the official TensorFlow code was not available
to check the jitter magnitude against.

Source and destination are uniform over the positions where the patch (for the scar: its rotated
bounding box) fits. A rotated scar covers the pixels whose centres fall inside the rotated
rectangle; they are sampled bilinearly from the patch. Without rotation the patch is copied
pixel for pixel.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from ..errors import SynthgenError
from .base import Recipe, Rendered, Strategy, StrategyContext, number_option, register_strategy
from .geometry import sample_bilinear

JITTER_OPS = ("brightness", "contrast", "saturation", "hue")
#: The image side CutPaste-Scar's pixel sizes refer to (the paper trains at 256 x 256).
SCAR_REFERENCE_SIZE = 256


def _draw_jitter(rng: np.random.Generator, magnitude: float) -> dict:
    """torchvision ColorJitter(b=c=s=h=magnitude): factors around 1, hue around 0, random order."""
    factors = {op: float(rng.uniform(1 - magnitude, 1 + magnitude)) for op in JITTER_OPS[:3]}
    factors["hue"] = float(rng.uniform(-magnitude, magnitude))
    return {**factors, "order": [JITTER_OPS[i] for i in rng.permutation(len(JITTER_OPS))]}


def _apply_jitter(patch: torch.Tensor, jitter: dict) -> torch.Tensor:
    adjust = {
        "brightness": TF.adjust_brightness,
        "contrast": TF.adjust_contrast,  # blends with the mean grey of the patch itself
        "saturation": TF.adjust_saturation,
        "hue": TF.adjust_hue,
    }
    for op in jitter["order"]:
        patch = adjust[op](patch, jitter[op])
    return patch


def _rotated_extent(height: int, width: int, angle_deg: float) -> tuple[int, int]:
    """Height and width of the pixel box that holds a height x width rectangle rotated by angle."""
    c, s = abs(math.cos(math.radians(angle_deg))), abs(math.sin(math.radians(angle_deg)))
    return math.ceil(round(height * c + width * s, 6)), math.ceil(round(width * c + height * s, 6))


def _place(rng: np.random.Generator, image_size: tuple[int, int], height: int, width: int) -> list[int]:
    """Uniform top-left corner of a height x width box inside the image."""
    return [int(rng.integers(0, image_size[0] - height + 1)), int(rng.integers(0, image_size[1] - width + 1))]


def _rotated_patch(patch: torch.Tensor, angle_deg: float, box: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The patch turned counter-clockwise by angle inside a box: (pixels (3, *box), inside (*box) bool)."""
    _, h, w = patch.shape
    theta = math.radians(angle_deg)
    c, s = math.cos(theta), math.sin(theta)
    y = torch.arange(box[0], dtype=patch.dtype, device=patch.device)[:, None] + 0.5 - box[0] / 2
    x = torch.arange(box[1], dtype=patch.dtype, device=patch.device)[None, :] + 0.5 - box[1] / 2
    # Box pixel -> patch position, relative to the centres (same convention as rotate_images).
    x_in, y_in = c * x - s * y, s * x + c * y
    inside = (x_in.abs() < w / 2) & (y_in.abs() < h / 2)
    pixels = sample_bilinear(patch[None], (y_in + h / 2 - 0.5)[None], (x_in + w / 2 - 0.5)[None])[0]
    return pixels, inside


class _CutPasteBase(Strategy):
    """Shared draw tail and render; subclasses choose the patch size and angle."""

    @abstractmethod
    def _patch_shape(self, rng: np.random.Generator, ctx: StrategyContext) -> tuple[int, int, float]:
        """(height, width, angle in degrees) of one sample's patch."""

    def read_options(self, ctx: StrategyContext) -> dict[str, Any]:
        return {"jitter": number_option(ctx, self.name, "jitter", 0.1, 0.0, 0.5)}

    def draw(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int) -> Recipe:
        height, width, angle = self._patch_shape(rng, ctx)
        box = _rotated_extent(height, width, angle)
        box = (min(box[0], ctx.image_size[0]), min(box[1], ctx.image_size[1]))
        jitter = ctx.options_of(self.name)["jitter"]
        return Recipe(
            {
                "patch": [height, width],
                "source": _place(rng, ctx.image_size, height, width),
                "angle": angle,
                "box": list(box),
                "target": _place(rng, ctx.image_size, *box),
                "jitter": _draw_jitter(rng, jitter),
            }
        )

    def render(self, images: torch.Tensor, recipes: list[Recipe], ctx: StrategyContext) -> Rendered:
        out = images.clone()
        masks = torch.zeros(images.shape[0], *images.shape[2:], dtype=images.dtype, device=images.device)
        for i, r in enumerate(recipes):  # each sample has its own patch size, jitter and angle
            (h, w), (sy, sx), (bh, bw), (ty, tx) = r.params["patch"], r.params["source"], r.params["box"], r.params["target"]
            patch = _apply_jitter(images[i, :, sy : sy + h, sx : sx + w], r.params["jitter"]).clamp(0, 1)
            pixels, inside = _rotated_patch(patch, r.params["angle"], (bh, bw))
            region = out[i, :, ty : ty + bh, tx : tx + bw]
            out[i, :, ty : ty + bh, tx : tx + bw] = torch.where(inside, pixels, region)
            masks[i, ty : ty + bh, tx : tx + bw] = inside.to(masks.dtype)
        return Rendered(images=out, masks=masks, notes=[{"mask_area": float(a)} for a in masks.flatten(1).mean(1).tolist()])


def _int_range(ctx: StrategyContext, name: str, key: str, default: tuple[int, int]) -> tuple[int, int]:
    low = int(number_option(ctx, name, f"{key}_min", default[0], 1, 4096))
    high = int(number_option(ctx, name, f"{key}_max", default[1], 1, 4096))
    if low > high:
        raise SynthgenError(f"option {name}.{key}_min: {low} is above {key}_max {high}")
    return low, high


@register_strategy
class CutPaste(_CutPasteBase):
    name = "cutpaste"
    summary = "CutPaste: a jittered rectangle of the image pasted elsewhere (Li et al. 2021)"

    def read_options(self, ctx: StrategyContext) -> dict[str, Any]:
        area_min = number_option(ctx, self.name, "area_min", 0.02, 0.0, 1.0)
        area_max = number_option(ctx, self.name, "area_max", 0.15, 0.0, 1.0)
        if area_min > area_max:
            raise SynthgenError(f"option {self.name}.area_min: {area_min} is above area_max {area_max}")
        aspect_min = number_option(ctx, self.name, "aspect_min", 0.3, 0.01, 1.0)
        return {**super().read_options(ctx), "area_min": area_min, "area_max": area_max, "aspect_min": aspect_min}

    def _patch_shape(self, rng: np.random.Generator, ctx: StrategyContext) -> tuple[int, int, float]:
        h, w = ctx.image_size
        options = ctx.options_of(self.name)
        area_min, area_max, aspect_min = options["area_min"], options["area_max"], options["aspect_min"]
        area = rng.uniform(area_min, area_max) * h * w
        aspect = math.exp(rng.uniform(math.log(aspect_min), -math.log(aspect_min)))
        width = min(w, max(1, int(math.sqrt(area * aspect))))
        height = min(h, max(1, int(math.sqrt(area / aspect))))
        return height, width, 0.0


@register_strategy
class CutPasteScar(_CutPasteBase):
    name = "cutpaste-scar"
    summary = "CutPaste-Scar: a thin jittered strip of the image, rotated, pasted elsewhere (Li et al. 2021)"

    def read_options(self, ctx: StrategyContext) -> dict[str, Any]:
        width_min, width_max = _int_range(ctx, self.name, "width", (2, 16))
        length_min, length_max = _int_range(ctx, self.name, "length", (10, 25))
        return {**super().read_options(ctx), "width_min": width_min, "width_max": width_max,
                "length_min": length_min, "length_max": length_max,
                "max_angle": number_option(ctx, self.name, "max_angle", 45.0, 0.0, 180.0)}

    def _patch_shape(self, rng: np.random.Generator, ctx: StrategyContext) -> tuple[int, int, float]:
        h, w = ctx.image_size
        scale = min(h, w) / SCAR_REFERENCE_SIZE
        options = ctx.options_of(self.name)
        width = int(rng.integers(options["width_min"], options["width_max"] + 1))
        length = int(rng.integers(options["length_min"], options["length_max"] + 1))
        max_angle = options["max_angle"]
        angle = float(rng.uniform(-max_angle, max_angle))
        return min(h, max(1, round(length * scale))), min(w, max(1, round(width * scale))), angle
