"""Data for the trainers: synthetic shards to train and select models on, real test sets to evaluate on.

:class:`SynthgenDataModule` (a Lightning DataModule) has two independent halves:

- **fit** (``shards=BUILD_DIR``): every sample of a synthgen build, read through
  :class:`generator.shards.reader.ShardDataset` (fields ``image``, ``mask``, ``normal``, plus a
  method's ``extra_fields``, e.g. LogicAL's edge and JND maps). A fixed
  fraction of the samples, chosen by a seeded permutation, is held out as a *synthetic* validation
  set for model selection. Real test images never take part in training or model selection.
  Samples are split individually, so variants of one normal image may sit on both sides: the
  validation loss measures fit to unseen synthetic anomalies, not to unseen normal images.
  Each sample gets ``source_number``: the 1-based position of its source image in the build's
  source list (manifest ``dataset.sources``, sorted by id), which the reconstruction trainer's
  parity split uses (trainers/reconstruction/module.py).
- **test** (``test=TestSetSpec(...)``): a real test set read through
  :func:`generator.datasets.load_dataset`, images resized to the model's size. Ground truth stays
  with the :class:`SourceImage` records (full-resolution files), so the evaluator can read it at
  whatever resolution it scores (trainers/evaluate.py).

Determinism: the training order of epoch e is ``default_rng([seed, 1, e]).permutation`` (Lightning
calls ``set_epoch``), the same after a resume and for any number of workers; the validation split is
``default_rng([seed, 0]).permutation``. Workers only read: ShardDataset opens its HDF5 files lazily in
each worker process, so forked workers are safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from synthgen.generator.datasets import DatasetIndex, SourceImage, load_dataset
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import read_rgb, resize_rgb
from synthgen.generator.shards.reader import ShardDataset, read_manifest

#: Share of the shard samples held out for synthetic validation (model selection).
DEFAULT_VAL_FRACTION = 0.1
MAX_VAL_FRACTION = 0.5
_SPLIT_STREAM, _SHUFFLE_STREAM = 0, 1  # separate seed streams: validation split, epoch order
SHARD_FIELDS = ("image", "mask", "normal")

#: ``--kinds`` accepts MVTec LOCO's short names for its anomaly folders.
KIND_ALIASES = {"logical": "logical_anomalies", "structural": "structural_anomalies"}
#: Splits whose normal images may be added to the test normals (``--extra-normals``).
EXTRA_NORMAL_SPLITS = ("validation",)


# ----------------------------------------------------------------------------------------- shards


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) sample indices, each sorted: a seeded random ``val_fraction`` share is held out.

    A positive fraction holds out at least one sample; at least one sample always stays for training.
    """
    if not 0.0 <= val_fraction <= MAX_VAL_FRACTION:
        raise SynthgenError(f"--val-fraction: must be in [0, {MAX_VAL_FRACTION}], got {val_fraction}")
    n_val = int(round(val_fraction * n))
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n - n_val < 1:
        raise SynthgenError(f"--val-fraction: {n} sample(s) leave none for training after holding out {n_val}")
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation every epoch, a pure function of (seed, epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng([self.seed, _SHUFFLE_STREAM, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


def source_numbers(manifest: dict) -> dict[str, int]:
    """source id -> its 1-based position in the build's source list (the paper's index i)."""
    return {s["id"]: i + 1 for i, s in enumerate(manifest["dataset"]["sources"])}


def sample_source_ids(build_dir: str | Path) -> list[str]:
    """The source id of every sample of a build, in ShardDataset order (metadata only, no pixels)."""
    meta = ShardDataset(build_dir, fields=())
    try:
        return [meta[i]["source_id"] for i in range(len(meta))]
    finally:
        meta.close()  # no handle may outlive this call into a forked worker


def resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


class ShardSampleTransform:
    """Adds ``source_number`` to a shard sample, resizes it to the model's size when that differs, then
    applies the method's own ``then`` (e.g. LogicAL's conversion of its edge and JND maps).

    Images and normals are resized bilinearly (antialiased when shrinking), masks by nearest neighbour.
    """

    def __init__(self, numbers: dict[str, int], size: tuple[int, int] | None, then: Callable[[dict], dict] | None = None):
        self.numbers = numbers
        self.size = size
        self.then = then

    def __call__(self, sample: dict) -> dict:
        sample["source_number"] = self.numbers[sample["source_id"]]
        if self.size is not None:
            sample["image"] = resize_image(sample["image"], self.size)
            sample["normal"] = resize_image(sample["normal"], self.size)
            sample["mask"] = F.interpolate(sample["mask"][None], size=self.size, mode="nearest")[0]
        return self.then(sample) if self.then is not None else sample


# ------------------------------------------------------------------------------------------- test


@dataclass(frozen=True)
class TestSetSpec:
    """Which real images to evaluate on.

    kinds: anomaly folders (defect types) to include; empty = every one in the test split. MVTec
        LOCO's ``logical``/``structural`` are accepted for ``logical_anomalies``/``structural_anomalies``.
    extra_normals: other splits whose normal images are added to the normal test images (MVTec LOCO:
        ``validation``; the shared juice_bottle copy has only 3 test/good images).
    """

    dataset: str
    root: Path | None
    category: str
    kinds: tuple[str, ...] = ()
    extra_normals: tuple[str, ...] = ()


def select_test_images(index: DatasetIndex, kinds: tuple[str, ...] = (), extra_normals: tuple[str, ...] = ()) -> list[SourceImage]:
    """The test images of ``index`` restricted to ``kinds``, plus the normal images of ``extra_normals``.

    Order: test normals, extra normals, then the anomalies, each in id order.
    """
    test = index.split("test")
    available = sorted({s.defect_type for s in test if not s.is_normal})
    wanted = [KIND_ALIASES.get(k, k) for k in kinds] or available
    for kind in wanted:
        if kind not in available:
            raise SynthgenError(f"--kinds: {kind!r} is not an anomaly type of the test set (has: {', '.join(available) or 'none'})")
    normals = [s for s in test if s.is_normal]
    for split in extra_normals:
        if split not in EXTRA_NORMAL_SPLITS:
            raise SynthgenError(f"--extra-normals: {split!r} is not allowed (choose from {', '.join(EXTRA_NORMAL_SPLITS)})")
        extra = index.split(split, normal_only=True)
        if not extra:
            raise SynthgenError(f"--extra-normals: {index.root / index.category} has no normal {split} images")
        normals += extra
    anomalies = [s for s in test if not s.is_normal and s.defect_type in wanted]
    if not anomalies and not normals:
        raise SynthgenError(f"{index.root / index.category}: no test images")
    return normals + anomalies


class RealTestImages(Dataset):
    """Real test images, resized to the model's (H, W): {"image": (3, H, W) float in [0, 1], "position": i}.

    ``original_size`` of each item is read from the decoded file, so the evaluator knows the
    resolution of its ground truth.
    """

    def __init__(self, items: list[SourceImage], image_size: tuple[int, int], gray: bool):
        self.items = items
        self.image_size = tuple(image_size)
        self.gray = gray

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        rgb = read_rgb(self.items[i].path, allow_gray=self.gray)
        resized = resize_rgb(rgb, self.image_size)
        image = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))).float().div_(255.0)
        return {"image": image, "position": i, "original_size": torch.tensor(rgb.shape[:2])}


