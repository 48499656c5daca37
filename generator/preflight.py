"""What ``synthgen build`` checks and holds around its output folder, before and while it writes.

- The image size must fit in memory: refused before anything is allocated, with the memory it
  would need (``--image-size 99999`` would otherwise die allocating tens of gigabytes per image);
  checked again before ``--workers`` processes start, as each renders a batch of its own.
- The output folder must not be, or lie inside, one of the build's inputs (dataset root, texture
  folder, cache, weights), nor hold one: a build cleans its output folder and must never touch
  what it reads.
- Only one build writes into a folder at a time: the folder itself is locked (``flock`` on the
  directory; the kernel drops the lock when the process ends, a SIGKILL included), and a second
  build is refused with one line. Job-array slices (``--num-shards``) of one build share the folder
  by design: each holds the lock shared, which still keeps a whole build out while they run.
- The shards must fit on the disk: the free space is checked against an estimate from the plan.
- A build that fails before it wrote a shard (an invalid option value met while rendering, an
  unreadable texture, a full disk) takes back its claim on the folder (build.json), so that the
  corrected command is not refused as "a different build".
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .atomic import TMP_PREFIX
from .diskspace import human_bytes, require_free_space
from .errors import SynthgenError

# Peak bytes per pixel of one sample of a rendering batch: float32 RGB copies of the normal, the
# texture and the result (3 x 12), float32 masks and Perlin noise (2 x 4), the uint8 image, normal
# and mask handed to the writer (7), with room for a strategy's temporaries (x2).
BYTES_PER_BATCH_PIXEL = 2 * (3 * 12 + 2 * 4 + 7)
# Per stored sample besides its arrays: metadata strings (params JSON), HDF5 chunk index entries of its
# ~15 datasets (measured: about 2 KiB at 64x64).
SAMPLE_OVERHEAD_BYTES = 4096


def physical_memory() -> int | None:
    """Bytes of RAM of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(image_size: tuple[int, int], batch_size: int, workers: int = 1) -> None:
    """Refuse an image size whose rendering batches alone (one per worker process, each rendering its
    own) would not fit in this machine's memory."""
    h, w = image_size
    need = BYTES_PER_BATCH_PIXEL * h * w * batch_size * workers
    have = physical_memory()
    if have is not None and need > have:
        where = f"a batch of {batch_size}" if workers == 1 else f"a batch of {batch_size} in each of {workers} workers"
        fewer = "" if workers == 1 else "fewer --workers, "
        raise SynthgenError(
            f"--image-size {h}x{w}: rendering {where} needs about {human_bytes(need)} of memory, "
            f"this machine has {human_bytes(have)}; choose {fewer}a smaller --image-size or --batch-size"
        )


#: Bytes of memory one planned sample takes (a SampleSpec in the plan's list; measured with tracemalloc
#: over 200000 specs: 216), with room for the lists built from the plan (per shard, per strategy).
BYTES_PER_PLANNED_SAMPLE = 2 * 216


