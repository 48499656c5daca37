"""Every record synthgen reads, with its types, its bounds and its cross-checks, in one place.

A record is a small JSON (or plain-data) document that some earlier run wrote and a later one trusts:
a build's manifest, a shard's sidecar, ``build.json``, the record beside a cached generator, a
feature-cache entry's header, a training run's ``run.json``, a cost table, the file list of a
publication. Any of them may have been edited, damaged or written by someone else, so a record is
checked for its *meaning* before use, not only for its shape:

- **Types and bounds** (:data:`SCHEMAS`): each record is a JSON Schema with ranges on every number
  that sizes something (sample counts, image sizes, bytes), patterns on hashes, enumerations on
  states. JSON Schema through ``jsonschema`` (already a core dependency for the manifest): declarative,
  one table per record, and its error names the field (``/num_samples: 'x' is not of type 'integer'``).
- **No NaN or infinity**: Python's json module reads ``NaN`` and ``Infinity``, which pass every range
  check (a comparison with NaN is false); :func:`parse_json` refuses them, and :func:`check_record`
  refuses non-finite floats in plain-data records (generator files loaded by torch).
- **Cross-checks** (:func:`check_manifest_counts`, :func:`check_sidecar`): counts against each other
  and against the shards (a manifest whose totals claim 40 samples while its shards hold 16), names
  by the one name rule (generator/names.py), a shard's sample count against its size in bytes.

Two ways to read: :func:`read_record` raises a one-line :class:`SynthgenError` naming the file and
the field (for records a user hands us); :func:`read_own_record` returns None for a record that is
missing or fails any check (for records synthgen writes itself and simply redoes: sidecars, cache
records), so that a damaged one is rebuilt, never trusted and never a traceback.

The manifest's own schema stays in ``manifests/manifest.schema.json`` (it is published with the
datasets); its bounds and cross-checks beyond the schema are here. This module imports nothing from
synthgen but the error type and the name rule, so every layer (and the trainers) can use it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import jsonschema

from .errors import MAX_RECORD_BYTES, SynthgenError, load_json, parse_json  # the one JSON reader
from .names import check_name, check_names, check_shard_file_name, name_problem, shown

# --------------------------------------------------------------------------------------------- bounds

#: Most shards of one build: the shard file name holds the count in five digits.
MAX_SHARDS = 99_999
#: Most samples in one shard (the default is 256; at 32x32, the smallest image size, a million samples
#: are 7 GB of pixels, as large as one HDF5 file of a build ever sensibly gets).
MAX_SAMPLES_PER_SHARD = 1 << 20
#: Most samples of one build (every shard full).
MAX_SAMPLES = MAX_SHARDS * MAX_SAMPLES_PER_SHARD
#: Largest side of an image a record may claim (the build itself refuses far less: preflight.check_memory).
MAX_IMAGE_SIDE = 1 << 16
#: Largest file a record may claim (a shard, a published file): 16 TiB.
MAX_FILE_BYTES = 1 << 44

_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_SAMPLES}
_COUNTS = {"type": "object", "additionalProperties": _COUNT}
_SIDE = {"type": "integer", "minimum": 1, "maximum": MAX_IMAGE_SIDE}
_IMAGE_SIZE = {"type": "array", "items": _SIDE, "minItems": 2, "maxItems": 2}
_SECONDS = {"type": "number", "minimum": 0, "maximum": 1e9}

#: record name -> JSON Schema (types and bounds). The name is what error messages call the record.
SCHEMAS: dict[str, dict] = {
    # generator/pipeline.py build_shard: one per finished shard, merged into the manifest
    "shard sidecar": {
        "type": "object",
        "required": ["file", "sha256", "bytes", "shard_index", "num_shards", "first_index", "num_samples",
                     "config_hash", "strategies", "labels", "redraws", "fallback_normal"],
        "properties": {
            "file": {"type": "string"},
            "sha256": _HEX64,
            "bytes": {"type": "integer", "minimum": 1, "maximum": MAX_FILE_BYTES},
            "shard_index": {"type": "integer", "minimum": 0, "maximum": MAX_SHARDS - 1},
            "num_shards": {"type": "integer", "minimum": 1, "maximum": MAX_SHARDS},
            "first_index": {"type": "integer", "minimum": 0, "maximum": MAX_SAMPLES},
            "num_samples": {"type": "integer", "minimum": 1, "maximum": MAX_SAMPLES_PER_SHARD},
            "config_hash": _HEX64,
            "strategies": _COUNTS,
            "labels": {"type": "object", "properties": {"0": _COUNT, "1": _COUNT}, "additionalProperties": False},
            "redraws": _COUNTS,
            "fallback_normal": _COUNTS,
            "rejections": {"type": "object", "additionalProperties": _COUNTS},
        },
    },
    # generator/pipeline.py _claim_out_dir: who claimed a build folder
    "build record": {
        "type": "object",
        "required": ["config_hash", "config"],
        "properties": {"config_hash": _HEX64, "config": {"type": "object"},
                       "synthgen_version": {"type": "string", "maxLength": 100},
                       "code": {"type": "string", "maxLength": 100}},
    },
    # generator/training/inpaint.py and e2i.py: the JSON beside a trained generator file
    "generator record": {
        "type": "object",
        "required": ["sha256", "file", "data"],
        "properties": {"sha256": _HEX64, "file": {"type": "string"},
                       "data": {"type": "object", "required": ["key"], "properties": {"key": _HEX64}}},
    },
    # generator/models/inpaint.py save_inpainter: the generator file's contents besides its weights
    "inpainting generator file": {
        "type": "object",
        "required": ["format", "version", "config", "image_size", "state_dict"],
        "properties": {
            "config": {"type": "object"},
            "image_size": _IMAGE_SIZE,
            # the hole is grown by this many pixels before inpainting: 0 (none) up to a quarter of 256 px
            "hole_dilation": {"type": "integer", "minimum": 0, "maximum": 64},
            "training": {"type": "object"},
            "state_dict": {"type": "object"},
        },
    },
    # generator/sources.py: the record beside a cached stack of decoded, resized source images
    "source stack record": {
        "type": "object",
        "required": ["sha256", "shape"],
        "properties": {"sha256": _HEX64,
                       "shape": {"type": "array", "minItems": 4, "maxItems": 4,
                                 "items": {"type": "integer", "minimum": 0, "maximum": MAX_SAMPLES}}},
    },
    # trainers/shard_features.py: the JSON header line of a feature-cache entry
    "feature cache header": {
        "type": "object",
        "required": ["format", "key", "arrays", "payload_sha256"],
        "properties": {
            "format": {"type": "integer"},
            "key": {"type": "string", "maxLength": 200},
            "payload_sha256": _HEX64,
            "arrays": {"type": "array", "maxItems": 64, "items": {
                "type": "object", "required": ["name", "dtype", "shape"],
                "properties": {"name": _NAME,
                               # little-endian numbers only: what numpy writes on every machine synthgen runs on
                               "dtype": {"enum": ["|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8",
                                                  "<f2", "<f4", "<f8"]},
                               "shape": {"type": "array", "maxItems": 8,
                                         "items": {"type": "integer", "minimum": 0, "maximum": 1 << 40}}}}},
        },
    },
    # trainers/base.py: a training run's run.json (config: absent in a run a registered loader of a
    # method outside synthgen wrote; resuming compares it when present)
    "run record": {
        "type": "object",
        "required": ["method", "status"],
        "properties": {"method": _NAME, "status": {"enum": ["training", "stopped", "complete"]},
                       "config": {"type": "object"}},
    },
    # generator/cost_model.py: measured seconds per unit of work
    "cost table": {
        "type": "object",
        "required": ["version", "image_size", "seconds", "inpaint_train_crop", "overhead_bytes_per_sample",
                     "compressed_image_ratio"],
        "properties": {"version": {"type": "integer"}, "image_size": _IMAGE_SIZE,
                       "seconds": {"type": "object", "additionalProperties": _SECONDS},
                       "inpaint_train_crop": _SIDE,
                       "overhead_bytes_per_sample": {"type": "number", "minimum": 0, "maximum": 1 << 30},
                       # compressed / raw bytes of an image: a ratio above 1 is no compression at all
                       "compressed_image_ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
    },
    # generator/publish: the manifest's "publication" record, the list of published files
    "publication": {
        "type": "object",
        "required": ["files", "license", "with_normals", "counts"],
        "properties": {
            "files": {"type": "object", "maxProperties": 1_000_000, "additionalProperties": {
                "type": "object", "required": ["sha256", "bytes"],
                "properties": {"sha256": _HEX64, "bytes": {"type": "integer", "minimum": 0, "maximum": MAX_FILE_BYTES}}}},
            "license": {"type": "string", "maxLength": 100},
            "with_normals": {"type": "boolean"},
            "counts": {"type": "object", "additionalProperties": {
                "type": "object", "properties": {"anomalous": _COUNT, "normal": _COUNT}}},
        },
    },
}


# -------------------------------------------------------------------------------------------- reading


def _first_non_finite(value: Any, at: str = "") -> str | None:
    """Where in plain data ``value`` a NaN or infinite float sits (``/seconds/render``), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (at or "(top level)")
    if isinstance(value, dict):
        items: Iterable = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _first_non_finite(item, f"{at}/{key}")
        if found:
            return found
    return None