# ------------------------------------------------------------------------------------- datamodule


class SynthgenDataModule(L.LightningDataModule):
    """Shards for fit/validate, a real test set for test; either half may be absent.

    image_size: (H, W) the model takes. Default for fit: the build's image size. Required for test.
    extra_fields: shard fields a method needs besides image, mask and normal (LogicAL: edge, jnd ...);
        they are not resized, so a build with extra fields must already have the model's size.
    sample_transform: applied to every shard sample after the resize (see ShardSampleTransform).
    """

    def __init__(
        self,
        shards: str | Path | None = None,
        *,
        test: TestSetSpec | None = None,
        image_size: tuple[int, int] | None = None,
        batch_size: int = 8,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        seed: int = 0,
        workers: int = 0,
        extra_fields: tuple[str, ...] = (),
        sample_transform: Callable[[dict], dict] | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise SynthgenError(f"--batch-size: must be at least 1, got {batch_size}")
        if workers < 0:
            raise SynthgenError(f"--workers: must be 0 or more, got {workers}")
        self.shards = Path(shards) if shards is not None else None
        self.test_spec = test
        self.image_size = tuple(image_size) if image_size is not None else None
        self.batch_size, self.val_fraction, self.seed, self.workers = batch_size, val_fraction, seed, workers
        self.extra_fields, self.sample_transform = tuple(extra_fields), sample_transform
        self.manifest: dict | None = None
        self.shard_dataset: ShardDataset | None = None
        self.sample_source_numbers: np.ndarray | None = None
        self.train_indices = self.val_indices = np.zeros(0, dtype=np.int64)
        self.test_index: DatasetIndex | None = None
        self.test_images: RealTestImages | None = None

    # ------------------------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        """Index the shards and/or the test set (once; later calls do nothing)."""
        if self.shards is not None and self.shard_dataset is None:
            self._setup_shards()
        if self.test_spec is not None and self.test_images is None:
            self._setup_test()

    def _setup_shards(self) -> None:
        manifest = read_manifest(self.shards)
        numbers = source_numbers(manifest)
        ids = sample_source_ids(self.shards)
        if not ids:
            raise SynthgenError(f"{self.shards}: the build has no samples")
        unknown = sorted(set(ids) - set(numbers))
        if unknown:
            raise SynthgenError(f"{self.shards}: sample source {unknown[0]!r} is not in the manifest's source list")
        shard_size = tuple(int(v) for v in manifest["config"]["image_size"])
        if self.image_size is None:
            self.image_size = shard_size
        resize_to = None if self.image_size == shard_size else self.image_size
        if resize_to is not None and self.extra_fields:
            raise SynthgenError(
                f"--image-size: {self.shards} has {shard_size[0]}x{shard_size[1]} images and fields "
                f"({', '.join(self.extra_fields)}) that are not resized; build the shards at the model's size"
            )
        self.manifest = manifest
        self.sample_source_numbers = np.array([numbers[s] for s in ids], dtype=np.int64)
        self.train_indices, self.val_indices = split_indices(len(ids), self.val_fraction, self.seed)
        transform = ShardSampleTransform(numbers, resize_to, self.sample_transform)
        self.shard_dataset = ShardDataset(self.shards, fields=SHARD_FIELDS + self.extra_fields, transform=transform)

    def _setup_test(self) -> None:
        if self.image_size is None:
            raise SynthgenError("test set: the model's image size is needed to resize test images")
        spec = self.test_spec
        index = load_dataset(spec.dataset, spec.root, spec.category)
        items = select_test_images(index, spec.kinds, spec.extra_normals)
        self.test_index = index
        self.test_images = RealTestImages(items, self.image_size, index.gray)

    # ------------------------------------------------------------------------------ dataloaders
    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.workers,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        subset = Subset(self.shard_dataset, self.train_indices.tolist())
        return self._loader(subset, EpochShuffleSampler(len(subset), self.seed))

    def val_dataloader(self) -> DataLoader | list:
        if len(self.val_indices) == 0:
            return []  # Lightning skips validation
        return self._loader(Subset(self.shard_dataset, self.val_indices.tolist()))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_images)

    # --------------------------------------------------------------------------------- summary
    def split_summary(self) -> dict:
        """Counts for run.json: samples per split, and the training samples' source images by number parity."""
        numbers = self.sample_source_numbers[self.train_indices]
        odd = numbers % 2 == 1
        return {
            "train_samples": int(len(self.train_indices)),
            "val_samples": int(len(self.val_indices)),
            "val_fraction": self.val_fraction,
            "train_sources_odd": int(len(np.unique(numbers[odd]))),
            "train_sources_even": int(len(np.unique(numbers[~odd]))),
        }
