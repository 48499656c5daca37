"""Free disk space: check it before a build writes, and turn a full disk during a write into one line.

A full filesystem otherwise surfaces deep inside h5py, numpy or zipfile as a traceback (or, for a
memory-mapped file, as a bus error). Every writer that knows how much it is about to write calls
:func:`require_free_space` first; :func:`disk_full_error` recognises the error of a write that ran
out of space anyway (the estimate is an estimate; other programs write too).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from .errors import SynthgenError

# Headroom above the estimate: filesystem blocks, HDF5 metadata, the manifest and sidecars.
HEADROOM_BYTES = 1 << 20


def human_bytes(n: float) -> str:
    """``3145728`` -> ``3.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def existing_ancestor(path: str | Path) -> Path:
    """``path`` or its nearest ancestor that exists (the folder a new ``path`` would be created in)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(folder: str | Path) -> int:
    """Bytes an unprivileged writer can still put on the filesystem holding ``folder``."""
    return shutil.disk_usage(existing_ancestor(folder)).free


def require_free_space(folder: str | Path, need: int, what: str) -> None:
    """Refuse (one line) when the filesystem of ``folder`` has less than ``need`` bytes (+ headroom) free."""
    if need <= 0:
        return
    free = free_bytes(folder)
    if free < need + HEADROOM_BYTES:
        raise SynthgenError(
            f"{folder}: not enough free disk space for {what}: needs about {human_bytes(need + HEADROOM_BYTES)}, "
            f"{human_bytes(free)} free; free some space or choose another folder"
        )


def is_disk_full(error: BaseException) -> bool:
    """True for the error of a write that found the disk (or the user's quota) full.

    h5py reports HDF5's failed write as an OSError whose errno is not set, with the C library's
    message in the text, so the text is checked too."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "Disk quota exceeded" in text or "errno = 28" in text


def disk_full_error(folder: str | Path, need: int | None = None) -> SynthgenError:
    """The one-line error for a write into ``folder`` that ran out of space."""
    wanted = f"; this write needs about {human_bytes(need)}" if need else ""
    return SynthgenError(
        f"{folder}: disk full ({human_bytes(free_bytes(folder))} free{wanted}); free some space or choose another folder"
    )
