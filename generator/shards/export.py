"""``synthgen export --format mvtec``: write a build as an MVTec AD folder tree.

Layout (what anomalib's Folder datamodule and most MVTec readers expect)::

    OUT/<category>/test/<strategy>/<index>.png              anomalous samples, by strategy
    OUT/<category>/ground_truth/<strategy>/<index>_mask.png their masks (0 / 255)
    OUT/<category>/test/good/<index>.png                    samples whose mask is empty (label 0)
    OUT/<category>/export.json                              which build this came from

``<index>`` is the sample's 6-digit plan index, so a file maps back to its row in the shards.
The tree is written to a temporary folder and renamed into place: an interrupted export leaves
nothing under OUT. The build is untrusted input (generator/shards/untrusted.py): its category and
strategy names become folder names only after the name rule accepts them, and OUT may not be, hold or
lie inside the build, so no flag can make an export write into or delete its input.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tqdm import tqdm

from ..atomic import TMP_PREFIX, write_json_atomic
from ..errors import SynthgenError
from ..imageio import write_png
from .untrusted import check_output_apart, check_shard, existing_shard_paths, open_shard, read_manifest, read_names

FORMATS = ("mvtec",)


def export_build(build_dir: str | Path, to: str | Path, *, fmt: str = "mvtec", overwrite: bool = False,
                 progress: bool = True) -> Path:
    if fmt not in FORMATS:
        raise SynthgenError(f"--format: unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    build_dir, to = Path(build_dir), Path(to)
    check_output_apart(to, build_dir, "--to")
    manifest = read_manifest(build_dir)  # schema-valid; category and strategy names follow the name rule
    shards = existing_shard_paths(build_dir, manifest)
    if to.exists() and any(to.iterdir()) and not overwrite:
        raise SynthgenError(f"{to}: folder exists and is not empty; pass --overwrite to replace it")
    category = manifest["dataset"]["category"]
    tmp = to.parent / f"{TMP_PREFIX}export-{to.name}-{os.getpid()}"
    old = to.parent / f"{TMP_PREFIX}replaced-{to.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        counts = _write_tree(manifest, shards, tmp / category, progress)
        write_json_atomic(tmp / category / "export.json", {
            "format": fmt,
            "build_config_hash": manifest["config_hash"],
            "synthgen_version": manifest["synthgen_version"],
            "counts": counts,
        })
        if to.exists():  # move the old export aside first: a crash between the renames loses neither
            os.replace(to, old)
        os.replace(tmp, to)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return to / category


def _write_tree(manifest: dict, shards: list[Path], root: Path, progress: bool) -> dict[str, int]:
    counts: dict[str, int] = {}
    total = manifest["totals"]["samples"]
    with tqdm(total=total, desc="export", unit="sample", disable=not progress) as bar:
        for entry, path in zip(manifest["shards"], shards):
            with open_shard(path) as f:
                check_shard(f, path, ("image", "mask", "label", "index", "strategy"), entry["num_samples"],
                            manifest["config"]["image_size"])
                strategies = read_names(f, "strategy", path)  # they become folder names below
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
