"""The Parquet files of a publication: one row per sample, images as Hugging Face ``Image`` features.

Each image column is a struct ``{bytes: PNG file, path: name}``, the storage of ``datasets.Image``; the
file's schema metadata carries the ``datasets`` feature table (key ``huggingface``), so
``datasets.load_dataset("parquet", ...)`` and the Hub's viewer decode ``image`` and ``mask`` as images and
``label`` as a class label. Other readers (pyarrow, pandas, DuckDB, Croissant) see plain columns.

Files are ``data/{split}-{i:05d}-of-{n:05d}.parquet`` (the Hub's naming, DESIGN.md section 7). Row groups
hold :data:`ROW_GROUP` samples: a streaming reader fetches a few MB at a time, not a whole file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..imageio import encode_png
from ..shards.samples import BuildSample

#: Samples per Parquet row group (about 64 x 2 PNGs: a few MB at 256 x 256, small enough for streaming).
ROW_GROUP = 64
#: Samples per Parquet file by default (at 256 x 256, roughly 100-200 MB a file).
ROWS_PER_FILE = 2000

LABEL_NAMES = ["normal", "anomalous"]


def parquet_name(split: str, i: int, n: int) -> str:
    return f"data/{split}-{i:05d}-of-{n:05d}.parquet"


def features(with_normals: bool):
    """The ``datasets.Features`` of a published row (imported here: ``datasets`` is the publish extra)."""
    import datasets

    columns = {
        "image": datasets.Image(),
        "mask": datasets.Image(),
    }
    if with_normals:
        columns["normal"] = datasets.Image()
    columns.update({
        "label": datasets.ClassLabel(names=LABEL_NAMES),
        "strategy": datasets.Value("string"),
        "category": datasets.Value("string"),
        "source_dataset": datasets.Value("string"),
        "source_image_id": datasets.Value("string"),
        "source_sha256": datasets.Value("string"),
        "source_license": datasets.Value("string"),
        "index": datasets.Value("uint64"),
        "seed": datasets.Value("uint64"),
        "params": datasets.Value("string"),
        "synthgen_version": datasets.Value("string"),
    })
    return datasets.Features(columns)


def write_parquet_files(samples: Iterator[BuildSample], total: int, out_dir: Path, *, split: str, constant: dict,
                        with_normals: bool, rows_per_file: int = ROWS_PER_FILE) -> list[str]:
    """Write the samples into ``out_dir/data/``; returns the files' names relative to ``out_dir``.

    ``constant``: the columns every row of this build shares (category, source_dataset, ...)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = features(with_normals).arrow_schema
    n_files = max(1, -(-total // rows_per_file))
    names: list[str] = []  # grows with the files written, never with what the manifest claims
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    writer, file_number, in_file = None, -1, 0
    batch: dict[str, list] = {name: [] for name in schema.names}

    def flush() -> None:
        if batch["label"]:
            writer.write_table(pa.Table.from_pydict(batch, schema=schema), row_group_size=ROW_GROUP)
            for column in batch.values():
                column.clear()

    try:
        for sample in samples:
            if writer is None or in_file == rows_per_file:
                flush()
                if writer is not None:
                    writer.close()
                file_number, in_file = file_number + 1, 0
                # no statistics on the image columns: min/max of PNG bytes are useless and cost space
                names.append(parquet_name(split, file_number, n_files))
                writer = pq.ParquetWriter(out_dir / names[-1], schema,
                                          write_statistics=[c for c in schema.names if c not in ("image", "mask", "normal")])
            row = {
                "image": {"bytes": encode_png(sample.image), "path": f"{sample.key}.png"},
                "mask": {"bytes": encode_png(sample.mask), "path": f"{sample.key}_mask.png"},
                "label": sample.label,
                "strategy": sample.strategy,
                "source_image_id": sample.source_id,
                "source_sha256": sample.source_sha256,
                "index": sample.index,
                "seed": sample.seed,
                "params": sample.params,
                **constant,
            }
            if with_normals:
                row["normal"] = {"bytes": encode_png(sample.normal), "path": f"{sample.key}_normal.png"}
            for name in schema.names:
                batch[name].append(row[name])
            in_file += 1
            if len(batch["label"]) == ROW_GROUP:
                flush()
        if writer is not None:
            flush()
    finally:
        if writer is not None:
            writer.close()
    if file_number + 1 != n_files:
        raise RuntimeError(f"wrote {file_number + 1} Parquet files, planned {n_files}: the build has fewer samples "
                           f"than its manifest says")
    return names
