"""Texture blended into a Perlin-shaped region: the framework's transparent and opaque anomalies, and DRAEM.

All three use DRAEM's Perlin mask M (:mod:`.perlin`) and an anomaly texture N from the build's
texture source (``ctx.texture``), augmented by DRAEM's 3 random augmenters (:mod:`.texture`).

- ``transparent`` (framework Eq. 1): I_t = (1 - M) I + (1 - beta) M I + beta M N. The paper gives
  no range for the opacity beta; the default is U(0.2, 0.8) (options ``beta_min``, ``beta_max``).
  Why: beta is the texture's share. Below 0.2 the region barely changes while its mask says
  "anomaly", which teaches the model to flag normal-looking pixels; above 0.8 less than a fifth of
  the original remains, and the sample becomes the opaque case (beta = 1), which has its own
  strategy. 0.2 is also DRAEM's smallest texture share (its beta ~ U[0, 0.8) weights the image).
- ``opaque`` (framework Eq. 2): I_o = (1 - M) I + M N, i.e. beta = 1.
- ``draem``: DRAEM's recipe as its code does it (data_loader.py, MVTecDRAEMTrainDataset): with
  probability 0.3 (``torch.rand(1) > 0.7``) the normal image is first rotated by U(-90, 90) degrees
  (imgaug Affine, bilinear, fill 0) and that rotated image is the sample's clean image
  (``Rendered.normals``); beta ~ U[0, 0.8) weights the *image*:
  out = I (1 - M) + (1 - beta) N M + beta I M; half the samples (``torch.rand(1) > 0.5``) stay
  normal with an empty mask, and an anomalous draw whose mask is empty is also label 0.

The framework's paper does not say whether its textures are augmented; it builds on DRAEM's
(anomalib's) synthesis, which augments them, so transparent/opaque do too (option
``augment_texture``, default true). An empty Perlin mask makes a transparent/opaque sample
collapse (``accepted`` False, redrawn by the pipeline); DRAEM keeps such samples as normals.

On the CPU all three render through ``render_pixels``: the mask per sample, the texture augmented
only when the mask is not empty, and the blend computed (with the float path's own ops) only at the
mask's pixels; outside it the stored bytes are the normal's.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import cv2
import numpy as np
import torch

from ..errors import SynthgenError
from .base import BYTE_LEVELS, Recipe, Rendered, RenderedPixels, Strategy, StrategyContext, mask_notes, number_option, register_strategy, to_bytes
from .geometry import rotate_images, warp_rotate
from .perlin import draem_perlin_mask_array, draem_perlin_masks, draw_draem_perlin
from .texture import augment_texture, draw_draem_augmenters

#: DRAEM: do_aug_orig = torch.rand(1) > 0.7; self.rot = iaa.Affine(rotate=(-90, 90)).
DRAEM_ROTATE_PROBABILITY = 0.3
DRAEM_ROTATE_DEG = 90.0
#: DRAEM: beta = torch.rand(1) * 0.8.
DRAEM_BETA_MAX = 0.8
#: DRAEM: no_anomaly = torch.rand(1) > 0.5 -> the sample stays normal.
DRAEM_ANOMALY_PROBABILITY = 0.5


def _draw_texture(rng: np.random.Generator, ctx: StrategyContext, augment: bool) -> dict:
    keys = ctx.texture_keys()
    if not keys:
        raise SynthgenError("--textures: the texture source has no textures to choose from")
    params = {"texture": keys[int(rng.integers(len(keys)))]}
    params["texture_ops"] = draw_draem_augmenters(rng) if augment else []
    return params


def _draw_region_and_texture(rng: np.random.Generator, ctx: StrategyContext, augment: bool) -> Recipe:
    perlin_params, angles = draw_draem_perlin(rng)
    return Recipe({**perlin_params, **_draw_texture(rng, ctx, augment)}, {"perlin_angles": angles})


def _texture_pixels(recipe: Recipe, ctx: StrategyContext) -> np.ndarray:
    """The recipe's augmented texture, (H, W, 3) uint8 (augmented on the CPU, :func:`.texture.augment_texture`)."""
    return augment_texture(ctx.texture(recipe.params["texture"]), recipe.params["texture_ops"])


def _textures(recipes: list[Recipe], ctx: StrategyContext) -> torch.Tensor:
    """The augmented texture of each recipe, (B, 3, H, W) float32 in [0, 1] on ctx.device, converted
    to float once, on the device."""
    pixels = np.stack([_texture_pixels(r, ctx) for r in recipes])
    return torch.from_numpy(pixels).to(ctx.device).permute(0, 3, 1, 2).float().div_(255.0)


