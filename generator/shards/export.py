"""``synthgen export --format mvtec``: write a build as an MVTec AD folder tree.

Layout (what anomalib's Folder datamodule and most MVTec readers expect)::

    OUT/<category>/test/<strategy>/<index>.png              anomalous samples, by strategy
    OUT/<category>/ground_truth/<strategy>/<index>_mask.png their masks (0 / 255)
    OUT/<category>/test/good/<index>.png                    samples whose mask is empty (label 0)
    OUT/<category>/export.json                              which build this came from

``<index>`` is the sample's 6-digit plan index, so a file maps back to its row in the shards.
The tree is written to a temporary folder and renamed into place: an interrupted export leaves
nothing under OUT.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
from tqdm import tqdm

from ..atomic import TMP_PREFIX, write_json_atomic
from ..errors import SynthgenError
from ..imageio import write_png
from .reader import read_manifest

FORMATS = ("mvtec",)


def export_build(build_dir: str | Path, to: str | Path, *, fmt: str = "mvtec", overwrite: bool = False,
                 progress: bool = True) -> Path:
    if fmt not in FORMATS:
        raise SynthgenError(f"--format: unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    build_dir, to = Path(build_dir), Path(to)
    manifest = read_manifest(build_dir)
    if to.exists() and any(to.iterdir()) and not overwrite:
        raise SynthgenError(f"{to}: folder exists and is not empty; pass --overwrite to replace it")
    category = manifest["dataset"]["category"]
    tmp = to.parent / f"{TMP_PREFIX}export-{to.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        counts = _write_tree(build_dir, manifest, tmp / category, progress)
        write_json_atomic(tmp / category / "export.json", {
            "format": fmt,
            "build_config_hash": manifest["config_hash"],
            "synthgen_version": manifest["synthgen_version"],
            "counts": counts,
        })
        if to.exists():
            shutil.rmtree(to)
        os.replace(tmp, to)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return to / category


def _write_tree(build_dir: Path, manifest: dict, root: Path, progress: bool) -> dict[str, int]:
    counts: dict[str, int] = {}
    total = manifest["totals"]["samples"]
    with tqdm(total=total, desc="export", unit="sample", disable=not progress) as bar:
        for shard in manifest["shards"]:
            with h5py.File(build_dir / shard["file"], "r") as f:
                strategies = f["strategy"].asstr()[...]
                labels = f["label"][...]
                indices = f["index"][...]
                for row in range(len(labels)):
                    name = f"{int(indices[row]):06d}"
                    group = strategies[row] if labels[row] else "good"
                    (root / "test" / group).mkdir(parents=True, exist_ok=True)
                    write_png(root / "test" / group / f"{name}.png", f["image"][row])
                    if labels[row]:
                        (root / "ground_truth" / group).mkdir(parents=True, exist_ok=True)
                        write_png(root / "ground_truth" / group / f"{name}_mask.png", f["mask"][row])
                    counts[group] = counts.get(group, 0) + 1
                    bar.update(1)
    return counts
