"""The public reading API: a torch Dataset over the shards of a build.

>>> from generator.shards.reader import ShardDataset
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

MANIFEST = "manifest.json"

_IMAGE_FIELDS = ("image", "normal")


def read_manifest(build_dir: str | Path) -> dict:
    """Load ``manifest.json`` of a finished build, with a one-line error when it is missing or broken."""
    path = Path(build_dir) / MANIFEST
    if not path.is_file():
        raise SynthgenError(f"{path}: no manifest (not a synthgen build, or the build has not finished)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SynthgenError(f"{path}: broken JSON ({e.msg} at line {e.lineno})") from None


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
        self.files = _shard_files(source)
        self.fields = tuple(fields)
        self.transform = transform
        self.with_params = with_params
        keep = set(strategies) if strategies is not None else None

        # Scan the small metadata once (in the parent process); every handle is closed again.
        file_numbers, rows_per_file = [], []
        for fi, path in enumerate(self.files):
            with h5py.File(path, "r") as f:
                missing = [name for name in self.fields if name not in f]
                if missing:
                    raise SynthgenError(f"{path}: shard has no field {missing[0]!r} (has: {', '.join(sorted(f))})")
                n = f["label"].shape[0]
                if keep is None:
                    rows = np.arange(n)
                else:
                    names = f["strategy"].asstr()[...]
                    rows = np.flatnonzero(np.isin(names, list(keep)))
            file_numbers.append(np.full(len(rows), fi, dtype=np.int32))
            rows_per_file.append(rows.astype(np.int64))
        # two flat arrays (not a list of tuples): a million samples cost 12 MB, not 100
        self._file_of = np.concatenate(file_numbers) if file_numbers else np.zeros(0, np.int32)
        self._row_of = np.concatenate(rows_per_file) if rows_per_file else np.zeros(0, np.int64)
        self._handles: dict[int, h5py.File] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._row_of)

    def _file(self, fi: int) -> h5py.File:
        if os.getpid() != self._pid:  # we are in a forked worker: never reuse the parent's handles
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(fi)
        if handle is None:
            handle = h5py.File(self.files[fi], "r")
            self._handles[fi] = handle
        return handle

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += len(self)
        fi, row = int(self._file_of[i]), int(self._row_of[i])
        f = self._file(fi)
        out: dict[str, Any] = {}
        for name in self.fields:
            arr = f[name][row]
            if name in _IMAGE_FIELDS:
                out[name] = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)
            elif name == "mask":
                out[name] = torch.from_numpy(arr > 0).float().unsqueeze(0)
            else:
                out[name] = torch.from_numpy(np.asarray(arr))
        out["label"] = int(f["label"][row])
        out["index"] = int(f["index"][row])
        out["strategy"] = f["strategy"].asstr()[row]
        out["source_id"] = f["source_id"].asstr()[row]
        if self.with_params:
            out["params"] = json.loads(f["params"].asstr()[row])
        return self.transform(out) if self.transform else out

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}  # handles never travel to another process
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _shard_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            manifest = read_manifest(path)
            return [path / s["file"] for s in manifest["shards"]]
        if path.suffix == ".h5":
            return [path]
        raise SynthgenError(f"{path}: expected a build folder or a .h5 shard")
    files = [Path(p) for p in source]
    for p in files:
        if not p.is_file():
            raise SynthgenError(f"{p}: shard file not found")
    return files

