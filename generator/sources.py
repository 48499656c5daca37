"""The normal images a build samples from: hashed, fully decoded once, resized, and shared.

Before any shard is written every source image is read in full (so a truncated PNG fails the build
in the first seconds, naming the file, instead of hours later), hashed (the manifest records each
file's sha256) and resized to the build's image size. The resized images are kept in one ``.npy``
stack in the cache, keyed by the source hashes and the size: worker processes memory-map it
instead of each decoding every image again, and later builds of the same sources reuse it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path
from .config import digest
from .datasets.base import SourceImage
from .imageio import read_rgb, resize_rgb, sha256_file
from .paths import cache_root

# Bump when the decode/resize procedure changes, so stale stacks are not reused.
RESIZE_VERSION = 1


@dataclass(frozen=True)
class SourceSet:
    """The build's source images, their file hashes, and the path of their resized stack."""

    images: tuple[SourceImage, ...]
    sha256: tuple[str, ...]
    stack_path: Path
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.images)

    def records(self) -> list[dict]:
        """One manifest row per source: id, path relative to the dataset root, sha256."""
        return [{"id": s.id, "file": str(s.path), "sha256": h} for s, h in zip(self.images, self.sha256)]

    def load_stack(self) -> np.ndarray:
        """The (N, H, W, 3) uint8 stack, memory-mapped read-only."""
        return np.load(self.stack_path, mmap_mode="r")


def prepare_sources(
    images: list[SourceImage],
    image_size: tuple[int, int],
    *,
    gray: bool = False,
    threads: int = 2,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> SourceSet:
    """Hash every source; decode, validate and resize them into the cached stack if it is not there."""
    images = list(images)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # hashing releases the GIL
        hashes = list(
            tqdm(
                pool.map(lambda s: sha256_file(s.path), images),
                total=len(images),
                desc="hash sources",
                disable=not progress,
                leave=False,
            )
        )
    stack_path = _stack_path(hashes, image_size, gray, cache_dir)
    if not _stack_ok(stack_path, len(images), image_size):
        _write_stack(images, image_size, gray, stack_path, threads, progress)
    return SourceSet(tuple(images), tuple(hashes), stack_path, tuple(image_size))


def _stack_path(hashes: list[str], image_size: tuple[int, int], gray: bool, cache_dir: Path | None = None) -> Path:
    key = digest({"sha256": hashes, "size": list(image_size), "gray": gray, "version": RESIZE_VERSION})
    return (cache_dir or cache_root() / "sources") / f"{key}.npy"


def cached_stack_ready(hashes: list[str], image_size: tuple[int, int], gray: bool) -> bool:
    """Whether sources with these file hashes are already decoded and resized in the cache."""
    return _stack_ok(_stack_path(hashes, image_size, gray), len(hashes), image_size)


def _stack_ok(path: Path, n: int, size: tuple[int, int]) -> bool:
    if not path.is_file():
        return False
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return arr.shape == (n, size[0], size[1], 3) and arr.dtype == np.uint8


def _write_stack(images, image_size, gray, stack_path, threads, progress) -> None:
    h, w = image_size
    with atomic_path(stack_path, suffix=".npy") as tmp:
        stack = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(images), h, w, 3))

        def load(i: int) -> None:
            stack[i] = resize_rgb(read_rgb(images[i].path, allow_gray=gray), (h, w))

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # PIL/cv2 decode releases the GIL
            for _ in tqdm(
                pool.map(load, range(len(images))),
                total=len(images),
                desc="decode sources",
                disable=not progress,
                leave=False,
            ):
                pass
        stack.flush()
        del stack
