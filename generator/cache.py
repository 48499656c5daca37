"""A content-addressed cache of per-image maps (edge maps, region label maps).

Precomputing regions with Segment Anything costs seconds per image, so each map is computed once per
(source image content, model, parameters) and reused by every later build, whatever its strategies.
Entries are ``.npz`` files written atomically; a hit is one small file read.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .paths import cache_root


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
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            # A damaged entry (disk full, manual edit) is a miss; it is rewritten on the next put.
            return None

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        with atomic_path(self.path(key), suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
