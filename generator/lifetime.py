"""Worker processes end with the process that started them.

A build's worker processes (joblib/loky) outlive a parent killed with SIGKILL: nothing tells them,
and they go on rendering shards nobody will merge, holding gigabytes. :func:`die_with_parent` is
called in each worker before its first task: on Linux the kernel kills the worker when its parent
dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); everywhere a daemon thread also checks once a second
that the parent is still the same process (its pid is passed in) and ends the worker when not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_INTERVAL_S = 1.0

_armed_for: int | None = None  # the parent pid this process already watches


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` ends (idempotent; cheap after the first call)."""
    global _armed_for
    if _armed_for == parent_pid:
        return
    _armed_for = parent_pid
    if sys.platform.startswith("linux"):
        _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch-parent", daemon=True).start()


def _set_parent_death_signal() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the watchdog thread still ends the worker


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(WATCH_INTERVAL_S)
        if os.getppid() != parent_pid:  # re-parented: the parent is gone
            os._exit(1)
