"""anomalib's models with their own synthesis vs synthgen's draem and logical shards, same step budget.

For each model (``--models``), each arm (``own``: the unmodified model with its built-in synthesis on the
dataset's train/good images; ``draem`` and ``logical``: ``synthgen-train anomalib --shards BUILD``) and
each training seed: train at ``--image-size`` for about ``--steps`` optimiser steps (an arm's epochs =
round(steps / its steps per epoch), so every arm gets the same number of steps of ``--batch-size``), then
``synthgen-eval`` on the real test set. Every step is a synthgen command (printed before it runs) and is
skipped when its output exists, so an interrupted run continues where it stopped.

Writes ``WORK/results.json`` (one row per run: metrics, seconds per epoch and per step), ``WORK/table.md``
(mean +- sd over the seeds) and ``WORK/anomalib.png`` (the same as bars with the sd as error bars).

    python benchmarks/bench_anomalib.py --dataset demo --category parts_box --draem BUILD_A --logical BUILD_B \
        --textures ../shared/data/dtd --work /tmp/bench-anomalib --seeds 0,1,2 --steps 60 --image-size 128
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
ARMS = ("own", "draem", "logical")
#: (report.json path, column title); LOCO-style test sets (the demo, MVTec LOCO) have the per-kind report
COLUMNS = (
    (("loco", "{kind}", "image_auroc"), "image AUROC (official, max of map)"),
    (("loco", "{kind}", "image_auroc_model_score"), "image AUROC (model score)"),
    (("loco", "{kind}", "pixel_auroc"), "pixel AUROC"),
    (("metrics", "au_pro"), "AU-PRO 0.3"),
    (("loco", "{kind}", "au_spro", "0.05"), "AU-sPRO 0.05"),
)


def run(argv: list[str]) -> None:
    print("$ " + shlex.join(argv), flush=True)
    subprocess.run(argv, check=True)


def steps_per_epoch(arm: str, args, build: Path | None) -> int:
    """Optimiser steps of one epoch of ``arm`` (the DataLoader drops the last partial batch)."""
    from synthgen.generator.datasets import load_dataset
    from synthgen.trainers.anomalib.data import ShardTrainingSet

    if arm == "own":
        items = len(load_dataset(args.dataset, args.root, args.category).split("train", normal_only=True))
    else:
        items = len(ShardTrainingSet(build, (args.image_size, args.image_size), 0.5, 0))
    return max(1, items // args.batch_size)


def reading_times(args, builds: dict) -> None:
    """Seconds to read one training epoch of each arm (decode, resize, collate; no model): the data's share
    of a step, to compare with the step times of the table."""
    import time

    from synthgen.trainers.anomalib.data import NormalTrainingSet, ShardTrainingSet, training_loader

    size = (args.image_size, args.image_size)
    sets = {"own": NormalTrainingSet(args.dataset, args.root, args.category, size),
            **{arm: ShardTrainingSet(build, size, 0.5, 0) for arm, build in builds.items()}}
    for arm, dataset in sets.items():
        loader = training_loader(dataset, args.batch_size, 0)
        for _ in range(2):  # the second pass is reported (files in the page cache)
            started = time.perf_counter()
            items = sum(len(batch.image) for batch in loader)
            seconds = time.perf_counter() - started
        print(f"{arm}: {items} items per epoch, {seconds:.3f} s to read it, {1000 * seconds / len(loader):.1f} ms per batch of {args.batch_size}")


def pick(report: dict, path: tuple[str, ...], kind: str):
    value = report
    for key in path:
        value = value.get(key.format(kind=kind)) if isinstance(value, dict) else None
    return value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="demo")
    p.add_argument("--root")
    p.add_argument("--category", default="parts_box")
    p.add_argument("--draem", type=Path, help="a draem build of the category (needed by the draem arm)")
    p.add_argument("--logical", type=Path, help="a logical build of the category (needed by the logical arm)")
    p.add_argument("--arms", default=",".join(ARMS), help="which arms to run now (runs of other arms already in WORK stay in the table)")
    p.add_argument("--textures", type=Path, help="DTD folder for the own arm (DRAEM, GLASS)")
    p.add_argument("--weights-dir", type=Path)
    p.add_argument("--models", default="supersimplenet,draem,glass")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--kind", default="mean", help="LOCO report column: logical_anomalies, structural_anomalies or mean")
    p.add_argument("--eval-args", default="", help="extra synthgen-eval options, e.g. '--kinds logical --extra-normals validation'")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--reading", action="store_true", help="only time reading one training epoch of each arm (no model)")
    p.add_argument("--report-only", action="store_true", help="write table.md and the plot from WORK/results.json (runs finished so far)")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.reading:
        reading_times(args, builds={"draem": args.draem, "logical": args.logical})
        return
    if args.report_only:
        rows = json.loads((args.work / "results.json").read_text())
        print(write_table(rows, args))
        plot(rows, args.work / "anomalib.png", args)
        return
    builds = {"draem": args.draem, "logical": args.logical}
    arms = [arm for arm in ARMS if arm in args.arms.split(",")]
    for arm in arms:
        if arm != "own" and builds[arm] is None:
            p.error(f"the {arm} arm needs --{arm} BUILD")
        if arm == "own" and args.textures is None:
            p.error("the own arm needs --textures DIR (DRAEM's and GLASS's own synthesis)")
    # runs finished by earlier invocations (other arms, models or seeds) stay; this one's replace them
    results = args.work / "results.json"
    rows = json.loads(results.read_text()) if results.exists() else []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for model in args.models.split(","):
            for arm in arms:
                folder = args.work / f"{model}-{arm}-s{seed}"
                per_epoch = steps_per_epoch(arm, args, builds.get(arm))
                epochs = max(1, round(args.steps / per_epoch))
                if not (folder / "model.pt").exists():
                    train = [str(BIN / "synthgen-train"), "anomalib", "--model", model, "--out", str(folder), "--epochs", str(epochs),
                             "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--seed", str(seed),
                             "--device", "cpu", "--quiet"]
                    if arm == "own":
                        train += ["--anomalies", "own", "--dataset", args.dataset, "--category", args.category, "--textures", str(args.textures)]
                        train += ["--root", args.root] if args.root else []
                    else:
                        train += ["--shards", str(builds[arm])]
                    train += ["--weights-dir", str(args.weights_dir)] if args.weights_dir else []
                    if (folder / "run.json").exists():
                        train.append("--resume")
                    run(train)
                report_dir = folder / "eval"
                if not (report_dir / "report.json").exists():
                    evaluate = [str(BIN / "synthgen-eval"), str(folder), "--dataset", args.dataset, "--category", args.category,
                                "--out", str(report_dir), "--sheet-count", "4", *shlex.split(args.eval_args)]
                    evaluate += ["--root", args.root] if args.root else []
                    run(evaluate)
                info = json.loads((folder / "run.json").read_text())
                report = json.loads((report_dir / "report.json").read_text())
                seconds = info.get("train_seconds_this_session")
                # re-read: another invocation (other models or arms, same WORK) may have added runs meanwhile
                rows = json.loads(results.read_text()) if results.exists() else []
                rows = [r for r in rows if (r["model"], r["arm"], r["seed"]) != (model, arm, seed)]
                rows.append({"model": model, "arm": arm, "seed": seed, "epochs": epochs, "steps": epochs * per_epoch,
                             "seconds_per_epoch": seconds / epochs if seconds else None,
                             "seconds_per_step": seconds / (epochs * per_epoch) if seconds else None,
                             **{title: pick(report, path, args.kind) for path, title in COLUMNS}})
                results.write_text(json.dumps(rows, indent=1))
    table = write_table(rows, args)
    print(table)
    plot(rows, args.work / "anomalib.png", args)


def _mean_sd(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {sd:.3f}"


def write_table(rows: list[dict], args) -> str:
    titles = [title for _, title in COLUMNS]
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"{args.dataset}/{args.category} ({args.kind}), image {args.image_size}, batch {args.batch_size}, ~{args.steps} steps, "
             f"seeds run: {','.join(map(str, seeds))}", "", "| model | anomalies | n | " + " | ".join(titles) + " | s/epoch | s/step |",
             "|---|---|---|" + "---|" * (len(titles) + 2)]
    for model in dict.fromkeys(r["model"] for r in rows):
        for arm in ARMS:
            chosen = [r for r in rows if r["model"] == model and r["arm"] == arm]
            if chosen:
                cells = [_mean_sd([r[t] for r in chosen]) for t in titles]
                times = [_mean_sd([r["seconds_per_epoch"] for r in chosen]), _mean_sd([r["seconds_per_step"] for r in chosen])]
                lines.append(f"| {model} | {arm} | {len(chosen)} | " + " | ".join(cells + times) + " |")
    table = "\n".join(lines) + "\n"
    (args.work / "table.md").write_text(table)
    return table


def plot(rows: list[dict], path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = ["image AUROC (official, max of map)", "pixel AUROC", "AU-sPRO 0.05"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(titles), figsize=(4.5 * len(titles), 3.6), squeeze=False)
    width = 0.8 / len(ARMS)
    for ax, title in zip(axes[0], titles):
        for a, arm in enumerate(ARMS):
            means, sds = [], []
            for model in models:
                values = [r[title] for r in rows if r["model"] == model and r["arm"] == arm and r[title] is not None]
                means.append(statistics.mean(values) if values else math.nan)
                sds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            ax.bar([m + (a - 1) * width for m in range(len(models))], means, width, yerr=sds, capsize=3, label=arm)
        ax.set_xticks(range(len(models)), models)
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=9)
    axes[0][0].legend(title="anomalies", fontsize=8)
    fig.suptitle(f"anomalib models on {args.dataset}/{args.category}: own synthesis vs synthgen shards "
                 f"({args.image_size} px, ~{args.steps} steps, seeds run: {','.join(map(str, sorted({r['seed'] for r in rows})))})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
