"""Training data for anomalib's models: a synthgen build's samples (or, for ``--anomalies own``, a dataset's
normal training images) as anomalib ``ImageBatch``es.

Shards (:class:`ShardTrainingSet`): an epoch holds every anomalous sample of the build once plus normal
items, so that anomalous items make up ``anomalous_fraction`` of it. Normal items are the build's samples
labelled normal (e.g. LogicAL's identity inpaints) and each distinct normal source image of the build (the
``normal`` the shards store with every sample), drawn in turn in a seeded order. Each item carries
``image`` (the sample), ``gt_mask`` (H, W) bool, ``gt_label`` and ``normal`` (its own normal image; for a
normal item the image itself): :class:`PairedImageBatch` is anomalib's ImageBatch with that one field more.
Images are float in [0, 1] at the model's size (bilinear, masks nearest: trainers.data.ShardSampleTransform).

Validation and test never come from the shards: ``synthgen-eval`` reads the real test split with the
project's readers (trainers/evaluate.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from anomalib.data import ImageBatch, ImageItem
from torch.utils.data import DataLoader, Dataset

from synthgen.generator.datasets import load_dataset
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import read_rgb, resize_rgb
from synthgen.generator.shards.reader import ShardDataset, read_manifest

from ..data import EpochShuffleSampler, ShardSampleTransform, source_numbers

DEFAULT_ANOMALOUS_FRACTION = 0.5


@dataclass
class PairedImageItem(ImageItem):
    """anomalib's ImageItem plus the sample's own normal image (3, H, W)."""

    normal: torch.Tensor | None = None


@dataclass
class PairedImageBatch(ImageBatch):
    """anomalib's ImageBatch plus ``normal`` (B, 3, H, W): each sample's own normal image."""

    item_class: ClassVar[type[ImageItem]] = PairedImageItem
    normal: torch.Tensor | None = None


class ShardTrainingSet(Dataset):
    """The training items of a build (see the module docstring). ``items`` lists (sample index, use_normal):
    use_normal=True means the item is that sample's normal source image, not the sample."""

    def __init__(self, build: str | Path, image_size: tuple[int, int], anomalous_fraction: float, seed: int):
        if not 0.0 < anomalous_fraction <= 1.0:
            raise SynthgenError(f"--anomalous-fraction: must be in (0, 1], got {anomalous_fraction}")
        self.build = Path(build)
        manifest = read_manifest(self.build)
        self.samples = ShardDataset(self.build, fields=("image", "mask", "normal"))
        meta = ShardDataset(self.build, fields=())  # labels and sources only, no pixels read
        labels = np.array([meta[i]["label"] for i in range(len(meta))], dtype=int)
        sources = [meta[i]["source_id"] for i in range(len(meta))]
        meta.close()
        anomalous = np.flatnonzero(labels == 1)
        if len(anomalous) == 0:
            raise SynthgenError(f"{self.build}: the build has no anomalous samples; anomalib's models need anomalies to learn from")
        self._check_mask_size()
        first_of_source = {}
        for i, source in enumerate(sources):
            first_of_source.setdefault(source, i)
        normal_pool = [(int(i), False) for i in np.flatnonzero(labels == 0)] + [(i, True) for i in sorted(first_of_source.values())]
        n_normal = round(len(anomalous) * (1.0 - anomalous_fraction) / anomalous_fraction)
        order = np.random.default_rng([seed, 2]).permutation(len(normal_pool))
        normals = [normal_pool[order[k % len(order)]] for k in range(n_normal)]
        self.items = [(int(i), False) for i in anomalous] + normals
        self.image_size = tuple(image_size)
        shard_size = tuple(int(v) for v in manifest["config"]["image_size"])
        self.transform = ShardSampleTransform(source_numbers(manifest), None if self.image_size == shard_size else self.image_size)
        self.counts = {"anomalous": len(anomalous), "normal": n_normal, "normal_pool": len(normal_pool),
                       "anomalous_fraction": anomalous_fraction}

    def _check_mask_size(self) -> None:
        """Every shard's masks must have its images' size (a build whose masks differ is damaged or foreign)."""
        import h5py

        for path in self.samples.files:
            with h5py.File(path, "r") as f:
                if f["mask"].shape[1:3] != f["image"].shape[1:3]:
                    raise SynthgenError(
                        f"{path}: masks are {'x'.join(map(str, f['mask'].shape[1:3]))} but images are "
                        f"{'x'.join(map(str, f['image'].shape[1:3]))}; every mask must have its image's size"
                    )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> PairedImageItem:
        index, use_normal = self.items[k]
        sample = self.transform(self.samples[index])
        if use_normal:
            image, mask, label = sample["normal"], torch.zeros_like(sample["mask"]), 0
        else:
            image, mask, label = sample["image"], sample["mask"], int(sample["label"])
        return PairedImageItem(
            image=image, gt_label=torch.tensor(label), gt_mask=mask[0] > 0.5, normal=sample["normal"],
            image_path=f"{self.build.name}#{index}{'/normal' if use_normal else ''}",
        )


class NormalTrainingSet(Dataset):
    """``--anomalies own``: the normal images of a dataset's train split, resized to the model's size."""

    def __init__(self, dataset: str, root: str | Path | None, category: str, image_size: tuple[int, int]):
        index = load_dataset(dataset, root, category)
        self.items = index.split("train", normal_only=True)
        if not self.items:
            raise SynthgenError(f"{index.root / index.category}: no normal training images")
        self.gray, self.image_size = index.gray, tuple(image_size)
        self.counts = {"normal": len(self.items)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> PairedImageItem:
        rgb = resize_rgb(read_rgb(self.items[k].path, allow_gray=self.gray), self.image_size)
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)
        return PairedImageItem(image=image, gt_label=torch.tensor(0), gt_mask=torch.zeros(self.image_size, dtype=torch.bool),
                               normal=image, image_path=str(self.items[k].path))


def training_loader(dataset: Dataset, batch_size: int, seed: int, workers: int = 0) -> DataLoader:
    """Batches of ``dataset`` in an order that is a function of (seed, epoch) (Lightning calls set_epoch)."""
    if batch_size < 1:
        raise SynthgenError(f"--batch-size: must be at least 1, got {batch_size}")
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochShuffleSampler(len(dataset), seed), num_workers=workers,
                      collate_fn=PairedImageBatch.collate, drop_last=len(dataset) >= batch_size, persistent_workers=workers > 0)
