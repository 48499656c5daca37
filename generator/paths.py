"""Where synthgen keeps things between runs (rendered demo data, cached maps, resolved weights)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SYNTHGEN_CACHE``, else ``$XDG_CACHE_HOME/synthgen``, else ``~/.cache/synthgen``."""
    env = os.environ.get("SYNTHGEN_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "synthgen"
