"""What the feature-space methods (PBAS, GLASS, the feature-level ensemble, shard features) share:
locally aware patch features and the normal training images.

Patch features (PBAS Sec. III-B, Eqs. 1-4; the official code's PatchCore-style choices, DESIGN.md 5):

1. each requested backbone layer is unfolded into p x p neighbourhoods (stride 1, zero padding p // 2),
   so every position holds a vector of C * p * p values ordered channel-major (Eqs. 2-3);
2. every layer after the first is resized bilinearly (align_corners=False) to the first layer's grid
   (H_m, W_m), neighbourhood by neighbourhood (Eq. 4's f_resize);
3. f_agg: each position's vector is adaptive-average-pooled to ``embed_dim`` values per layer, and the
   layers' vectors, concatenated, are pooled once more to ``embed_dim`` (the official code's
   ``Preprocessing`` then ``Aggregator``, both 1536 for WideResNet50 layer2 + layer3).

Normal training images come from a dataset reader (the ``train`` split's normal images) or from a
synthgen build (the distinct normal source images of its samples, field ``normal``).

How patch scores become anomaly maps and image scores: trainers/score_maps.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthgen.generator.datasets import load_dataset
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import read_rgb, resize_rgb, sha256_file

from .backbones import Backbone
from .options import cli

#: PBAS Sec. IV-B: neighbourhood size p = 3.
PATCH_SIZE = 3
#: Official PBAS/SimpleNet: pretrain_embed_dimension = target_embed_dimension = 1536.
EMBED_DIM = 1536
#: PBAS Sec. IV-B: feature levels 2 and 3 of the backbone.
LAYERS = ("layer2", "layer3")


def parse_layers(text: str) -> tuple[str, ...]:
    """``--layers`` text ``layer2,layer3`` -> ("layer2", "layer3")."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


# The options fields of the backbone that PBAS and GLASS share (their options dataclasses, trainers/options.py).


def backbone_field() -> Any:
    return field(default="wide_resnet50_2", metadata=cli("wide_resnet50_2 (the paper), resnet18 or efficientnet_lite0."))


def layers_field() -> Any:
    return field(default=LAYERS, metadata=cli("Backbone layers, comma-separated (the paper: levels 2 and 3).",
                                              parse=parse_layers, text=",".join(LAYERS)))


def weights_field() -> Any:
    return field(default=None, metadata=cli("Backbone checkpoint file (default: resolved by name), or 'none' for random weights."))


def weights_dir_field() -> Any:
    return field(default=None, metadata=cli("Folder to look for backbone checkpoints in."))


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
