"""``synthgen bench BUILD``: does a synthetic build help a detector? Measured on real test images.

The reference detector is trained twice per seed at the same budget (optimizer steps) on the
category's real ``train/good`` images, once *with* the build and once *without* it (the method's own
synthesis), and both models are evaluated on the category's REAL test split (never on shards) with
trainers/evaluate.py. Nothing is selected on the test split: every run trains its fixed number of
steps and its last state is the model.

Methods (``--method``):
- ``glass``: GLASS (trainers/glass). With the build: its anomalous samples are GLASS's local anomaly
  synthesis. Without: GLASS's own local synthesis, Perlin masks filled with textures (synthgen's
  ``draem`` strategy, the paper's own, textures from ``--textures`` or fractal Perlin noise), built
  once into ``DIR/own-synthesis`` with as many samples as the build and at its image size.
- ``pbas``: PBAS (trainers/pbas). Without: the paper's PBAS (feature-space synthesis only). With:
  ``--anomaly-shards BUILD`` (the discriminator also learns the build's anomalous samples).

Both arms train at the build's image size, so the build's pixels reach the detector unresampled.

Output folder::

    DIR/runs/<arm>-seed<s>/            training run (run.json, model.pt, logs/)
    DIR/runs/<arm>-seed<s>/eval/       report.json, report.md, sheet.png (the eval sheets)
    DIR/own-synthesis/                 GLASS only: the baseline's local synthesis (a synthgen build)
    DIR/bench.json, bench.md, bench.png

bench.json, bench.md and bench.png are rewritten after every seed, over the seeds done so far, so an
interrupted bench still has its table; running it again with a larger ``--seeds`` adds seeds.
Resumable: a run whose run.json says ``complete`` and whose report exists is not repeated; a run
interrupted after its first epoch continues from its checkpoint (the result equals an uninterrupted
run's); the options of a finished bench (method, budget, seeds ...) are checked against bench.json.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import click
import numpy as np

from synthgen.generator.atomic import atomic_path, write_json_atomic
from synthgen.generator.errors import SynthgenError, read_json_file
from synthgen.generator.imageio import sha256_file
from synthgen.generator.shards.reader import read_manifest

from .base import RUN_FILE
from .evaluate import REPORT_JSON, evaluate

METHODS = ("glass", "pbas")
ARMS = ("with-build", "without-build")
BENCH_JSON, BENCH_MD, BENCH_PNG = "bench.json", "bench.md", "bench.png"
OWN_SYNTHESIS = "own-synthesis"
#: (key in a row of metrics, label in the table); the LOCO rows only where the test set is LOCO's.
METRICS = (
    ("image_auroc_official", "image AUROC (official: max of map)"),
    ("image_auroc", "image AUROC (model's score)"),
    ("pixel_auroc", "pixel AUROC"),
    ("au_pro", "AU-PRO (FPR 0.3)"),
)
LOCO_METRICS = (
    ("au_spro", "AU-sPRO (FPR 0.05, mean of kinds)"),
    ("au_spro_logical", "AU-sPRO logical"),
    ("au_spro_structural", "AU-sPRO structural"),
)


def _check_build(build: Path, dataset: str, category: str) -> dict:
    """The build's manifest, checked to come from this dataset/category's train split."""
    manifest = read_manifest(build)
    made_from = (manifest["dataset"]["name"], manifest["dataset"]["category"])
    if made_from != (dataset, category):
        raise SynthgenError(f"{build}: the build was made from {made_from[0]}/{made_from[1]}, not {dataset}/{category}")
    if manifest["dataset"]["split"] != "train":
        raise SynthgenError(f"{build}: the build was made from the {manifest['dataset']['split']!r} split; bench evaluates "
                            "on the real test split, so only a build from 'train' can be compared fairly")
    if not manifest["totals"]["labels"].get("1"):
        raise SynthgenError(f"{build}: the build has no anomalous samples")
    return manifest


def _row(report: dict[str, Any]) -> dict[str, float | None]:
    """The bench's numbers from one evaluation report."""
    m = report["metrics"]
    row = {"image_auroc_official": m["image_auroc_max_of_map"], "image_auroc": m["image_auroc"],
           "pixel_auroc": m["pixel_auroc"], "au_pro": m["au_pro"]}
    loco = report.get("loco")
    if loco:
        if loco["mean"]["image_auroc"] is not None:  # the official LOCO figure: mean of the two kinds (when both are there)
            row["image_auroc_official"] = loco["mean"]["image_auroc"]
        row["au_spro"] = loco["mean"]["au_spro"]["0.05"]
        row["au_spro_logical"] = loco["logical_anomalies"]["au_spro"]["0.05"]
        row["au_spro_structural"] = loco["structural_anomalies"]["au_spro"]["0.05"]
    return row


