"""``synthgen inspect``: what is in a build, as a table and as a contact sheet.

The table counts samples per strategy and label (from the manifest, no shard reads). The contact
sheet shows, for each strategy, a few anomalous samples as (image | mask overlay) pairs, picked
evenly over the build so the sheet is the same every time. ``--maps`` adds the sheet of the edge and
region maps the build's sources were given (:func:`build_maps_sheet`). The build is untrusted input:
its manifest and shards are read through generator/shards/untrusted.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SynthgenError
from ..viz import contact_sheet, overlay_mask, save_sheet
from .untrusted import check_output_file, check_shard, existing_shard_paths, open_shard, read_manifest, read_names


def summary_table(build_dir: str | Path) -> str:
    m = read_manifest(build_dir)
    ds = m["dataset"]
    totals = m["totals"]
    lines = [
        f"build     {Path(build_dir)}",
        f"dataset   {ds['name']} / {ds['category']} ({ds['split']}, {len(ds['sources'])} source images)",
        f"samples   {totals['samples']} in {len(m['shards'])} shards, image size "
        f"{m['config']['image_size'][0]}x{m['config']['image_size'][1]}, seed {m['seed']}",
        "",
        f"{'strategy':<22}{'samples':>9}{'anomalous':>11}{'normal':>8}{'redrawn':>9}{'fallback':>10}",
    ]
    per = strategy_label_counts(build_dir)
    for name in sorted(totals["strategies"]):
        anomalous, normal = per.get(name, (0, 0))
        lines.append(
            f"{name:<22}{totals['strategies'][name]:>9}{anomalous:>11}{normal:>8}"
            f"{totals['redraws'].get(name, 0):>9}{totals['fallback_normal'].get(name, 0):>10}"
        )
    return "\n".join(lines)


def strategy_label_counts(build_dir: str | Path) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = {}
    for path, names, labels in _strategies_and_labels(build_dir):
        for name, label in zip(names, labels):
            c = counts.setdefault(str(name), [0, 0])
            c[0 if label else 1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


#: Samples (image + overlay pairs) per sheet row; a strategy with more continues on the next rows.
SAMPLES_PER_ROW = 8


def write_contact_sheet(build_dir: str | Path, out_png: str | Path, per_strategy: int | None = 4, tile: int = 128) -> Path:
    """A PNG of ``per_strategy`` anomalous samples of each strategy (evenly spread over the build; None:
    all of them), as (image | mask overlay) pairs, at most :data:`SAMPLES_PER_ROW` pairs a row."""
    out_png = check_output_file(out_png, "--sheet", ".png")
    picks: dict[str, list[tuple[Path, int]]] = {}
    for path, names, labels in _strategies_and_labels(build_dir, ("image", "mask")):
        for row, (name, label) in enumerate(zip(names, labels)):
            if label:
                picks.setdefault(str(name), []).append((path, row))
    rows, row_labels = [], []
    for name in sorted(picks):
        chosen = picks[name] if per_strategy is None else _evenly(picks[name], per_strategy)
        tiles = []
        for path, row in chosen:
            with open_shard(path) as f:
                image, mask = f["image"][row], f["mask"][row]
            tiles += [image, overlay_mask(image, mask)]
        for start in range(0, len(tiles), 2 * SAMPLES_PER_ROW):
            rows.append(tiles[start:start + 2 * SAMPLES_PER_ROW])
            row_labels.append(f"{name}  ({len(picks[name])} anomalous samples; image | mask overlay)" if start == 0 else f"{name}  (continued)")
    if not rows:
        rows, row_labels = [[np.zeros((tile, tile, 3), np.uint8)]], ["no anomalous samples in this build"]
    return save_sheet(out_png, contact_sheet(rows, row_labels, tile=tile))


def _strategies_and_labels(build_dir: str | Path, also: tuple[str, ...] = ()):
    """(shard path, strategy column, label column) of every shard, each shard checked to hold the
    metadata and the fields in ``also`` in the format's dtype and shape."""
    manifest = read_manifest(build_dir)
    for entry, path in zip(manifest["shards"], existing_shard_paths(build_dir, manifest)):
        with open_shard(path) as f:
            check_shard(f, path, ("label", "strategy", *also), entry["num_samples"], manifest["config"]["image_size"])
            names, labels = read_names(f, "strategy", path), f["label"][...]
        yield path, names, labels


def _evenly(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in idx]


def build_maps_sheet(build_dir: str | Path, out_png: str | Path, rows: int = 6) -> Path:
    """The maps sheet of a finished build whose strategies used maps (read back from the cache, which
    recomputes nothing unless the cache was cleared)."""
    from ..config import BuildConfig
    from ..plan import plan_build
    from ..precompute import evenly_spaced, maps_sheet

    manifest = read_manifest(build_dir)
    plan = plan_build(BuildConfig.from_dict(manifest["config"], where=Path(build_dir) / "manifest.json"), progress=False)
    if plan.maps is None:
        raise SynthgenError(f"{build_dir}: this build's strategies use no edge or region maps")
    stack = plan.sources.load_stack()
    picks = evenly_spaced(len(stack), rows)
    return maps_sheet(stack[picks], plan.maps.subset(picks), [plan.sources.images[i].id for i in picks], out_png)
