"""Backbone patch features of a synthgen build's samples, computed once and cached; masks on the feature grid.

Feature-level trainers (GLASS's local anomaly synthesis, PBAS with ``--anomaly-shards``) look at a
build through a frozen backbone: every epoch would otherwise pay for the same forward passes. So the
patch features (:class:`trainers.features.PatchFeatureExtractor`) of

- every anomalous sample (label 1) of the build: its image, and its mask downsampled to the feature
  grid by :func:`mask_to_grid` (the one rule every method uses), and
- every distinct normal source image of the build (the ``normal`` field, one per source id),

are computed once per (backbone, layers, weights sha256, patch size, feature dimension, image size,
build manifest sha256) and kept in ``$SYNTHGEN_CACHE/features/<key>.feat``. Shard images are resized
to the model's size with :func:`trainers.data.resize_image` (images and their normals alike, so no
resize artefact tells them apart); masks are pooled from their stored resolution.

The cache is checked, not trusted. An entry is one JSON header line (format, key, array names,
dtypes, shapes, the sha256 of the payload) followed by the raw arrays. On read the key must match and
the payload must hash to the header's value; a bad entry is recomputed and rewritten, with a one-line
warning on stderr. Features are stored as float16 (half the memory; the trainers compute in float32).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from synthgen.generator.atomic import atomic_path
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import sha256_file
from synthgen.generator.paths import cache_root
from synthgen.generator.records import MAX_RECORD_BYTES, check_record, parse_json
from synthgen.generator.shards.reader import ShardDataset, read_manifest

from .data import resize_image
from .features import PatchFeatureExtractor

CACHE_FORMAT = 1
CACHE_SUFFIX = ".feat"
MANIFEST_NAME = "manifest.json"


def mask_to_grid(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Pixel masks (N, 1, H, W) or (N, H, W) -> (N, H_m * W_m) labels in {0, 1} on the feature grid.

    A grid cell is anomalous when any pixel it covers is (adaptive max pooling): the rule of GLASS's
    official code (``perlin_mask``: max_pool2d by the image-to-grid ratio), which this generalises to
    sizes that are not multiples of the grid. Used by every method that labels patch features by a mask.
    """
    if masks.dim() == 3:
        masks = masks[:, None]
    pooled = F.adaptive_max_pool2d((masks > 0).float(), tuple(grid))
    return pooled.flatten(1)


@dataclass
class ShardFeatures:
    """What :func:`shard_features` returns; every tensor on the CPU.

    anomalous: float16 (A, H_m * W_m, D), features of the build's anomalous samples (label 1)
    masks: float32 (A, H_m * W_m), their masks on the grid (:func:`mask_to_grid`)
    sources: int64 (A,), the row of each anomalous sample's normal image in ``normals``
    normals: float16 (S, H_m * W_m, D), features of the build's distinct normal source images
    """

    anomalous: torch.Tensor
    masks: torch.Tensor
    sources: torch.Tensor
    normals: torch.Tensor
    grid: tuple[int, int]
    counts: dict  # anomalous samples, normal sources, the cache file (for run.json)


def build_provenance(build: str | Path) -> dict:
    """What run.json records about a build a trainer read: path, manifest sha256, config hash, strategies."""
    build = Path(build)
    manifest = read_manifest(build)
    return {
        "shards": str(build.resolve()),
        "manifest_sha256": sha256_file(build / MANIFEST_NAME),
        "shards_config_hash": manifest["config_hash"],
        "strategies": manifest["strategies"],
        "dataset": manifest["dataset"]["name"],
        "category": manifest["dataset"]["category"],
        "num_samples": manifest["totals"]["samples"],
    }


def extractor_params(config) -> dict:
    """What fixes a feature model's extractor output besides the image size (PBASConfig, GLASSConfig)."""
    return {"backbone": config.backbone, "layers": list(config.layers), "weights_sha256": config.weights_sha256,
            "patch_size": config.patch_size, "embed_dim": config.embed_dim}


