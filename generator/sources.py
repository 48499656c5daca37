"""The normal images a build samples from: hashed, fully decoded once, resized, and shared.

Before any shard is written every source image is read in full (so a truncated PNG fails the build
in the first seconds, naming the file, instead of hours later), hashed (the manifest records each
file's sha256) and resized to the build's image size. The resized images are kept in one ``.npy``
stack in the cache, keyed by the source hashes and the size: worker processes memory-map it
instead of each decoding every image again, and later builds of the same sources reuse it.

The cache is not trusted: beside each stack a small JSON record holds the sha256 of the stack file,
checked whenever a build reuses it. A stack that does not match (truncated, bytes flipped, record
missing or wrong) is rebuilt with a one-line warning, so it can never change a build's shards. The
stack is written sequentially (not through a memory map, which dies with a bus error when the disk
fills up) after a free-space check.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path, write_json_atomic
from .config import digest
from .datasets.base import DatasetIndex, SourceImage
from .diskspace import require_free_space
from .errors import SynthgenError
from .records import read_own_record
from .imageio import read_rgb, resize_rgb, sha256_file
from .paths import cache_root

# Bump when the decode/resize procedure changes, so stale stacks are not reused.
RESIZE_VERSION = 1
# Images decoded ahead of the writer: bounds the memory of decoding whatever the number of sources.
DECODE_CHUNK = 64


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


def list_sources(dataset: str, root: str | Path | None, category: str, split: str) -> tuple[DatasetIndex, list[SourceImage]]:
    """The dataset's index and the normal images of ``split`` of ``category`` (files listed, nothing read);
    a split without normal images is a one-line error. The first half of :func:`read_sources`."""
    from .datasets import load_dataset

    index = load_dataset(dataset, str(root) if root else None, category)
    images = index.split(split, normal_only=True)
    if not images:
        raise SynthgenError(f"{index.root}: no normal images in split '{split}' of {category}")
    return index, images


def read_sources(dataset: str, root: str | Path | None, category: str, split: str, image_size: tuple[int, int],
                 *, progress: bool = True) -> tuple[DatasetIndex, SourceSet]:
    """A category's normal images of ``split``, read, hashed and resized as ``synthgen build`` reads them:
    the one reader of a dataset's sources (the build's plan, the precompute stage, the generators'
    training), so each sees exactly the pixels a build samples from."""
    index, images = list_sources(dataset, root, category, split)
    return index, prepare_sources(images, image_size, gray=index.gray, progress=progress)


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
    problem = _stack_problem(stack_path, len(images), image_size)
    if problem is not None:
        if problem != "absent":
            warnings.warn(f"{stack_path}: damaged cache entry ({problem}); rebuilding it")
        _write_stack(images, image_size, gray, stack_path, threads, progress)
    return SourceSet(tuple(images), tuple(hashes), stack_path, tuple(image_size))


def _stack_path(hashes: list[str], image_size: tuple[int, int], gray: bool, cache_dir: Path | None = None) -> Path:
    key = digest({"sha256": hashes, "size": list(image_size), "gray": gray, "version": RESIZE_VERSION})
    return (cache_dir or cache_root() / "sources") / f"{key}.npy"


def cached_stack_ready(hashes: list[str], image_size: tuple[int, int], gray: bool) -> bool:
    """Whether sources with these file hashes are already decoded and resized in the cache, whole."""
    return _stack_problem(_stack_path(hashes, image_size, gray), len(hashes), image_size) is None


def _record_path(stack_path: Path) -> Path:
    """The JSON record holding the stack file's sha256."""
    return stack_path.with_suffix(".json")


def _stack_problem(path: Path, n: int, size: tuple[int, int]) -> str | None:
    """None when the cached stack is whole (its sha256 is the recorded one, its shape the build's),
    "absent" when there is none, else what is wrong with it."""
    if not path.is_file():
        return "absent"
    record = read_own_record(_record_path(path), "source stack record")  # types and bounds: generator/records.py
    if record is None:
        return "no readable hash record"
    recorded = record["sha256"]
    if sha256_file(path) != recorded:
        return "sha256 differs from its record"
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return "not a readable .npy file"
    if arr.shape != (n, size[0], size[1], 3) or arr.dtype != np.uint8:
        return f"holds {arr.dtype} {arr.shape}"
    return None


def _write_stack(images, image_size, gray, stack_path, threads, progress) -> None:
    """Decode and resize every source, in order, into the .npy stack; then record its sha256."""
    h, w = image_size
    shape = (len(images), h, w, 3)
    require_free_space(stack_path.parent, int(np.prod(shape)) + 4096, "the resized source images (synthgen cache)")

    def load(i: int) -> bytes:
        return np.ascontiguousarray(resize_rgb(read_rgb(images[i].path, allow_gray=gray), (h, w))).tobytes()

    with atomic_path(stack_path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(f, header)
            with ThreadPoolExecutor(max_workers=max(1, threads)) as pool, tqdm(  # PIL/cv2 decode releases the GIL
                total=len(images), desc="decode sources", disable=not progress, leave=False
            ) as bar:
                for start in range(0, len(images), DECODE_CHUNK):
                    for pixels in pool.map(load, range(start, min(start + DECODE_CHUNK, len(images)))):
                        f.write(pixels)
                        bar.update(1)
        sha = sha256_file(tmp)
    write_json_atomic(_record_path(stack_path), {"sha256": sha, "shape": list(shape)})
