"""synthgen generator: reads normal images, synthesizes anomalies, writes sharded HDF5 with manifests.

Data flows one way: dataset reader -> per-image precompute (edges, regions; cached) -> strategy ->
mask derivation -> shard writer -> manifest. Nothing here imports from ``trainers``.
"""

import functools
import hashlib
from pathlib import Path

__version__ = "0.1.0"


@functools.cache
def code_fingerprint() -> str:
    """sha256 of this package's Python sources (paths and bytes, in path order).

    A build's identity (its config hash) includes it: samples depend on the code's defaults and
    algorithms as much as on the options a user passes, and ``__version__`` does not change with
    every commit. So a build folder started by other code is refused instead of resumed with a mix
    of samples from both.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()