def cache_key(extractor_params: dict, manifest_sha256: str) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "extractor": extractor_params, "manifest": manifest_sha256}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def shard_features(
    build: str | Path,
    extractor: PatchFeatureExtractor,
    extractor_params: dict,
    image_size: tuple[int, int],
    *,
    batch_size: int = 8,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> ShardFeatures:
    """The cached features of ``build`` (computed and cached when missing or damaged).

    extractor_params: everything that fixes the extractor's output besides the build (backbone name,
    layers, weights sha256, patch size, feature dimension); ``image_size`` is added to it.
    """
    build = Path(build)
    read_manifest(build)  # a one-line error when the build is missing or unfinished
    params = {**extractor_params, "image_size": list(image_size)}
    key = cache_key(params, sha256_file(build / MANIFEST_NAME))
    path = (Path(cache_dir) if cache_dir is not None else cache_root() / "features") / f"{key}{CACHE_SUFFIX}"
    if path.is_dir() or path.is_symlink():  # not an entry synthgen wrote: never replaced
        raise SynthgenError(f"{path}: feature cache entry is a folder or a link; remove it, or choose another cache folder")
    arrays = _read_entry(path, key) if path.is_file() else None
    if arrays is None:
        arrays = _compute(build, extractor, tuple(image_size), batch_size, device, progress)
        _write_entry(path, key, arrays)
    grid = tuple(int(v) for v in arrays["grid"])
    return ShardFeatures(
        anomalous=torch.from_numpy(arrays["anomalous"]),
        masks=torch.from_numpy(arrays["masks"].astype(np.float32)),
        sources=torch.from_numpy(arrays["sources"].astype(np.int64)),
        normals=torch.from_numpy(arrays["normals"]),
        grid=grid,
        counts={"anomalous_samples": int(len(arrays["anomalous"])), "normal_sources": int(len(arrays["normals"])), "cache": str(path)},
    )


@torch.no_grad()
def _compute(build: Path, extractor: PatchFeatureExtractor, image_size: tuple[int, int], batch_size: int, device: str, progress: bool) -> dict[str, np.ndarray]:
    data = ShardDataset(build, fields=("image", "mask", "normal"))
    try:
        anomalous, masks, source_ids, normal_images = [], [], [], {}
        grid = None
        pending: list[dict] = []

        def flush() -> None:
            nonlocal grid
            images = torch.stack([resize_image(s["image"], image_size) for s in pending]).to(device)
            features, grid = extractor(images)
            anomalous.append(features.cpu().half())
            masks.append(torch.cat([mask_to_grid(s["mask"][None], grid) for s in pending]).to(torch.uint8))
            pending.clear()

        for i in tqdm(range(len(data)), desc="shard features", unit="sample", disable=not progress, leave=False):
            sample = data[i]
            if sample["source_id"] not in normal_images:
                normal_images[sample["source_id"]] = resize_image(sample["normal"], image_size)
            if sample["label"] != 1:
                continue
            source_ids.append(sample["source_id"])
            pending.append(sample)
            if len(pending) == batch_size:
                flush()
        if pending:
            flush()
    finally:
        data.close()
    if not anomalous:
        raise SynthgenError(f"{build}: the build has no anomalous samples (label 1) to learn from")
    order = sorted(normal_images)
    normals = []
    for start in range(0, len(order), batch_size):
        images = torch.stack([normal_images[s] for s in order[start:start + batch_size]]).to(device)
        normals.append(extractor(images)[0].cpu().half())
    row_of = {source: i for i, source in enumerate(order)}
    return {
        "anomalous": torch.cat(anomalous).numpy(),
        "masks": torch.cat(masks).numpy(),
        "sources": np.array([row_of[s] for s in source_ids], dtype=np.int64),
        "normals": torch.cat(normals).numpy(),
        "grid": np.array(grid, dtype=np.int64),
    }


def _write_entry(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    digest = hashlib.sha256()
    for array in arrays.values():
        digest.update(np.ascontiguousarray(array).data)
    header = {
        "format": CACHE_FORMAT,
        "key": key,
        "arrays": [{"name": n, "dtype": a.dtype.str, "shape": list(a.shape)} for n, a in arrays.items()],
        "payload_sha256": digest.hexdigest(),
    }
    with atomic_path(path, suffix=CACHE_SUFFIX) as tmp:
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
            for array in arrays.values():
                f.write(np.ascontiguousarray(array).data)


def _check_arrays(arrays: dict[str, np.ndarray]) -> None:
    """The meaning of an entry's arrays (ValueError otherwise): one mask, one source row per anomalous
    sample, every source row inside ``normals``, a grid of two positive sides."""
    missing = {"anomalous", "masks", "sources", "normals", "grid"} - set(arrays)
    if missing:
        raise ValueError(f"it lacks the array(s) {', '.join(sorted(missing))}")
    n, sources, grid = len(arrays["anomalous"]), arrays["sources"], arrays["grid"]
    if len(arrays["masks"]) != n or sources.shape != (n,) or sources.dtype.kind not in "iu":
        raise ValueError("its masks or source rows do not match its anomalous samples")
    if n and (sources.min() < 0 or sources.max() >= len(arrays["normals"])):
        raise ValueError(f"its source rows point outside its {len(arrays['normals'])} normal images")
    if grid.shape != (2,) or grid.dtype.kind not in "iu" or (grid <= 0).any():
        raise ValueError(f"its grid {grid.tolist()} is not two positive sides")


def _read_entry(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays of a cache entry, or None (with a one-line warning) when it is damaged or foreign."""
    try:
        with open(path, "rb") as f:
            line = f.readline(MAX_RECORD_BYTES)
            # types and bounds of the header (generator/records.py); SynthgenError is a ValueError-free one-liner
            header = check_record(parse_json(line, path, "feature cache header"), "feature cache header", path)
            if header["format"] != CACHE_FORMAT or header["key"] != key:
                raise ValueError("its header names another entry")
            sizes = [math.prod(a["shape"]) * np.dtype(a["dtype"]).itemsize for a in header["arrays"]]
            if sum(sizes) != path.stat().st_size - len(line):  # checked before the payload is allocated
                raise ValueError(f"its header describes {sum(sizes)} bytes of arrays, the file holds "
                                 f"{path.stat().st_size - len(line)}")
            payload = bytearray(sum(sizes))  # writable: the arrays are views of it
            if f.readinto(payload) != len(payload):
                raise ValueError("it is shorter than its size")
        if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
            raise ValueError("its payload does not match the sha256 in its header")
        arrays, offset = {}, 0
        for spec in header["arrays"]:
            dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
            size = int(np.prod(shape)) * dtype.itemsize
            arrays[spec["name"]] = np.frombuffer(payload, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
            offset += size
        if offset != len(payload):
            raise ValueError("its payload size does not match its header")
        _check_arrays(arrays)
        return arrays
    except (OSError, ValueError, KeyError, TypeError, SynthgenError) as e:
        print(f"synthgen-train: warning: feature cache entry {path} is damaged ({e}); recomputing it", file=sys.stderr)
        return None