def check_record(value: Any, record: str, where: str | Path) -> dict:
    """``value`` when it is a valid ``record`` (a key of :data:`SCHEMAS`): its types and bounds hold and it
    holds no NaN or infinity. One-line SynthgenError naming ``where``, the field and the problem otherwise."""
    schema = SCHEMAS[record]
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as e:
        location = "/" + "/".join(str(p) for p in e.absolute_path) if e.absolute_path else "(top level)"
        problem = e.message if len(e.message) <= 160 else e.message[:157] + "..."
        raise SynthgenError(f"{where}: {record} is not valid at {location}: {problem}") from None
    except RecursionError:
        raise SynthgenError(f"{where}: {record} is nested too deeply") from None
    found = _first_non_finite(value)
    if found:
        raise SynthgenError(f"{where}: {record} holds a number that is not finite at {found}")
    return value


def read_record(path: str | Path, record: str) -> dict:
    """The ``record`` in the JSON file ``path``, checked (:func:`check_record`); one-line error otherwise."""
    return check_record(load_json(path, record), record, path)


def read_own_record(path: str | Path, record: str) -> dict | None:
    """:func:`read_record`, or None when the file is missing or fails any check: for the records synthgen
    writes itself and redoes when they are bad (sidecars, cache records)."""
    try:
        return read_record(path, record)
    except SynthgenError:
        return None


