"""``synthgen export --format webdataset``: tar shards for streaming training at scale.

``OUT/{dataset}-{category}-{i:05d}-of-{n:05d}.tar``, each holding, per sample and in plan order::

    {key}.png        the synthesized image
    {key}.mask.png   its mask (0 / 255)
    {key}.json       label, strategy, category, source id and sha256, index, seed, params (an object)

``{key}`` is the 6-digit plan index (webdataset groups the members of a sample by the part of the
name before the first dot, so a key holds no dot). A key that occurs twice is refused with one line
(generator/shards/samples.py checks it for every export). The tar members carry fixed metadata
(mtime 0, uid/gid 0, mode 0644), so the same build always gives the same bytes.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from ..imageio import encode_png
from .samples import check_strategy_counts, iter_samples

SAMPLES_PER_TAR = 1000


def tar_name(dataset: str, category: str, i: int, n: int) -> str:
    return f"{dataset}-{category}-{i:05d}-of-{n:05d}.tar"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(build_dir: Path, manifest: dict, out: Path, progress: bool,
                     samples_per_tar: int = SAMPLES_PER_TAR) -> dict[str, Any]:
    """Write the tar shards into ``out``; returns export.json's record."""
    ds = manifest["dataset"]
    total = manifest["totals"]["samples"]
    n_tars = max(1, -(-total // samples_per_tar))
    names: list[str] = []  # grows with the tars written, never with what the manifest claims
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    tar, written = None, 0
    try:
        for sample in iter_samples(build_dir, manifest, progress=progress, desc="export"):
            if written % samples_per_tar == 0:
                if tar is not None:
                    tar.close()
                names.append(tar_name(ds["name"], ds["category"], written // samples_per_tar, n_tars))
                tar = tarfile.open(out / names[-1], "w", format=tarfile.USTAR_FORMAT)
            meta = {
                "label": sample.label, "strategy": sample.strategy, "category": ds["category"],
                "source_dataset": ds["name"], "source_image_id": sample.source_id,
                "source_sha256": sample.source_sha256, "index": sample.index, "seed": sample.seed,
                "params": sample.params_dict(),
            }
            _add(tar, f"{sample.key}.png", encode_png(sample.image))
            _add(tar, f"{sample.key}.mask.png", encode_png(sample.mask))
            _add(tar, f"{sample.key}.json", json.dumps(meta, sort_keys=True).encode("utf-8"))
            c = counts.setdefault(sample.strategy, {"anomalous": 0, "normal": 0})
            c["anomalous" if sample.label else "normal"] += 1
            written += 1
    finally:
        if tar is not None:
            tar.close()
    check_strategy_counts(build_dir, manifest, counts)
    return {
        "shards": names,
        "where": {"*.tar": "{key}.png image, {key}.mask.png mask, {key}.json metadata; key = 6-digit plan index"},
        "counts": counts,
    }
