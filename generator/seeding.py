"""Per-sample seeds that do not depend on worker count, batch order or which shard slice runs.

A sample's seed is a pure function of (global seed, category, source image id, variant, strategy),
mixed through numpy's SeedSequence. The seed is stored with the sample, so one sample can be
regenerated alone: ``np.random.default_rng(seed)`` reproduces every random draw the strategy made.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash32(text: str) -> int:
    """A 32-bit hash of a string that is the same in every process (unlike Python's ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


def sample_seed(global_seed: int, category: str, source_id: str, variant: int, strategy: str) -> int:
    """The uint64 seed of one sample."""
    seq = np.random.SeedSequence(
        entropy=int(global_seed),
        spawn_key=(stable_hash32(category), stable_hash32(source_id), int(variant), stable_hash32(strategy)),
    )
    return int(seq.generate_state(1, dtype=np.uint64)[0])


def rng_for(seed: int) -> np.random.Generator:
    """The generator a strategy draws from for the sample with this seed."""
    return np.random.default_rng(int(seed))
