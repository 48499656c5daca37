"""The shard file format: one place that says what every HDF5 dataset in a shard is.

A shard is an HDF5 file of N samples, every per-sample dataset has the samples on its first axis and
one chunk per sample (so a random read touches one chunk). Layout (schema version 2):

===============  ==================  =======  =============================================================
dataset          shape               dtype    meaning
===============  ==================  =======  =============================================================
image            (N, H, W, 3)        uint8    the synthesized (anomalous or normal) RGB image
mask             (N, H, W)           uint8    ground truth: 0 normal pixel, 255 anomalous pixel
normal           (N, H, W, 3)        uint8    the clean image the sample was made from (reconstruction target)
label            (N,)                uint8    1 if the mask has any anomalous pixel, else 0
index            (N,)                uint64   the sample's position in the build plan (global, 0-based)
seed             (N,)                uint64   np.random.default_rng(seed) reproduces every random draw
variant          (N,)                uint32   how many samples of this source image came before this one
strategy         (N,)                str      strategy name (utf-8)
source_id        (N,)                str      dataset-relative id of the source image, e.g. train/good/007
source_sha256    (N,)                S64      sha256 of the source image file
params           (N,)                str      JSON object: every random choice and option of the sample
<extra>          (N, ...)            varies   strategy extras (edge maps, JND maps ...), see attrs["doc"]
has_<extra>      (N,)                uint8    1 where the sample's strategy wrote <extra> (else zeros)
===============  ==================  =======  =============================================================

Root attributes: schema_version, synthgen_version, dataset, category, split, shard_index,
num_shards, first_index, num_samples, image_height, image_width, config_hash.

Compression: images, normals and masks are stored raw (no filter), so reading a sample is a copy and
any HDF5 reader can read them; strategy extras (edge and JND maps) use gzip (level 4) + shuffle,
readable by every HDF5 build. ``--compress-images`` gzips image and normal too.

Versions: schema 1 (until issue 17) stored masks with gzip-4 + shuffle: about 0.5 KiB per 256^2
sample instead of 64 KiB, but decompressing cost more than reading the 192 KiB image (on a shared
2-core machine: 0.35-0.6 ms against 0.05-0.14 ms raw). Schema 2 stores them raw: +64 KiB per 256^2
sample, about +17% of a sample's image + normal + mask. Both read the same (HDF5 applies the filter),
so readers accept both; the version is in every shard's root attributes and in the manifest.
"""

from __future__ import annotations

from typing import Any, Mapping

SCHEMA_VERSION = 2
#: shard/manifest versions this code reads (1: gzip masks, 2: raw masks; the same datasets otherwise)
READABLE_SCHEMA_VERSIONS = (1, 2)

MASK_ON = 255  # value of an anomalous pixel in ``mask`` (MVTec's convention, so PNG export is a copy)
GZIP_LEVEL = 4

# name -> (per-sample shape as a function of (H, W), numpy dtype, compressed?, doc)
CORE_FIELDS: dict[str, tuple] = {
    "image": (lambda h, w: (h, w, 3), "uint8", False, "synthesized RGB image"),
    "mask": (lambda h, w: (h, w), "uint8", False, "ground truth, 0 normal / 255 anomalous"),
    "normal": (lambda h, w: (h, w, 3), "uint8", False, "clean source image the sample was made from"),
}

# per-sample scalar/string metadata
META_FIELDS = ("label", "index", "seed", "variant", "strategy", "source_id", "source_sha256", "params")


def field_table(image_size: tuple[int, int], compress_images: bool, extra_fields: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``fields``: dtype, per-sample shape, compression and meaning of every image-like
    dataset of a shard, the core ones and the strategies' extras (``strategies.base.ExtraField``)."""
    h, w = image_size
    fields: dict[str, Any] = {}
    for name, (shape_fn, dtype, compressed, doc) in CORE_FIELDS.items():
        compressed = compressed or (compress_images and name in ("image", "normal"))
        fields[name] = {
            "dtype": dtype,
            "shape": ["N", *shape_fn(h, w)],
            "compression": f"gzip-{GZIP_LEVEL}+shuffle" if compressed else "none",
            "doc": doc,
        }
    for name, spec in extra_fields.items():
        fields[name] = {
            "dtype": spec.dtype,
            "shape": ["N", *spec.shape(h, w)],
            "compression": f"gzip-{GZIP_LEVEL}+shuffle" if spec.compress else "none",
            "doc": spec.doc,
        }
    return fields


def shard_name(dataset: str, category: str, split: str, i: int, n: int) -> str:
    """``{dataset}-{category}-{split}-{i:05d}-of-{n:05d}.h5`` (DESIGN.md section 3)."""
    return f"{dataset}-{category}-{split}-{i:05d}-of-{n:05d}.h5"


def sidecar_name(shard_file: str) -> str:
    """The per-shard JSON written after the shard itself: ``<shard stem>.json``."""
    assert shard_file.endswith(".h5")
    return shard_file[:-3] + ".json"