def _blend(images: torch.Tensor, textures: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """images + share * (textures - images), fused into one pass (torch.lerp), in [0, 1].

    ``share`` (B, 1, H, W) is the texture's weight per pixel: its opacity inside the mask, 0 outside,
    where the image comes out bit for bit (lerp with weight 0 returns its input exactly).
    """
    return torch.lerp(images, textures, share).clamp_(0, 1)


def _blend_pixels(image: np.ndarray, inside: np.ndarray, normal: np.ndarray, texture: np.ndarray, share: float) -> None:
    """The CPU path of :func:`_blend` for one sample, in place: the uint8 ``image`` gets, at the flat
    pixel indices ``inside``, the bytes of ``_blend(normal, texture, share)`` there.

    ``normal`` is (K, 3) float32 (the clean image's values at those pixels), ``texture`` (H, W, 3) uint8.
    Outside the mask the float path returns the normal bit for bit, so only the K pixels are computed.
    With share 1 (opaque) lerp returns the texture's float exactly, whose bytes are the texture's.
    """
    if share == 1.0:
        image.reshape(-1, 3)[inside] = texture.reshape(-1, 3)[inside]
        return
    levels = BYTE_LEVELS[texture.reshape(-1, 3)[inside]]
    blended = _blend(torch.from_numpy(normal), torch.from_numpy(levels), torch.tensor(share, dtype=torch.float32))
    image.reshape(-1, 3)[inside] = to_bytes(blended).numpy()


def _column(values: list[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)


def _mask_notes(masks: torch.Tensor) -> list[dict]:
    return mask_notes((masks > 0.5).flatten(1).sum(1).cpu().tolist(), masks[0].numel() if len(masks) else 0)


class _TextureBlend(Strategy):
    """Framework Eq. 1 with the opacity ``beta`` drawn by the subclass."""

    needs = frozenset({"textures"})

    @abstractmethod
    def _draw_beta(self, rng: np.random.Generator, ctx: StrategyContext) -> float:
        """The texture's opacity beta of one sample."""

    def read_options(self, ctx: StrategyContext) -> dict[str, Any]:
        augment = ctx.option(self.name, "augment_texture", True)
        if not isinstance(augment, bool):
            raise SynthgenError(f"option {self.name}.augment_texture: must be true or false, got {augment!r}")
        return {"augment_texture": augment}

    def draw(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int) -> Recipe:
        recipe = _draw_region_and_texture(rng, ctx, ctx.options_of(self.name)["augment_texture"])
        recipe.params["beta"] = self._draw_beta(rng, ctx)
        return recipe

    def render(self, images: torch.Tensor, recipes: list[Recipe], ctx: StrategyContext) -> Rendered:
        masks = draem_perlin_masks(recipes, tuple(images.shape[2:]), images.device)
        beta = _column([r.params["beta"] for r in recipes], images)
        # Eq. 1 in one pass: I + beta M (N - I) is (1 - beta) I + beta N inside M and I outside
        out = _blend(images, _textures(recipes, ctx), beta * masks[:, None])
        return Rendered(
            images=out,
            masks=masks,
            accepted=masks.flatten(1).amax(1) > 0,
            notes=_mask_notes(masks),
        )

    renders_pixels = True

    def render_pixels(self, pixels: np.ndarray, recipes: list[Recipe], ctx: StrategyContext) -> RenderedPixels:
        images, masks = pixels.copy(), np.zeros(pixels.shape[:3], dtype=bool)
        for b, r in enumerate(recipes):
            masks[b] = draem_perlin_mask_array(r, pixels.shape[1:3])
            inside = np.flatnonzero(masks[b])
            if len(inside):  # an empty mask is rejected: no texture is needed
                share = float(np.float32(r.params["beta"]))  # the float path's float32 column
                _blend_pixels(images[b], inside, BYTE_LEVELS[pixels[b].reshape(-1, 3)[inside]], _texture_pixels(r, ctx), share)
        counts = masks.reshape(len(masks), -1).sum(1)
        return RenderedPixels(images=images, masks=masks, accepted=counts > 0, notes=mask_notes(counts, masks[0].size))


@register_strategy
class Transparent(_TextureBlend):
    name = "transparent"
    summary = "texture blended into a Perlin region with opacity beta (framework Eq. 1)"

    def read_options(self, ctx: StrategyContext) -> dict[str, Any]:
        low = number_option(ctx, self.name, "beta_min", 0.2, 0.0, 1.0)
        high = number_option(ctx, self.name, "beta_max", 0.8, 0.0, 1.0)
        if low > high:
            raise SynthgenError(f"option {self.name}.beta_min: {low} is above beta_max {high}")
        return {**super().read_options(ctx), "beta_min": low, "beta_max": high}

    def _draw_beta(self, rng: np.random.Generator, ctx: StrategyContext) -> float:
        options = ctx.options_of(self.name)
        return float(rng.uniform(options["beta_min"], options["beta_max"]))


@register_strategy
class Opaque(_TextureBlend):
    name = "opaque"
    summary = "texture replacing a Perlin region (framework Eq. 2)"

    def _draw_beta(self, rng: np.random.Generator, ctx: StrategyContext) -> float:
        return 1.0


@register_strategy
class Draem(Strategy):
    name = "draem"
    summary = "DRAEM: Perlin mask, augmented DTD texture, beta ~ U[0, 0.8), half normal, 30% rotated normals"
    needs = frozenset({"textures"})

    def draw(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int) -> Recipe:
        rotate = bool(rng.random() < DRAEM_ROTATE_PROBABILITY)
        params = {"normal_rotation": float(rng.uniform(-DRAEM_ROTATE_DEG, DRAEM_ROTATE_DEG)) if rotate else None}
        params["anomalous"] = bool(rng.random() < DRAEM_ANOMALY_PROBABILITY)
        if not params["anomalous"]:  # nothing else is drawn: DRAEM's discarded synthesis is skipped
            return Recipe(params)
        recipe = _draw_region_and_texture(rng, ctx, augment=True)
        recipe.params.update(params, beta=float(rng.uniform(0.0, DRAEM_BETA_MAX)))
        return recipe

    def render(self, images: torch.Tensor, recipes: list[Recipe], ctx: StrategyContext) -> Rendered:
        normals = images.clone()
        rotated = [i for i, r in enumerate(recipes) if r.params["normal_rotation"] is not None]
        if rotated:
            angles = [recipes[i].params["normal_rotation"] for i in rotated]
            normals[rotated] = rotate_images(images[rotated], angles, padding="zeros").clamp(0, 1)

        out = normals.clone()
        masks = torch.zeros(images.shape[0], *images.shape[2:], dtype=images.dtype, device=images.device)
        anomalous = [i for i, r in enumerate(recipes) if r.params["anomalous"]]
        if anomalous:
            chosen = [recipes[i] for i in anomalous]
            m = draem_perlin_masks(chosen, tuple(images.shape[2:]), images.device)
            beta = _column([r.params["beta"] for r in chosen], images)
            # DRAEM: beta weights the image, so the texture's share inside M is 1 - beta
            out[anomalous] = _blend(normals[anomalous], _textures(chosen, ctx), (1 - beta) * m[:, None])
            masks[anomalous] = m
        return Rendered(images=out, masks=masks, normals=normals, notes=_mask_notes(masks))

    renders_pixels = True

    def render_pixels(self, pixels: np.ndarray, recipes: list[Recipe], ctx: StrategyContext) -> RenderedPixels:
        normals, masks = pixels.copy(), np.zeros(pixels.shape[:3], dtype=bool)
        images = normals.copy()
        for b, r in enumerate(recipes):
            rotated = None  # the rotated normal in float, where the sample has one
            if r.params["normal_rotation"] is not None:
                rotated = np.clip(warp_rotate(cv2.LUT(pixels[b], BYTE_LEVELS), r.params["normal_rotation"]), 0, 1)
                normals[b] = images[b] = to_bytes(torch.from_numpy(rotated)).numpy()
            if not r.params["anomalous"]:
                continue
            masks[b] = draem_perlin_mask_array(r, pixels.shape[1:3])
            inside = np.flatnonzero(masks[b])
            if len(inside):  # an empty mask leaves the sample normal
                clean = rotated.reshape(-1, 3)[inside] if rotated is not None else BYTE_LEVELS[pixels[b].reshape(-1, 3)[inside]]
                share = float(np.float32(1) - np.float32(r.params["beta"]))  # the float path's 1 - beta, in float32
                _blend_pixels(images[b], inside, clean, _texture_pixels(r, ctx), share)
        counts = masks.reshape(len(masks), -1).sum(1)
        return RenderedPixels(images=images, masks=masks, normals=normals, notes=mask_notes(counts, masks[0].size))
