"""Rotation as the augmentation framework defines it, and the geometry the image strategies share.

The framework (Lin & Yan, AAAI 2024, "A Comprehensive Augmentation Framework for Anomaly Detection")
treats rotation differently from every other augmentation: "Since providing samples with the same
orientation during training is sufficient to learn that rotation is not allowed, and it is difficult
to compute the anomaly mask created by the rotation operation, we apply this operation in reverse to
classes that allow rotation to emphasize its irrelevance in creating an anomaly." So the ``rotation``
strategy produces *normal* samples: a rotated normal image with an empty mask (label 0). The
per-class table (:mod:`.caf`) enables it only for classes whose normal images may appear at any
angle (bottle, hazelnut, metal_nut, screw, ...). It is not DRAEM's rotation of every normal before
synthesis (the framework removes that; the ``draem`` strategy keeps it).

Choices the paper leaves open, both options of the strategy:
- ``max_angle`` (default 180): the angle is uniform in [-max_angle, max_angle]. A class that
  "allows rotation" allows every angle, so the default covers the full circle.
- ``padding`` (default ``border``): what fills the corners that rotation uncovers. The sample is
  labelled normal, so the corners should look like the image's own background. ``border`` repeats
  the nearest edge pixel: the classes that allow rotation show a centred object whose image edge is
  background, so the corners continue that background. ``reflection`` mirrors the image into the
  corners, which copies parts of an object that fills the frame (MVTec bottle) into them: duplicated
  parts labelled normal. ``zeros`` (DRAEM's fill) gives black corners, an artefact no test image has.

The rotation itself is :func:`.geometry.rotate_images`, which the other image strategies share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import SynthgenError
from .base import Recipe, Rendered, Strategy, StrategyContext, number_option, register_strategy
from .geometry import PADDINGS, rotate_images

@register_strategy
class Rotation(Strategy):
    """The framework's rotation, applied in reverse: a rotated normal image presented as normal."""

    name = "rotation"
    summary = "rotated normal image labelled normal (empty mask), for classes that allow rotation (framework)"

    def read_options(self, ctx: StrategyContext) -> dict[str, Any]:
        max_angle = number_option(ctx, self.name, "max_angle", 180.0, 0.0, 180.0)
        padding = ctx.option(self.name, "padding", "border")
        if padding not in PADDINGS:
            raise SynthgenError(f"option {self.name}.padding: must be one of {', '.join(PADDINGS)}, got {padding!r}")
        return {"max_angle": max_angle, "padding": padding}

    def draw(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int) -> Recipe:
        options = ctx.options_of(self.name)
        max_angle = options["max_angle"]
        return Recipe({"angle": float(rng.uniform(-max_angle, max_angle)), "padding": options["padding"]})

    def render(self, images: torch.Tensor, recipes: list[Recipe], ctx: StrategyContext) -> Rendered:
        rotated = torch.empty_like(images)
        for padding in PADDINGS:  # one grid_sample call per padding mode; each sample stays independent
            idx = [i for i, r in enumerate(recipes) if r.params["padding"] == padding]
            if idx:
                angles = [recipes[i].params["angle"] for i in idx]
                rotated[idx] = rotate_images(images[idx], angles, padding).clamp(0, 1)
        masks = torch.zeros(images.shape[0], *images.shape[2:], device=images.device, dtype=images.dtype)
        # The rotated image is itself the clean reconstruction target.
        return Rendered(images=rotated, masks=masks, normals=rotated, notes=[{"mask_area": 0.0} for _ in recipes])
