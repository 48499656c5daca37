"""Publish/export benchmark (issue 15): time and size of each output format against the HDF5 build
itself, and samples/s reading each format with its own reader, side by side in one run.

1. Build BUILD (default: the demo dataset, draem + cutpaste, 1000 samples of 256x256) unless it exists,
   then time ``synthgen publish`` and ``synthgen export --format mvtec|anomalib|webdataset`` on it
   (each in-process, progress bars off) and report each output's size next to the shards' size.
2. Read every sample once (image and mask decoded to arrays) with each format's own reader:
   ShardDataset over the HDF5 shards, ``datasets`` over the published Parquet files,
   ``webdataset`` over the tar export. Median of ``--repeats`` passes after a warm-up pass; the
   ratio to ShardDataset is the robust figure on a shared machine.

    OMP_NUM_THREADS=1 python benchmarks/bench_publish.py --work /tmp/bench-publish --samples 1000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_cpu(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): on a shared, busy machine CPU time is the steadier figure."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return round(time.perf_counter() - wall, 1), round(time.process_time() - cpu, 1)


def read_h5(build: Path) -> int:
    from synthgen.generator.shards.reader import ShardDataset

    ds = ShardDataset(build, fields=("image", "mask"))
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["image"].shape[0] == 3
    return len(ds)


def read_parquet(published: Path, cache: Path) -> int:
    import datasets

    files = sorted(str(p) for p in (published / "data").glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files={"train": files}, split="train", cache_dir=str(cache))
    n = 0
    for row in ds:
        image, mask = np.asarray(row["image"]), np.asarray(row["mask"])
        assert image.ndim == 3 and mask.ndim == 2
        n += 1
    return n


def read_webdataset(folder: Path) -> int:
    import webdataset as wds

    tars = sorted(str(p) for p in folder.glob("*.tar"))
    n = 0
    for sample in wds.WebDataset(tars, shardshuffle=False).decode("rgb8"):
        assert sample["png"].ndim == 3 and sample["mask.png"].ndim == 3
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-publish")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from synthgen.generator.config import BuildConfig
    from synthgen.generator.pipeline import build
    from synthgen.generator.publish import publish_build
    from synthgen.generator.shards.export import export_build

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    build_dir = work / "build"
    results: dict = {"samples": args.samples, "image_size": args.image_size,
                     "cpu_threads": os.environ.get("OMP_NUM_THREADS", "unset")}
    if not (build_dir / "manifest.json").is_file():
        config = BuildConfig(dataset="demo", category="parts_box", strategies=("draem", "cutpaste"),
                             num_samples=args.samples, image_size=(args.image_size, args.image_size),
                             texture_source="perlin", seed=0)
        results["build_wall_cpu_s"] = timed_cpu(lambda: build(config, build_dir, progress=False))
    results["hdf5_bytes"] = sum(p.stat().st_size for p in build_dir.glob("*.h5"))

    outputs = {"publish": work / "published", "mvtec": work / "mvtec", "anomalib": work / "anomalib",
               "webdataset": work / "webdataset"}
    for path in outputs.values():
        if path.exists():
            import shutil

            shutil.rmtree(path)
    results["publish_wall_cpu_s"] = timed_cpu(lambda: publish_build(build_dir, outputs["publish"], progress=False))
    for fmt in ("mvtec", "anomalib", "webdataset"):
        results[f"export_{fmt}_wall_cpu_s"] = timed_cpu(
            lambda: export_build(build_dir, outputs[fmt], fmt=fmt, progress=False))
    for name, path in outputs.items():
        results[f"{name}_bytes"] = folder_bytes(path)
        results[f"{name}_size_vs_hdf5"] = round(results[f"{name}_bytes"] / results["hdf5_bytes"], 3)

    readers = {
        "ShardDataset(hdf5)": lambda: read_h5(build_dir),
        "datasets(parquet)": lambda: read_parquet(outputs["publish"], work / "hf-cache"),
        "webdataset(tar)": lambda: read_webdataset(outputs["webdataset"]),
    }
    for name, read in readers.items():
        assert read() == args.samples  # warm-up (and the datasets Arrow cache is built here)
        seconds = statistics.median(timed(read) for _ in range(args.repeats))
        results[f"read_{name}_samples_per_s"] = round(args.samples / seconds, 1)
    base = results["read_ShardDataset(hdf5)_samples_per_s"]
    for name in readers:
        results[f"read_{name}_vs_ShardDataset"] = round(results[f"read_{name}_samples_per_s"] / base, 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
