"""The build manifest: one JSON file that says exactly how every sample was made.

``manifest.json`` is merged from the per-shard sidecars once every shard exists. It records what is
needed to rebuild the data bit for bit and to check it: synthgen version, the full config and its
hash, the seed, every source file's sha256, texture and model files' sha256, every shard's sha256
and counts, and the library versions that produced the bytes. Its JSON Schema is
``manifests/manifest.schema.json``; ``validate_manifest`` checks a manifest against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from synthgen.manifests import schema_path

from .. import __version__
from ..atomic import write_json_atomic
from ..errors import SynthgenError
from .format import MASK_ON, SCHEMA_VERSION, field_table

if TYPE_CHECKING:
    from ..plan import BuildPlan

BUILD_FILE = "build.json"  # written when a build starts: its identity, so a different build is refused
MANIFEST_FILE = "manifest.json"


def add_counts(total: dict[str, int], part: dict[str, int]) -> None:
    """Add the counts of ``part`` into ``total``, key by key."""
    for key, value in part.items():
        total[key] = total.get(key, 0) + value


def build_manifest(plan: "BuildPlan", sidecars: list[dict], environment: dict[str, str]) -> dict[str, Any]:
    config = plan.config
    totals: dict[str, Any] = {"samples": 0, "strategies": {}, "labels": {}, "redraws": {}, "fallback_normal": {},
                              "rejections": {}}
    shards = []
    for side in sorted(sidecars, key=lambda d: d["shard_index"]):
        totals["samples"] += side["num_samples"]
        for key in ("strategies", "labels", "redraws", "fallback_normal"):
            add_counts(totals[key], side[key])
        rejections = side.get("rejections", {})  # sidecars written before the reasons were counted have none
        for strategy, reasons in rejections.items():
            add_counts(totals["rejections"].setdefault(strategy, {}), reasons)
        shards.append({**{k: side[k] for k in (
            "file", "sha256", "bytes", "shard_index", "first_index", "num_samples",
            "strategies", "labels", "redraws", "fallback_normal",
        )}, "rejections": rejections})
    root = plan.dataset.root
    return {
        "schema_version": SCHEMA_VERSION,
        "synthgen_version": __version__,
        "config_hash": plan.config_hash,
        "config": config.to_dict(),
        "seed": config.seed,
        "strategies": list(plan.strategies),
        "mask_value": MASK_ON,
        "dataset": {
            "name": config.dataset,
            "category": config.category,
            "split": config.split,
            "root": str(root),
            "sources": [
                {"id": s.id, "file": _relative(s.path, root), "sha256": h}
                for s, h in zip(plan.sources.images, plan.sources.sha256)
            ],
        },
        "textures": plan.textures,
        "artifacts": plan.artifacts,
        "fields": field_table(config.image_size, config.compress_images, plan.extra_fields),
        "shards": shards,
        "totals": totals,
        "environment": environment,
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def write_manifest(out_dir: Path, plan: "BuildPlan", sidecars: list[dict], environment: dict[str, str]) -> Path:
    manifest = build_manifest(plan, sidecars, environment)
    validate_manifest(manifest, where=out_dir / MANIFEST_FILE)
    path = out_dir / MANIFEST_FILE
    write_json_atomic(path, manifest)
    return path


def load_schema() -> dict:
    return json.loads(Path(schema_path()).read_text())


def validate_manifest(manifest: dict, where: str | Path = MANIFEST_FILE) -> None:
    """Raise SynthgenError naming the first schema violation."""
    try:
        jsonschema.validate(manifest, load_schema())
    except jsonschema.ValidationError as e:
        location = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise SynthgenError(f"{where}: manifest does not match the schema at {location}: {e.message}") from None
