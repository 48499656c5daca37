"""Crash-safe file writes: write to a temporary name beside the target, fsync, then os.replace.

A reader never sees a half-written file under the final name; an interrupted write leaves only a
``.tmp-*`` file that the next run removes. mkstemp creates its file mode 0600 whatever the umask; the
file is given the mode an ordinary ``open(path, "w")`` would give it (0644 under umask 022), so a build
made for a team or for publishing is readable by the others who may read that folder. A write that
finds the disk full ends in a one-line error naming the folder, and its temporary file is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .diskspace import disk_full_error, is_disk_full

TMP_PREFIX = ".tmp-"

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else set and restored."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # os.umask can only be read by setting it: restore at once
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def ordinary_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def ordinary_dir_mode() -> int:
    """The mode ``os.mkdir`` gives a new folder (mkdtemp's is 0700): 0777 less the umask."""
    return 0o777 & ~current_umask()


@contextmanager
def atomic_path(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in ``final``'s folder; on success fsync it and rename it to ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + final.name + ".", suffix=suffix, dir=final.parent)
    try:
        os.fchmod(fd, ordinary_file_mode())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, final)
        _fsync_dir(final.parent)
    except Exception as e:
        if is_disk_full(e):
            raise disk_full_error(final.parent) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON (sorted keys, stable formatting) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def remove_stale_temps(folder: str | Path, names: list[str] | None = None) -> int:
    """Delete leftovers of interrupted atomic writes in ``folder`` (only those of the files ``names``
    when given: other writers may be busy with the rest); returns how many."""
    patterns = [TMP_PREFIX + "*"] if names is None else [f"{TMP_PREFIX}{name}.*" for name in names]
    n = 0
    for pattern in patterns:
        for p in Path(folder).glob(pattern):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def temp_folder_beside(final: str | Path, kind: str) -> Path:
    """A fresh, empty temporary folder ``.tmp-{kind}-{final.name}-{pid}`` beside ``final``, in which a
    whole output tree is written before it is renamed to ``final`` (publish, export).

    Leftovers of earlier runs for the same ``final`` whose process is gone (a kill -9, a power cut) are
    removed first: only folders of this exact name pattern and a dead process id, so a run that is
    still writing beside it keeps its folder."""
    final = Path(final)
    prefix = f"{TMP_PREFIX}{kind}-{final.name}-"
    for stale in final.parent.glob(f"{prefix}*"):
        pid = stale.name[len(prefix):]
        if pid.isdigit() and (int(pid) == os.getpid() or not _process_alive(int(pid))) and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f"{prefix}{os.getpid()}"
    tmp.mkdir(parents=True)
    return tmp


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