def check_sample_count(num_samples: int, samples_per_shard: int) -> None:
    """Refuse at once (one line, with the estimate) a ``--num-samples`` whose plan would not fit in this
    machine's memory or whose shards could not be named (five digits of shard count), instead of
    planning for minutes and then dying with MemoryError."""
    from .records import MAX_SHARDS  # the shard-count bound every reader of a build applies

    shards = -(-num_samples // samples_per_shard)
    if shards > MAX_SHARDS:
        raise SynthgenError(
            f"--num-samples {num_samples}: makes {shards} shards of {samples_per_shard} samples; a build has at most "
            f"{MAX_SHARDS} shards ({MAX_SHARDS * samples_per_shard} samples at this --samples-per-shard)"
        )
    need, have = BYTES_PER_PLANNED_SAMPLE * num_samples, physical_memory()
    if have is not None and need > have // 2:  # the other half: the pipeline's own buffers, the OS
        raise SynthgenError(
            f"--num-samples {num_samples}: planning the samples needs about {human_bytes(need)} of memory, this "
            f"machine has {human_bytes(have)}; build in several runs with fewer --num-samples each"
        )


def check_out_path(out_dir: Path) -> None:
    """A one-line error when ``out_dir`` is a file, or lies under one."""
    for folder in (out_dir, *out_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == out_dir else f"lies under the file {folder}"
                raise SynthgenError(f"{out_dir}: --out {what}; choose a folder")
            return


def refuse_own_inputs(out_dir: Path, inputs: Iterable[tuple[str, str | Path | None]], *, roots: Iterable[Path] = (),
                      option: str = "--out", writer: str = "a build") -> None:
    """Refuse an output folder that is one of the build's input folders, lies inside one, or holds one.

    ``inputs``: (what, folder) pairs, None folders skipped. ``roots``: folders that hold the inputs
    among other things (a dataset root beside its categories): the output may lie in them, not be them
    or hold them. ``option`` and ``writer`` name the output option and the command in the message."""
    out = out_dir.resolve()
    for root in roots:
        root = Path(root).expanduser().resolve()
        if out == root or out in root.parents:
            verb = "is" if out == root else "holds"
            raise SynthgenError(f"{out_dir}: {option} {verb} the dataset root {root}; {writer} must not write over its input")
    for what, folder in inputs:
        if folder is None:
            continue
        folder = Path(folder).expanduser().resolve()
        if out == folder or folder in out.parents:
            raise SynthgenError(f"{out_dir}: {option} is inside the {what} {folder}; {writer} must not write into its input")
        if out in folder.parents:
            raise SynthgenError(f"{out_dir}: {option} holds the {what} {folder}; {writer} must not write over its input")


def shard_bytes(num_samples: int, image_size: tuple[int, int], extras: dict) -> int:
    """Estimated bytes of ``num_samples`` stored samples: image, normal and mask uncompressed (the
    default; masks are raw since shard format 2), extra fields as stored (uncompressed bound)."""
    h, w = image_size
    per_sample = 7 * h * w + SAMPLE_OVERHEAD_BYTES
    for spec in extras.values():
        per_sample += int(np.prod(spec.shape(h, w))) * np.dtype(spec.dtype).itemsize
    return num_samples * per_sample


def require_shard_space(out_dir: Path, num_samples: int, image_size: tuple[int, int], extras: dict) -> None:
    """Refuse (one line) when the shards still to write do not fit on ``out_dir``'s disk."""
    require_free_space(out_dir, shard_bytes(num_samples, image_size, extras), f"{num_samples} samples")


@contextmanager
def claimed_out_dir(out_dir: Path, claim_file: str, *, shared: bool = False) -> Iterator[None]:
    """Create and lock ``out_dir`` for the duration of the block: exclusively (one writer at a time),
    or ``shared`` by the job-array slices of one build.

    When the block fails and the folder then holds nothing but a claim file that this build wrote
    (no shard, no sidecar), the claim is removed, and the folder too if this build created it (a
    slice does so only when no other slice holds the folder)."""
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SynthgenError(f"{out_dir}: cannot create the output folder ({e.strerror or e})") from None
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise SynthgenError(
                f"{out_dir}: another synthgen build is writing into this folder; wait for it to end or choose another --out"
            ) from None
        claimed_before = (out_dir / claim_file).exists()
        try:
            yield
        except BaseException:
            if not claimed_before and _alone(fd, shared):
                _take_back_claim(out_dir, claim_file, remove_folder=created)
            raise
    finally:
        os.close(fd)  # releases the lock


def _alone(fd: int, shared: bool) -> bool:
    """True when no other build holds the folder (a shared holder tries to make its lock exclusive)."""
    if not shared:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _take_back_claim(out_dir: Path, claim_file: str, *, remove_folder: bool) -> None:
    """Remove the claim file when nothing but it (and temporary files) is in ``out_dir``."""
    entries = [p for p in out_dir.iterdir() if not p.name.startswith(TMP_PREFIX)]
    if any(p.name != claim_file for p in entries):
        return  # shards were written: keep the claim, a rerun of the same command resumes them
    for p in out_dir.iterdir():
        p.unlink(missing_ok=True)
    if remove_folder:
        try:
            out_dir.rmdir()
        except OSError:
            pass
