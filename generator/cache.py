"""A content-addressed cache of per-image maps (edge maps, region label maps).

Precomputing regions with Segment Anything costs seconds per image, so each map is computed once per
(source image content, model, parameters) and reused by every later build, whatever its strategies.
Entries are ``.npz`` files written atomically; a hit is one small file read.

The cache is not trusted: each entry stores the sha256 of its arrays (names, dtypes, shapes, bytes)
beside them, checked on every read. A damaged entry (truncated, bytes flipped, hash missing or wrong)
is reported with a one-line warning and treated as a miss, so the caller computes the map again and
the rewritten entry replaces it; a damaged cache can never change a build's shards.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .paths import cache_root

HASH_MEMBER = "__sha256__"  # the entry's own hash, stored as one more array of the .npz

_reported: set[Path] = set()  # damaged entries already warned about and not yet rewritten (one line each)


def map_key(image_sha256: str, model: str, params: dict[str, Any]) -> str:
    """The cache key of one map: a hash of the image content, the producing model and its parameters."""
    blob = json.dumps({"image": image_sha256, "model": model, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class MapCache:
    """``get``/``put`` dicts of numpy arrays under a key, in ``root/<kind>/<key[:2]>/<key>.npz``."""

    def __init__(self, kind: str, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_root() / "maps"
        self.kind = kind

    def path(self, key: str) -> Path:
        return self.root / self.kind / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The entry's arrays; None when absent, or damaged (with a warning: the caller recomputes it)."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            return _damaged(p, f"unreadable: {e}")
        stored = arrays.pop(HASH_MEMBER, None)
        if stored is None:  # written before entries carried their hash: recomputed, nothing is wrong
            return None
        if stored.dtype.kind != "S" or stored.shape != () or stored.item().decode() != arrays_sha256(arrays):
            return _damaged(p, "sha256 of its arrays differs from the stored one")
        return arrays

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        with atomic_path(self.path(key), suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays, **{HASH_MEMBER: np.bytes_(arrays_sha256(arrays))})
        _reported.discard(self.path(key))


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``arrays`` (in name order)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _damaged(path: Path, problem: str) -> None:
    if path not in _reported:  # callers may look twice before they recompute: warn once
        _reported.add(path)
        warnings.warn(f"{path}: damaged cache entry ({problem}); computing it again")
    return None
