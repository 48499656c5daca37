"""What PBAS and the feature-level ensemble share: locally aware patch features, score maps, normal images.

Patch features (PBAS Sec. III-B, Eqs. 1-4; the official code's PatchCore-style choices, DESIGN.md 5):

1. each requested backbone layer is unfolded into p x p neighbourhoods (stride 1, zero padding p // 2),
   so every position holds a vector of C * p * p values ordered channel-major (Eqs. 2-3);
2. every layer after the first is resized bilinearly (align_corners=False) to the first layer's grid
   (H_m, W_m), neighbourhood by neighbourhood (Eq. 4's f_resize);
3. f_agg: each position's vector is adaptive-average-pooled to ``embed_dim`` values per layer, and the
   layers' vectors, concatenated, are pooled once more to ``embed_dim`` (the official code's
   ``Preprocessing`` then ``Aggregator``, both 1536 for WideResNet50 layer2 + layer3).

Score maps (PBAS Eq. 12, SimpleNet's inference): patch scores on the (H_m, W_m) grid are upsampled
bilinearly to the image size, then smoothed by a Gaussian of sigma 4 pixels (the official code's
``RescaleSegmentor``: scipy.ndimage.gaussian_filter, mode "reflect", truncate 4). The image score is
the maximum patch score (Eq. 11), taken before upsampling.

Normal training images come from a dataset reader (the ``train`` split's normal images) or from a
synthgen build (the distinct normal source images of its samples, field ``normal``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthgen.generator.datasets import load_dataset
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import read_rgb, resize_rgb, sha256_file

from ..backbones import Backbone

#: PBAS Sec. IV-B: neighbourhood size p = 3.
PATCH_SIZE = 3
#: Official PBAS/SimpleNet: pretrain_embed_dimension = target_embed_dimension = 1536.
EMBED_DIM = 1536
#: PBAS Sec. IV-B: feature levels 2 and 3 of the backbone.
LAYERS = ("layer2", "layer3")
#: Official code (common.RescaleSegmentor): Gaussian smoothing of the upsampled map, sigma 4.
SMOOTHING_SIGMA = 4.0
#: scipy.ndimage.gaussian_filter's default kernel radius in sigmas.
GAUSSIAN_TRUNCATE = 4.0


def patchify(features: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C * p * p, H, W): each position's p x p neighbourhood, channel-major."""
    b, c, h, w = features.shape
    unfolded = F.unfold(features, kernel_size=patch_size, padding=patch_size // 2)
    return unfolded.view(b, c * patch_size * patch_size, h, w)


def adaptive_pool_rows(rows: torch.Tensor, size: int) -> torch.Tensor:
    """(N, L) -> (N, size): adaptive average pooling along each row (the official ``MeanMapper``)."""
    return F.adaptive_avg_pool1d(rows[:, None, :], size)[:, 0, :]


class PatchFeatureExtractor(nn.Module):
    """E_phi: images (B, 3, H, W) in [0, 1] -> patch features (B, H_m * W_m, embed_dim) and (H_m, W_m)."""

    def __init__(self, backbone: Backbone, patch_size: int = PATCH_SIZE, embed_dim: int = EMBED_DIM):
        super().__init__()
        if patch_size < 1 or patch_size % 2 == 0:
            raise SynthgenError(f"--patch-size: must be an odd number >= 1, got {patch_size}")
        if embed_dim < 1:
            raise SynthgenError(f"--embed-dim: must be at least 1, got {embed_dim}")
        self.backbone = backbone
        self.patch_size = patch_size
        self.embed_dim = embed_dim

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        maps = list(self.backbone(images).values())
        grid = tuple(maps[0].shape[-2:])
        b = images.shape[0]
        per_layer = []
        for i, layer_map in enumerate(maps):
            patches = patchify(layer_map, self.patch_size)
            if i > 0:
                patches = F.interpolate(patches, size=grid, mode="bilinear", align_corners=False)
            rows = patches.permute(0, 2, 3, 1).reshape(b * grid[0] * grid[1], -1)
            per_layer.append(adaptive_pool_rows(rows, self.embed_dim))
        stacked = torch.stack(per_layer, dim=1).reshape(len(per_layer[0]), -1)
        features = adaptive_pool_rows(stacked, self.embed_dim)
        return features.view(b, grid[0] * grid[1], self.embed_dim), grid


# ---------------------------------------------------------------------------------------- score maps


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


# ------------------------------------------------------------------------------------ normal images


@dataclass
class NormalImages:
    """Normal training images as uint8 (N, 3, H, W) and what run.json records about where they came from."""

    images: torch.Tensor
    provenance: dict

    def batches(self, batch_size: int, order: np.ndarray | None = None):
        """Float [0, 1] batches in ``order`` (default: stored order)."""
        order = np.arange(len(self.images)) if order is None else order
        for start in range(0, len(order), batch_size):
            yield self.images[order[start:start + batch_size]].float().div_(255.0)


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def _combined_hash(hashes: list[str]) -> str:
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def load_normal_images(
    image_size: tuple[int, int],
    *,
    dataset: str | None = None,
    root: str | Path | None = None,
    category: str | None = None,
    shards: str | Path | None = None,
) -> NormalImages:
    """The normal training images, resized to ``image_size``, from a dataset's train split or a build.

    Exactly one source: ``dataset`` (+ ``root``, ``category``) or ``shards``.
    """
    if (dataset is None) == (shards is None):
        raise SynthgenError("--dataset/--shards: give exactly one source of normal training images")
    if shards is not None:
        return _normals_from_shards(Path(shards), image_size)
    if not category:
        raise SynthgenError("--category: needed with --dataset")
    index = load_dataset(dataset, root, category)
    items = index.split("train", normal_only=True)
    if not items:
        raise SynthgenError(f"{index.root / index.category}: no normal training images")
    images = torch.stack([_to_tensor(resize_rgb(read_rgb(s.path, allow_gray=index.gray), image_size)) for s in items])
    provenance = {
        "dataset": dataset,
        "root": str(Path(index.root).resolve()),
        "category": category,
        "num_images": len(items),
        "sources_sha256": _combined_hash([f"{s.id} {sha256_file(s.path)}" for s in items]),
    }
    return NormalImages(images, provenance)


def _normals_from_shards(build: Path, image_size: tuple[int, int]) -> NormalImages:
    """One image per distinct source id (every variant of a source carries the same normal image)."""
    from synthgen.generator.shards.reader import ShardDataset, read_manifest

    manifest = read_manifest(build)
    data = ShardDataset(build, fields=("normal",))
    try:
        by_source: dict[str, torch.Tensor] = {}
        for i in range(len(data)):
            sample = data[i]
            if sample["source_id"] not in by_source:
                by_source[sample["source_id"]] = sample["normal"]
    finally:
        data.close()
    if not by_source:
        raise SynthgenError(f"{build}: the build has no samples")
    images = []
    for source_id in sorted(by_source):
        rgb = (by_source[source_id].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        images.append(_to_tensor(resize_rgb(rgb, image_size)))
    provenance = {
        "shards": str(build.resolve()),
        "shards_config_hash": manifest["config_hash"],
        "dataset": manifest["dataset"]["name"],
        "category": manifest["dataset"]["category"],
        "num_images": len(images),
    }
    return NormalImages(torch.stack(images), provenance)
