"""The public reading API: a torch Dataset over the shards of a build.

>>> from synthgen.generator.shards.reader import ShardDataset
>>> ds = ShardDataset("out/demo-parts_box", fields=("image", "mask"))
>>> sample = ds[0]   # {"image": (3,H,W) float32 in [0,1], "mask": (1,H,W) float32 in {0,1}, "label": 0|1, ...}

HDF5 handles are opened lazily, per process: a DataLoader that forks workers never shares a handle
opened before the fork (h5py is not fork-safe), and each worker opens each shard once.
Third parties do not need this module: a shard is plain HDF5 (see generator/shards/format.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import SynthgenError
from .untrusted import (
    check_shard,
    check_source_id,
    existing_shard_paths,
    open_shard,
    read_manifest,  # noqa: F401  (public: the checked manifest of a build)
    read_names,
    read_text_column,
)
from .format import READABLE_SCHEMA_VERSIONS

_IMAGE_FIELDS = ("image", "normal")
#: small per-sample fields returned with every sample (held in memory, see ShardDataset.__init__)
_METADATA = ("label", "index", "strategy", "source_id")


class _SampleReader:
    """Reads row ``i`` of one per-sample dataset of an open shard.

    Every per-sample dataset has one chunk per sample; when that chunk carries no filter (image,
    normal and mask since format 2), its stored bytes are the sample, so ``read_direct_chunk``
    returns it without h5py's selection machinery (about half the time of ``dataset[i]`` for a 256^2
    image). Filtered chunks (gzip extras, format-1 masks) go through ``dataset[i]``, which decompresses.
    """

    def __init__(self, dataset: h5py.Dataset):
        self.dataset = dataset
        sample_shape = dataset.shape[1:]
        self._raw = (
            bool(sample_shape)
            and dataset.chunks == (1, *sample_shape)
            and dataset.id.get_create_plist().get_nfilters() == 0
            and dataset.dtype.kind in "uif"
        )
        self._origin = (0,) * len(sample_shape)
        self._shape = sample_shape
        self._nbytes = int(np.prod(sample_shape)) * dataset.dtype.itemsize

    def __call__(self, row: int) -> np.ndarray:
        if self._raw:
            out = np.empty(self._nbytes, dtype=np.uint8)  # a fresh, writable array per sample
            self.dataset.id.read_direct_chunk((row, *self._origin), out=out)
            return out.view(self.dataset.dtype).reshape(self._shape)
        return self.dataset[row]


class ShardDataset(Dataset):
    """All samples of a build (or of a list of shard files) as one indexable dataset.

    fields: which per-sample arrays to return. Image-like fields (image, normal) come back as float32
        (3, H, W) in [0, 1]; ``mask`` as float32 (1, H, W) in {0, 1}; other arrays as tensors of their
        stored dtype (edge maps stay uint8). ``label``, ``index``, ``strategy``, ``source_id`` are
        always included; ``params`` (a dict) when ``with_params``.
    strategies: keep only samples made by these strategies.
    transform: optional callable applied to the returned dict.
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        fields: Iterable[str] = ("image", "mask"),
        *,
        strategies: Iterable[str] | None = None,
        transform: Callable[[dict], dict] | None = None,
        with_params: bool = False,
    ):
        self.files, expected_counts, image_size = _shard_files(source)
        self.fields = tuple(fields)
        self.transform = transform
        self.with_params = with_params
        keep = set(strategies) if strategies is not None else None

        # Scan the small per-sample metadata once (in the parent process) and keep it in memory:
        # reading four scalars from HDF5 per sample would cost more than reading the image itself.
        # Every handle is closed again. A build is untrusted input (generator/shards/untrusted.py): each
        # shard's datasets are checked for dtype and shape here, so a bad file fails now, in one line,
        # not later inside a DataLoader worker.
        file_numbers, rows_per_file = [], []
        meta: dict[str, list[np.ndarray]] = {name: [] for name in _METADATA}
        needed = _METADATA + self.fields + (("params",) if with_params else ())
        for fi, path in enumerate(self.files):
            with open_shard(path) as f:
                version = f.attrs.get("schema_version", 1)
                if version not in READABLE_SCHEMA_VERSIONS:
                    raise SynthgenError(f"{path}: shard format version {version} is not one this synthgen reads "
                                        f"({', '.join(map(str, READABLE_SCHEMA_VERSIONS))}); upgrade synthgen")
                check_shard(f, path, needed, expected_counts[fi], image_size)
                columns = {
                    "label": f["label"][...],
                    "index": f["index"][...],
                    "strategy": read_names(f, "strategy", path),
                    "source_id": read_text_column(f, "source_id", path),
                }
            for source_id in set(columns["source_id"]):
                check_source_id(source_id, path)
            rows = np.arange(len(columns["label"]))
            if keep is not None:
                rows = np.flatnonzero(np.isin(columns["strategy"], list(keep)))
            for name in _METADATA:
                meta[name].append(columns[name][rows])
            file_numbers.append(np.full(len(rows), fi, dtype=np.int32))
            rows_per_file.append(rows.astype(np.int64))
        # flat arrays (not a list of tuples): a million samples cost tens of MB, not hundreds
        self._file_of = np.concatenate(file_numbers) if file_numbers else np.zeros(0, np.int32)
        self._row_of = np.concatenate(rows_per_file) if rows_per_file else np.zeros(0, np.int64)
        self._meta = {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in meta.items()}
        self._handles: dict[int, dict[str, h5py.Dataset]] = {}
        self._open_files: list[h5py.File] = []
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._row_of)

    def _datasets(self, fi: int) -> dict[str, _SampleReader]:
        """Readers of the requested fields of shard ``fi`` (opened once per process)."""
        if os.getpid() != self._pid:  # we are in a forked worker: never reuse the parent's handles
            self._handles, self._open_files, self._pid = {}, [], os.getpid()
        datasets = self._handles.get(fi)
        if datasets is None:
            f = h5py.File(self.files[fi], "r")
            self._open_files.append(f)
            names = self.fields + (("params",) if self.with_params else ())
            datasets = self._handles[fi] = {name: _SampleReader(f[name]) for name in names}
        return datasets

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += len(self)
        fi, row = int(self._file_of[i]), int(self._row_of[i])
        try:
            return self._sample(i, fi, row)
        except OSError as e:  # a chunk that cannot be read or decompressed: damaged after the index was made
            raise SynthgenError(f"{self.files[fi]}: damaged shard, row {row} cannot be read ({str(e).splitlines()[0]})") from None

    def _sample(self, i: int, fi: int, row: int) -> dict[str, Any]:
        datasets = self._datasets(fi)
        out: dict[str, Any] = {}
        for name in self.fields:
            arr = datasets[name](row)
            if name in _IMAGE_FIELDS:
                # (H, W, 3) uint8 -> (3, H, W) float32; the channels-last strides are kept (no extra copy)
                out[name] = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
            elif name == "mask":
                out[name] = torch.from_numpy(arr > 0).float().unsqueeze(0)
            else:
                out[name] = torch.from_numpy(np.asarray(arr))
        for name in _METADATA:
            value = self._meta[name][i]
            out[name] = value.item() if isinstance(value, np.generic) and name in ("label", "index") else str(value)
        if self.with_params:
            try:
                out["params"] = json.loads(datasets["params"].dataset.asstr()[row])
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                raise SynthgenError(f"{self.files[fi]}: row {row} of 'params' is not a JSON object") from None
        return self.transform(out) if self.transform else out

    def close(self) -> None:
        for f in self._open_files:
            f.close()
        self._handles, self._open_files = {}, []

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"], state["_open_files"] = {}, []  # handles never travel to another process
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _shard_files(source: str | Path | Sequence[str | Path]) -> tuple[list[Path], list[int | None], tuple[int, int] | None]:
    """The shard files of ``source``, how many samples each should hold and their image size (None: unknown).

    A build folder's shards come from its checked manifest, each resolved inside the folder
    (generator/shards/untrusted.py); explicit .h5 paths are the caller's own choice and used as given.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            manifest = read_manifest(path)
            counts = [s["num_samples"] for s in manifest["shards"]]
            return existing_shard_paths(path, manifest), counts, tuple(manifest["config"]["image_size"])
        if path.suffix == ".h5":
            return [path], [None], None
        raise SynthgenError(f"{path}: expected a build folder or a .h5 shard")
    files = [Path(p) for p in source]
    for p in files:
        if not p.is_file():
            raise SynthgenError(f"{p}: shard file not found")
    return files, [None] * len(files), None