def _summary(values: list[float | None]) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "sd": None, "n": 0}
    sd = statistics.stdev(present) if len(present) > 1 else 0.0
    return {"mean": statistics.fmean(present), "sd": sd, "n": len(present)}


def _fmt(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return "n/a"
    return f"{entry['mean']:.3f} ± {entry['sd']:.3f}"


def _own_synthesis(out: Path, manifest: dict, root: str | None, textures: str | None, progress: bool) -> Path:
    """GLASS's own local synthesis for this category: a draem build like the bench's build in size."""
    from synthgen.generator.config import BuildConfig
    from synthgen.generator.pipeline import build

    config = manifest["config"]
    texture_source, texture_root = ("dtd", textures) if textures else ("perlin", None)
    own = BuildConfig(dataset=config["dataset"], category=config["category"], root=root, strategies=("draem",),
                      num_samples=manifest["totals"]["samples"], image_size=tuple(config["image_size"]), seed=0,
                      texture_source=texture_source, texture_root=texture_root)
    folder = out / OWN_SYNTHESIS
    if (folder / "manifest.json").is_file():  # finished before (perhaps by an older synthgen): the runs record its hash
        read_manifest(folder)
        return folder
    build(own, folder, progress=progress)  # resumable, and refuses a folder holding a different build
    return folder


def _preset_options(method: str, preset: str) -> dict[str, Any]:
    """The preset's option values that ``method``'s options take (PBAS has no discriminator width or ascent)."""
    import dataclasses

    from .glass.options import GLASSOptions
    from .pbas.options import PBASOptions
    from .presets import PRESETS

    fields = {f.name for f in dataclasses.fields(GLASSOptions if method == "glass" else PBASOptions)}
    return {k: v for k, v in PRESETS[preset].items() if k in fields}


def _same_definition(a: dict, b: dict) -> bool:
    """Two builds made by the same config from the same source and texture files (the code version aside)."""
    from synthgen.generator.config import BuildConfig

    def files(m: dict, key: str) -> list:
        return [f.get("sha256") for f in (m.get(key) or {}).get("files", []) or (m.get(key) or {}).get("sources", [])]

    return (BuildConfig.from_dict(a["config"]).identity() == BuildConfig.from_dict(b["config"]).identity()
            and files(a, "textures") == files(b, "textures") and files(a, "dataset") == files(b, "dataset"))


def _train(method: str, arm: str, run: Path, *, build: Path, own: Path | None, dataset: str, root: str | None,
           category: str, image_size: tuple[int, int], steps: int, preset: str, seed: int, device: str,
           weights_dir: str | None, progress: bool) -> None:
    options = _preset_options(method, preset)
    common = dict(image_size=image_size, steps=steps, seed=seed, device=device, weights_dir=weights_dir, progress=progress)
    resume = (run / "checkpoints" / "last.ckpt").is_file()
    if run.exists() and not resume:  # started but not one epoch done: nothing to keep
        shutil.rmtree(run)
    if method == "glass":
        from .glass.options import GLASSOptions
        from .glass.train import train

        train(GLASSOptions(out=run, shards=build if arm == "with-build" else own, resume=resume, preset=preset,
                           **options, **common))
    else:
        from .pbas.options import PBASOptions
        from .pbas.train import train

        shards = {"anomaly_shards": build} if arm == "with-build" else {}
        train(PBASOptions(out=run, dataset=dataset, root=root, category=category, resume=resume, preset=preset,
                          **shards, **options, **common))


def bench(
    build: str | Path,
    *,
    dataset: str,
    root: str | Path | None,
    category: str,
    out: str | Path,
    method: str = "glass",
    seeds: int = 3,
    steps: int = 1000,
    preset: str = "paper",
    textures: str | Path | None = None,
    extra_normals: tuple[str, ...] = (),
    device: str = "auto",
    weights_dir: str | Path | None = None,
    eval_side: int | None = 512,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``method`` with and without ``build`` for ``seeds`` seeds at ``steps`` optimizer steps,
    evaluate each on the real test split, write bench.json / bench.md / bench.png into ``out``."""
    from .lightning_utils import resolve_device
    from .presets import PRESETS

    if method not in METHODS:
        raise SynthgenError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    if seeds < 1:
        raise SynthgenError(f"--seeds: must be at least 1, got {seeds}")
    if steps < 1:
        raise SynthgenError(f"--steps: must be at least 1, got {steps}")
    if preset not in PRESETS:
        raise SynthgenError(f"--preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    build, out = Path(build), Path(out)
    manifest = _check_build(build, dataset, category)
    root = str(root) if root is not None else manifest["dataset"].get("root")
    image_size = tuple(manifest["config"]["image_size"])
    device = resolve_device(device)
    settings = {"method": method, "steps": steps, "preset": preset, "preset_options": _preset_options(method, preset),
                "image_size": list(image_size), "extra_normals": list(extra_normals), "eval_side": eval_side,
                "own_synthesis": None if method == "pbas" else {"strategy": "draem", "textures": str(textures) if textures else "perlin"}}
    previous = out / BENCH_JSON
    if previous.is_file():  # resuming: the same comparison, or a one-line error
        old = read_json_file(previous, "bench record")
        for key, value in settings.items():
            if old.get("settings", {}).get(key) != value:
                raise SynthgenError(f"{out}: holds a bench with {key} = {old.get('settings', {}).get(key)!r}, not {value!r}; "
                                    "choose another --out")
        if old.get("build", {}).get("manifest_sha256") != sha256_file(build / "manifest.json"):
            raise SynthgenError(f"{out}: holds a bench of another build; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    own = _own_synthesis(out, manifest, root, str(textures) if textures else None, progress) if method == "glass" else None
    same = own is not None and _same_definition(read_manifest(own), manifest)
    if same:  # e.g. a draem build with the same textures, count and seed: both arms train on the same samples
        warnings.warn(f"{build}: the build is defined like GLASS's own synthesis (same config, sources and "
                      "textures); both arms will train on the same samples")

    runs = []
    for seed in range(seeds):
        for arm in ARMS:
            run = out / "runs" / f"{arm}-seed{seed}"
            report_path = run / "eval" / REPORT_JSON
            info = read_json_file(run / RUN_FILE, "run record") if (run / RUN_FILE).is_file() else {}
            started = time.perf_counter()
            trained = False
            if info.get("status") != "complete":
                _train(method, arm, run, build=build, own=own, dataset=dataset, root=root, category=category,
                       image_size=image_size, steps=steps, preset=preset, seed=seed, device=device,
                       weights_dir=str(weights_dir) if weights_dir else None, progress=progress)
                trained = True
            if trained or not report_path.is_file():
                report = evaluate(run, dataset=dataset, root=root, category=category, extra_normals=extra_normals,
                                  out=run / "eval", eval_side=eval_side, device=device)
            else:
                report = read_json_file(report_path, "evaluation report")
            info = read_json_file(run / RUN_FILE, "run record")
            runs.append({"arm": arm, "seed": seed, "run": str(run.relative_to(out)), "sheet": str((run / "eval" / "sheet.png").relative_to(out)),
                         "train_seconds": info.get("train_seconds_this_session"), "optimizer_steps": info.get("optimizer_steps"),
                         "seconds_this_session": round(time.perf_counter() - started, 1) if trained else None,
                         "metrics": _row(report)})
            if progress:
                print(f"bench: {arm} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in runs[-1]["metrics"].items() if v is not None), flush=True)

        record = _record(build, manifest, settings, seeds, seed + 1, report["test_set"], device, runs)
        record["own_synthesis_is_the_build"] = same
        _write_outputs(out, record)  # after every seed: an interrupted bench keeps a table of the seeds done
    return record


def _record(build: Path, manifest: dict, settings: dict, planned: int, done: int, test_set: dict, device: str,
            runs: list[dict]) -> dict[str, Any]:
    """bench.json: what was compared, how, on what, and mean / sd per arm and metric over the seeds done."""
    keys = [k for k, _ in METRICS] + ([k for k, _ in LOCO_METRICS] if "au_spro" in runs[0]["metrics"] else [])
    summary = {arm: {k: _summary([r["metrics"].get(k) for r in runs if r["arm"] == arm]) for k in keys} for arm in ARMS}
    return {
        "build": {"path": str(build.resolve()), "manifest_sha256": sha256_file(build / "manifest.json"),
                  "config_hash": manifest["config_hash"], "strategies": manifest["strategies"],
                  "recipe": manifest["config"].get("recipe"), "samples": manifest["totals"]["samples"]},
        "settings": settings,
        "seeds": list(range(done)),
        "seeds_planned": planned,
        "test_split": {k: test_set[k] for k in ("dataset", "category", "counts", "normals_from", "root")},
        "device": device,
        "selection": "none: every run trains its fixed steps and its last state is evaluated once on the real test split",
        "runs": runs,
        "summary": summary,
        "metrics": keys,
    }


def _write_outputs(out: Path, record: dict[str, Any]) -> None:
    write_json_atomic(out / BENCH_JSON, record)
    with atomic_path(out / BENCH_MD) as tmp:
        tmp.write_text(render_table(record))
    write_plot(out / BENCH_PNG, record)


def metric_labels(record: dict[str, Any]) -> list[tuple[str, str]]:
    labels = dict(METRICS + LOCO_METRICS)
    return [(k, labels[k]) for k in record["metrics"]]


def budget_line(record: dict[str, Any]) -> str:
    s = record["settings"]
    preset = f"preset {s['preset']}" + (f" ({', '.join(f'{k} {v}' for k, v in s['preset_options'].items())})" if s["preset_options"] else " (the paper's networks)")
    return f"{s['steps']} optimizer steps per run, {preset}, images {s['image_size'][0]}x{s['image_size'][1]}, on {record['device']}"


def render_table(record: dict[str, Any]) -> str:
    """bench.md: the table (mean ± sd over seeds) and what it was measured on."""
    s, t = record["settings"], record["test_split"]
    own = ("its own synthesis: PBAS's feature-space anomalies only" if s["method"] == "pbas"
           else f"its own synthesis: Perlin masks with {s['own_synthesis']['textures']} textures (draem), as many samples as the build")
    counts = ", ".join(f"{k} {v}" for k, v in t["counts"].items())
    lines = [
        f"Detector **{s['method']}** trained on the real `train/good` images of {t['dataset']} / {t['category']} with the build "
        f"and without it ({own}); {budget_line(record)}; seeds {', '.join(map(str, record['seeds']))}. "
        f"Evaluated on the real test split ({counts}; normals from {', '.join(t['normals_from'])}); nothing selected on it.",
        "",
        "| metric | with the build | without (own synthesis) | difference |",
        "|---|---|---|---|",
    ]
    for key, label in metric_labels(record):
        a, b = record["summary"]["with-build"][key], record["summary"]["without-build"][key]
        diff = "n/a" if a["mean"] is None or b["mean"] is None else f"{a['mean'] - b['mean']:+.3f}"
        lines.append(f"| {label} | {_fmt(a)} | {_fmt(b)} | {diff} |")
    if record.get("own_synthesis_is_the_build"):
        lines += ["", "The build is defined like the method's own synthesis (same config, sources and textures): the arms do not differ."]
    lines += ["", f"mean ± sd over {len(record['seeds'])} seed(s); eval sheets: `runs/<arm>-seed<s>/eval/sheet.png`."]
    return "\n".join(lines) + "\n"


def write_plot(path: Path, record: dict[str, Any]) -> Path:
    """bench.png: one pair of bars per metric (with / without the build), error bars = sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = metric_labels(record)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 3.6), dpi=100)
    for offset, arm, colour in ((-0.2, "with-build", "tab:blue"), (0.2, "without-build", "tab:grey")):
        entries = [record["summary"][arm][k] for k, _ in labels]
        means = [e["mean"] if e["mean"] is not None else 0.0 for e in entries]
        sds = [e["sd"] if e["sd"] is not None else 0.0 for e in entries]
        ax.bar(x + offset, means, 0.4, yerr=sds, capsize=3, color=colour,
               label="with the build" if arm == "with-build" else "without (own synthesis)")
    ax.set_xticks(x, [label.replace(" (", "\n(") for _, label in labels], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(f"{record['settings']['method']} on {record['test_split']['dataset']}/{record['test_split']['category']}: "
                 f"{', '.join(record['build']['strategies'])} build, {len(record['seeds'])} seed(s)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------ the command
# `synthgen bench`: synthgen/cli.py (the package top, above generator/ and trainers/) adds it to the synthgen
# command, which lives in generator/ and must not import trainers/ (tests/test_imports.py).


@click.command("bench")
@click.argument("build", type=click.Path(path_type=Path))
@click.option("--dataset", required=True, help="Dataset of the real test split (the build's dataset), e.g. mvtec_loco.")
@click.option("--root", type=click.Path(path_type=Path), help="Dataset root. Default: where the build read it.")
@click.option("--category", required=True, help="Category (the build's), e.g. juice_bottle.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bench folder (resumable: run again to continue).")
@click.option("--method", type=click.Choice(METHODS), default="glass", show_default=True, help="Reference detector.")
@click.option("--seeds", default=3, show_default=True, help="Training seeds per arm (0..N-1).")
@click.option("--steps", default=1000, show_default=True, help="Optimizer steps per run, the same for both arms.")
@click.option("--preset", type=click.Choice(["paper", "cpu"]), default="paper", show_default=True,
              help="paper: the paper's networks (GLASS about 38 s per step on a 2-core CPU); cpu: EfficientNet-Lite0, "
                   "width 256, 5 ascent steps (a smaller model: it compares builds, not papers; trainers/presets.py).")
@click.option("--textures", type=click.Path(path_type=Path),
              help="GLASS's own synthesis: DTD-style texture folder (the paper's). Default: fractal Perlin noise.")
@click.option("--extra-normals", default="", help="Also count this split's normal images as normal test images (validation).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--weights-dir", type=click.Path(path_type=Path), help="Folder holding backbone weights.")
@click.option("--quiet", is_flag=True)
def command(build, dataset, root, category, out, method, seeds, steps, preset, textures, extra_normals, device, weights_dir, quiet):
    """Train a detector with BUILD and without it on the real train/good images, evaluate both on the REAL test
    split: bench.json, bench.md (mean ± sd over seeds), bench.png and each run's eval sheet."""
    record = bench(build, dataset=dataset, root=root, category=category, out=out, method=method, seeds=seeds, steps=steps,
                   preset=preset, textures=textures, extra_normals=tuple(n.strip() for n in extra_normals.split(",") if n.strip()),
                   device=device, weights_dir=weights_dir, progress=not quiet)
    click.echo((Path(out) / BENCH_MD).read_text(), nl=False)
    click.echo(f"bench: {out} ({BENCH_JSON}, {BENCH_MD}, {BENCH_PNG}; {len(record['runs'])} runs)")