# ---------------------------------------------------------------------------------------- cross-checks


def _sum(counts: dict) -> int:
    return sum(counts.values())


def check_count_table(entry: dict, num_samples: int, where: str, label: str) -> None:
    """A shard's (or a build's) per-strategy and per-label counts must each add up to its sample count,
    and every strategy it counts must follow the name rule."""
    check_names(entry["strategies"], "strategy", where)
    for table in ("strategies", "labels"):
        if _sum(entry[table]) != num_samples:
            raise SynthgenError(f"{where}: {label} counts {_sum(entry[table])} samples in its {table!r} "
                                f"but holds {num_samples}")
    for table in ("redraws", "fallback_normal"):
        unknown = sorted(set(entry[table]) - set(entry["strategies"]))
        if unknown:
            raise SynthgenError(f"{where}: {label} counts {table} of strategy {shown(unknown[0])}, "
                                "which made none of its samples")
    if any(entry["fallback_normal"][s] > entry["strategies"][s] for s in entry["fallback_normal"]):
        raise SynthgenError(f"{where}: {label} counts more fallback normals than samples of a strategy")


def check_manifest_counts(manifest: dict, where: str | Path) -> None:
    """Cross-check a (schema-valid) manifest's numbers: shards numbered 0..n-1 in order, each shard's
    samples following the previous shard's (``first_index``), its counts adding up to its sample count,
    no more samples than bytes, and the totals equal to the sum over the shards."""
    shards = manifest["shards"]
    if len(shards) > MAX_SHARDS:
        raise SynthgenError(f"{where}: lists {len(shards)} shards; a build has at most {MAX_SHARDS}")
    expected_first = 0
    totals: dict[str, dict[str, int]] = {t: {} for t in ("strategies", "labels", "redraws", "fallback_normal")}
    for i, shard in enumerate(shards):
        label = f"shard {shard['file']!r}"
        if shard["shard_index"] != i:
            raise SynthgenError(f"{where}: {label} is listed at position {i} but has shard_index {shard['shard_index']}")
        if shard["first_index"] != expected_first:
            raise SynthgenError(f"{where}: {label} starts at sample {shard['first_index']}, but the shards before "
                                f"it hold {expected_first}")
        if shard["num_samples"] > MAX_SAMPLES_PER_SHARD or shard["num_samples"] > shard["bytes"]:
            raise SynthgenError(f"{where}: {label} claims {shard['num_samples']} samples in {shard['bytes']} bytes")
        check_count_table(shard, shard["num_samples"], str(where), label)
        expected_first += shard["num_samples"]
        for table, counts in totals.items():
            for key, value in shard[table].items():
                counts[key] = counts.get(key, 0) + value
    total = manifest["totals"]
    if total["samples"] != expected_first:
        raise SynthgenError(f"{where}: totals claim {total['samples']} samples but the shards hold {expected_first}")
    for table, counts in totals.items():
        stated = {k: v for k, v in total[table].items() if v}
        if stated != {k: v for k, v in counts.items() if v}:
            raise SynthgenError(f"{where}: totals' {table!r} {shown(stated)} differ from the sum over the shards "
                                f"{shown(counts)}")
    check_names(manifest["totals"]["strategies"], "strategy", where)


