"""Walking a finished build sample by sample, for the writers of other formats (publish, export).

Two sources of pixels:

- :func:`iter_samples` reads the shards in plan order: each synthesized image, its mask, optionally
  the clean normal it was made from, and the per-sample metadata (the shard's columns, see format.py).
- :func:`training_images` re-reads the build's normal *source* images (the dataset's training split)
  at the build's image size, each checked against the sha256 the manifest recorded. Exports write them
  as the ``train/good`` images a third-party trainer fits on.

Reading is done a block of rows at a time: one h5py call per block and field costs far less than
one per sample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from ..errors import SynthgenError
from ..imageio import read_rgb, resize_rgb, sha256_file
from .untrusted import check_shard, existing_shard_paths, open_shard, read_names, read_text_column, resolve_inside

_BLOCK = 64  # rows read per h5py call


@dataclass
class BuildSample:
    """One row of a build: the pixels and everything the shard says about them."""

    index: int  # position in the build plan (global, 0-based): unique within a build
    label: int  # 1 anomalous (mask not empty), 0 normal
    strategy: str
    source_id: str
    source_sha256: str
    seed: int
    variant: int
    params: str  # JSON text, as stored
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8, 0 / 255
    normal: np.ndarray | None = None  # (H, W, 3) uint8 when asked for

    def params_dict(self) -> dict:
        """``params`` parsed (a one-line error for a build whose params are not a JSON object)."""
        try:
            value = json.loads(self.params)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise SynthgenError(f"sample {self.index}: params is not a JSON object")
        return value

    @property
    def key(self) -> str:
        """The sample's file-name stem in every export: its 6-digit plan index."""
        return f"{self.index:06d}"


def iter_samples(build_dir: str | Path, manifest: dict, *, with_normals: bool = False, progress: bool = True,
                 desc: str = "read") -> Iterator[BuildSample]:
    """Every sample of the build, in the order of the manifest's shards. ``manifest``: as
    generator.shards.untrusted.read_manifest returned it (checked); each shard is checked before use."""
    build_dir = Path(build_dir)
    fields = ("image", "mask") + (("normal",) if with_normals else ())
    meta_fields = ("label", "index", "seed", "variant", "strategy", "source_id", "params", "source_sha256")
    paths = existing_shard_paths(build_dir, manifest)
    seen: dict[int, Path] = {}  # index -> shard: every export names a sample's files after its index
    with tqdm(total=manifest["totals"]["samples"], desc=desc, unit="sample", disable=not progress) as bar:
        for shard, path in zip(manifest["shards"], paths):
            with open_shard(path) as f:
                check_shard(f, path, fields + meta_fields, shard["num_samples"], manifest["config"]["image_size"])
                meta = {
                    "label": f["label"][...], "index": f["index"][...], "seed": f["seed"][...],
                    "variant": f["variant"][...], "strategy": read_names(f, "strategy", path),
                    "source_id": read_text_column(f, "source_id", path),
                    "params": read_text_column(f, "params", path),
                    "source_sha256": read_text_column(f, "source_sha256", path),
                }
                n = len(meta["label"])
                for index in meta["index"].tolist():
                    if index in seen:
                        raise SynthgenError(f"{path}: sample index {index} occurs twice (also in {seen[index].name}); "
                                            f"exports name files by it, so key {index:06d} would collide")
                    seen[index] = path
                for start in range(0, n, _BLOCK):
                    stop = min(n, start + _BLOCK)
                    pixels = {name: f[name][start:stop] for name in fields}
                    for row in range(start, stop):
                        k = row - start
                        yield BuildSample(
                            index=int(meta["index"][row]), label=int(meta["label"][row]),
                            strategy=str(meta["strategy"][row]), source_id=str(meta["source_id"][row]),
                            source_sha256=str(meta["source_sha256"][row]),
                            seed=int(meta["seed"][row]), variant=int(meta["variant"][row]),
                            params=str(meta["params"][row]),
                            image=pixels["image"][k], mask=pixels["mask"][k],
                            normal=pixels["normal"][k] if with_normals else None,
                        )
                        bar.update(1)


def check_strategy_counts(build_dir: str | Path, manifest: dict, counts: dict[str, dict[str, int]]) -> None:
    """``counts`` (strategy -> {"anomalous": a, "normal": n}, what an export wrote) must add up to the
    manifest's samples per strategy: a writer never drops or adds a sample silently."""
    written = {name: c["anomalous"] + c["normal"] for name, c in counts.items()}
    if written != manifest["totals"]["strategies"]:
        raise SynthgenError(f"{build_dir}: the shards hold {written} samples per strategy, the manifest says "
                            f"{manifest['totals']['strategies']}")


def source_file_name(source_id: str) -> str:
    """A flat PNG name for a source id (``train/good/007`` -> ``train_good_007.png``); two ids that differ
    only in '/' vs '_' get the same name: :func:`source_file_names` refuses such a build."""
    return source_id.replace("/", "_") + ".png"


def source_file_names(manifest: dict, where: str | Path) -> dict[str, str]:
    """source id -> its flat file name (:func:`source_file_name`) for every source of the build, refused
    (one line naming both ids) when two ids would share a file: one would silently replace the other."""
    owner: dict[str, str] = {}
    for source in manifest["dataset"]["sources"]:
        name = source_file_name(source["id"])
        if name in owner and owner[name] != source["id"]:
            raise SynthgenError(f"{where}: source ids {owner[name]!r} and {source['id']!r} would both be exported as "
                                f"{name!r}; rename one of the source files")
        owner[name] = source["id"]
    return {source_id: name for name, source_id in owner.items()}


def training_images(build_dir: str | Path, manifest: dict, source_root: str | Path | None = None
                    ) -> Iterator[tuple[str, np.ndarray]]:
    """(source id, the source image resized to the build's size) for every source of the build.

    The files are looked up under ``source_root`` (default: the dataset root the manifest recorded) and
    must have the sha256 the manifest recorded: a different file would not be the build's training set.
    """
    root = Path(source_root) if source_root else Path(manifest["dataset"]["root"])
    size = tuple(manifest["config"]["image_size"])
    for source in manifest["dataset"]["sources"]:
        path = resolve_inside(root, source["file"], what="source image", where=Path(build_dir) / "manifest.json")
        if not path.is_file():
            raise SynthgenError(f"{path}: source image of the build not found; pass --source-root with the folder "
                                f"that holds {manifest['dataset']['category']}/ (the build read {root})")
        if sha256_file(path) != source["sha256"]:
            raise SynthgenError(f"{path}: sha256 differs from the build's manifest (not the image the build used)")
        yield source["id"], resize_rgb(read_rgb(path, allow_gray=True), size)
