"""Compare the stored samples of two builds, sample by sample: are they byte-identical?

Usage: python benchmarks/compare_builds.py BUILD_A BUILD_B

For every shard listed in each build's manifest.json (paired by file name), the sha256 of each
sample's ``image``, ``mask`` and ``normal`` is computed from the HDF5 datasets with h5py and compared.
Attributes (config hash, code fingerprint, timestamps) are ignored on purpose: they name the code that
made the build, not the samples. Prints one line per shard and field and a final verdict; exits 1 when
any sample differs or the builds hold different shards or sample counts.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import h5py

FIELDS = ("image", "mask", "normal")


def shard_files(build: Path) -> list[str]:
    manifest = json.loads((build / "manifest.json").read_text())
    return sorted(shard["file"] for shard in manifest["shards"])


def sample_hashes(path: Path, field: str) -> list[str]:
    with h5py.File(path, "r") as f:
        if field not in f:
            return []
        data = f[field]
        return [hashlib.sha256(data[i].tobytes()).hexdigest() for i in range(data.shape[0])]


def digest_of(hashes: list[str]) -> str:
    """One sha256 over a field's per-sample hashes, to print a short fingerprint of the whole field."""
    return hashlib.sha256("".join(hashes).encode()).hexdigest()[:16]


def compare(build_a: Path, build_b: Path) -> bool:
    files_a, files_b = shard_files(build_a), shard_files(build_b)
    if files_a != files_b:
        print(f"DIFFERENT shard lists: {files_a} vs {files_b}")
        return False
    same = True
    for name in files_a:
        for field in FIELDS:
            a, b = sample_hashes(build_a / name, field), sample_hashes(build_b / name, field)
            differing = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
            ok = len(a) == len(b) and not differing
            same &= ok
            status = "identical" if ok else f"DIFFERENT ({len(a)} vs {len(b)} samples; differing: {differing[:10]})"
            print(f"{name} {field:6s} {len(a):4d} samples  sha256(per-sample hashes) "
                  f"{digest_of(a)} / {digest_of(b)}  {status}")
    print("ALL SAMPLES IDENTICAL" if same else "BUILDS DIFFER")
    return same


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(0 if compare(Path(sys.argv[1]), Path(sys.argv[2])) else 1)