def check_manifest_bounds(manifest: dict, where: str | Path) -> None:
    """Bounds the manifest's JSON Schema (published with the datasets) leaves open, and how its shards
    follow from its config: image sides at most :data:`MAX_IMAGE_SIDE`, at most ``samples_per_shard``
    samples in a shard and exactly that many in every shard but the last, no file larger than
    :data:`MAX_FILE_BYTES`."""
    config, shards = manifest["config"], manifest["shards"]
    if max(config["image_size"]) > MAX_IMAGE_SIDE:
        raise SynthgenError(f"{where}: image size {config['image_size']} is larger than any build's "
                            f"({MAX_IMAGE_SIDE} px a side at most)")
    per_shard = config["samples_per_shard"]
    if per_shard > MAX_SAMPLES_PER_SHARD:
        raise SynthgenError(f"{where}: samples_per_shard {per_shard} is more than {MAX_SAMPLES_PER_SHARD}")
    for i, shard in enumerate(shards):
        full = i < len(shards) - 1
        if shard["num_samples"] > per_shard or (full and shard["num_samples"] != per_shard):
            raise SynthgenError(f"{where}: shard {shard['file']!r} holds {shard['num_samples']} samples, but the "
                                f"config puts {per_shard} in every shard{' but the last' if not full else ''}")
        if shard["bytes"] > MAX_FILE_BYTES:
            raise SynthgenError(f"{where}: shard {shard['file']!r} claims {shard['bytes']} bytes")


def check_sidecar(sidecar: Any, where: str | Path, *, file: str, shard_index: int, num_shards: int,
                  first_index: int, num_samples: int, config_hash: str, strategies: Iterable[str]) -> dict:
    """A shard's sidecar checked as a record and against what the build's plan says shard ``shard_index``
    is: its file name, position, sample count and config hash, and counts that add up and name only the
    plan's strategies. One-line SynthgenError otherwise."""
    check_record(sidecar, "shard sidecar", where)
    check_shard_file_name(sidecar["file"], where)
    expected = {"file": file, "shard_index": shard_index, "num_shards": num_shards, "first_index": first_index,
                "num_samples": num_samples, "config_hash": config_hash}
    for key, value in expected.items():
        if sidecar[key] != value:
            raise SynthgenError(f"{where}: sidecar's {key} is {shown(sidecar[key])}, the build's plan says {shown(value)}")
    check_count_table(sidecar, num_samples, str(where), "sidecar")
    unknown = sorted(set(sidecar["strategies"]) - set(strategies))
    if unknown:
        raise SynthgenError(f"{where}: sidecar counts strategy {shown(unknown[0])}, which the build does not use")
    if sidecar["num_samples"] > sidecar["bytes"]:
        raise SynthgenError(f"{where}: sidecar claims {sidecar['num_samples']} samples in {sidecar['bytes']} bytes")
    return sidecar


def check_method_name(method: Any, where: str | Path) -> str:
    """A training method's name as a run record gives it (the name rule: it selects a loader, never a path)."""
    problem = name_problem(method)
    if problem is not None:
        raise SynthgenError(f"{where}: method name {shown(method)} {problem}")
    return method


__all__ = [
    "SCHEMAS", "MAX_SHARDS", "MAX_SAMPLES_PER_SHARD", "MAX_SAMPLES", "MAX_IMAGE_SIDE", "MAX_FILE_BYTES",
    "parse_json", "load_json", "check_record", "read_record", "read_own_record",
    "check_count_table", "check_manifest_counts", "check_manifest_bounds", "check_sidecar", "check_method_name", "check_name",
]
