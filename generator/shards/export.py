"""``synthgen export``: write a build in the layouts other people's trainers read.

``--format mvtec`` (anomalib's ``Folder`` and ``MVTecAD`` datamodules, most MVTec readers)::

    OUT/<category>/train/good/<source>.png                  the build's source images at the build's size:
                                                            the normal training set the samples were made from
    OUT/<category>/test/<strategy>/<index>.png              anomalous samples, by strategy
    OUT/<category>/ground_truth/<strategy>/<index>_mask.png their masks (0 / 255)
    OUT/<category>/export.json                              what went where, counts per strategy, the build
    OUT/synthetic_normal/<category>/<strategy>/<index>.png  samples whose mask is empty (label 0)

``--format anomalib``: the same tree plus ``OUT/<category>/samples.parquet`` with the columns anomalib's
``Tabular`` datamodule reads (image_path, label_index, split, mask_path; paths relative to
OUT/<category>): the training images as split "train", the anomalous samples as split "test".

``--format webdataset``: tar shards for streaming (generator/shards/export_webdataset.py).

Why normal samples are kept out of ``test/``: a strategy's normal samples (DRAEM keeps half of its
samples unchanged, a rotation sample is a rotated normal) are copies, or near copies, of training images.
Under ``test/good`` they would be a train/test leak for anyone who trains on ``train/good`` and would
silently swell the normal class of the test set; they go to ``synthetic_normal/`` outside the MVTec
tree instead (MVTecAD's reader globs the whole category folder), and ``export.json`` counts, per
strategy, the anomalous and the normal samples, which add up to the manifest's counts.

``<index>`` is the sample's 6-digit plan index, so a file maps back to its row in the shards; a
training image is named after its source id (``train/good/007`` -> ``train_good_007.png``).
The tree is written to a temporary folder and renamed into place: an interrupted export leaves
nothing under OUT. The build is untrusted input (generator/shards/untrusted.py): its category and
strategy names become folder names only after the name rule accepts them, and OUT may not be, hold or
lie inside the build, so no flag can make an export write into or delete its input.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..atomic import TMP_PREFIX, temp_folder_beside, write_json_atomic
from ..diskspace import disk_full_error, is_disk_full
from ..errors import SynthgenError
from ..imageio import write_png
from .samples import check_strategy_counts, iter_samples, source_file_names, training_images
from .untrusted import check_output_apart, check_output_apart_from_inputs, existing_shard_paths, read_manifest

FORMATS = ("mvtec", "anomalib", "webdataset")
SYNTHETIC_NORMAL = "synthetic_normal"


def export_build(build_dir: str | Path, to: str | Path, *, fmt: str = "mvtec", overwrite: bool = False,
                 source_root: str | Path | None = None, progress: bool = True) -> Path:
    """Export ``build_dir`` into the folder ``to``; returns the folder a reader opens (OUT/<category>
    for the folder formats, OUT for webdataset)."""
    if fmt not in FORMATS:
        raise SynthgenError(f"--format: unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    build_dir, to = Path(build_dir), Path(to)
    check_output_apart(to, build_dir, "--to")
    manifest = read_manifest(build_dir)  # schema-valid; category and strategy names follow the name rule
    # never into, over or around the build's own inputs (its dataset, textures, weights, the cache)
    check_output_apart_from_inputs(to, manifest, "--to", "an export", source_root)
    existing_shard_paths(build_dir, manifest)  # a missing shard is refused before anything is written
    source_file_names(manifest, build_dir / "manifest.json")  # every source id to a distinct file
    if to.exists() and any(to.iterdir()):
        if not overwrite:
            raise SynthgenError(f"{to}: folder exists and is not empty; pass --overwrite to replace it")
        if not _is_export(to):
            raise SynthgenError(f"{to}: holds something that is not a synthgen export; --overwrite replaces only "
                                "an earlier export: choose another --to")
    category = manifest["dataset"]["category"]
    old = to.parent / f"{TMP_PREFIX}replaced-{to.name}-{os.getpid()}"
    tmp = temp_folder_beside(to, "export")  # also removes what killed exports to `to` left behind
    for stale in to.parent.glob(f"{TMP_PREFIX}replaced-{to.name}-*"):
        if stale.name != old.name and not (to.parent / f"{TMP_PREFIX}export-{to.name}-{stale.name.rsplit('-', 1)[-1]}").exists():
            shutil.rmtree(stale, ignore_errors=True)  # its export finished or died; `to` holds the newer tree
    try:
        if fmt == "webdataset":
            from .export_webdataset import write_webdataset

            record, opened = write_webdataset(build_dir, manifest, tmp, progress), ""
        else:
            record, opened = _write_tree(build_dir, manifest, tmp, fmt, source_root, progress), category
        write_json_atomic(tmp / opened / "export.json", {
            "format": fmt,
            "build": str(build_dir.resolve()),
            "build_config_hash": manifest["config_hash"],
            "synthgen_version": manifest["synthgen_version"],
            **record,
        })
        try:
            if to.exists():  # move the old export aside first: a crash between the renames loses neither
                os.replace(to, old)
            os.replace(tmp, to)
        except OSError as e:  # another export to the same folder renamed its tree in meanwhile
            raise SynthgenError(f"{to}: another export wrote this folder while this one ran ({e.strerror}); "
                                "run the export again") from None
        shutil.rmtree(old, ignore_errors=True)
    except Exception as e:
        if is_disk_full(e):  # nothing under `to` changed; the temporary tree goes below
            raise disk_full_error(to.parent) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return to / opened if opened else to


def _is_export(folder: Path) -> bool:
    """True when ``folder`` holds an earlier synthgen export (its export.json, at the top for webdataset or
    in the category folder for the folder formats): the only thing ``--overwrite`` may replace."""
    return (folder / "export.json").is_file() or any((child / "export.json").is_file()
                                                     for child in folder.iterdir() if child.is_dir())


def _write_tree(build_dir: Path, manifest: dict, out: Path, fmt: str, source_root: str | Path | None,
                progress: bool) -> dict[str, Any]:
    """The MVTec tree (and, for anomalib, its samples.parquet) under ``out``; returns export.json's record."""
    category = manifest["dataset"]["category"]
    root = out / category
    rows: list[dict[str, Any]] = []  # samples.parquet
    train = root / "train" / "good"
    train.mkdir(parents=True)
    n_train = 0
    file_names = source_file_names(manifest, build_dir / "manifest.json")
    for source_id, pixels in training_images(build_dir, manifest, source_root):
        name = file_names[source_id]
        write_png(train / name, pixels)
        rows.append({"image_path": f"train/good/{name}", "label_index": 0, "split": "train", "mask_path": ""})
        n_train += 1
    per_strategy: dict[str, dict[str, int]] = {}
    for sample in iter_samples(build_dir, manifest, progress=progress, desc="export"):
        counts = per_strategy.setdefault(sample.strategy, {"anomalous": 0, "normal": 0})
        if sample.label:
            image = f"test/{sample.strategy}/{sample.key}.png"
            mask = f"ground_truth/{sample.strategy}/{sample.key}_mask.png"
            for relative, pixels in ((image, sample.image), (mask, sample.mask)):
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                write_png(root / relative, pixels)
            rows.append({"image_path": image, "label_index": 1, "split": "test", "mask_path": mask})
            counts["anomalous"] += 1
        else:
            folder = out / SYNTHETIC_NORMAL / category / sample.strategy
            folder.mkdir(parents=True, exist_ok=True)
            write_png(folder / f"{sample.key}.png", sample.image)
            counts["normal"] += 1
    check_strategy_counts(build_dir, manifest, per_strategy)
    if fmt == "anomalib":
        _write_samples_table(rows, root / "samples.parquet")
    h, w = manifest["config"]["image_size"]
    return {
        "where": {
            "train/good": f"{n_train} source images of the build ({manifest['dataset']['name']} "
                          f"{manifest['dataset']['split']} split), resized to {h}x{w}, sha256 checked",
            "test/<strategy>": "anomalous samples (label 1)",
            "ground_truth/<strategy>": "their masks, <index>_mask.png, 0 normal / 255 anomalous",
            f"../{SYNTHETIC_NORMAL}/{category}/<strategy>": "normal samples (label 0): copies or near copies "
                                                             "of training images, kept out of test/",
            **({"samples.parquet": "anomalib Tabular table: image_path, label_index, split, mask_path"}
               if fmt == "anomalib" else {}),
        },
        "train_images": n_train,
        "counts": per_strategy,
    }


def _write_samples_table(rows: list[dict[str, Any]], path: Path) -> None:
    """anomalib's Tabular table as Parquet (it refuses HDF5; reads csv, json, parquet)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SynthgenError("--format anomalib: needs pyarrow (pip install 'synthgen[publish]')") from None
    schema = pa.schema([("image_path", pa.string()), ("label_index", pa.int64()), ("split", pa.string()),
                        ("mask_path", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
