"""Do LogicAL shards help a detector? The reconstruction trainer on draem vs logical shards, side by side.

Issue 12's usefulness measurement, at the budget of the issue-5 table: for each kind of training
shards (draem with DTD textures; logical with the default inpaint renderer), one build of
``--num-samples`` samples at ``--build-size``, then the reconstruction trainer (split training, base
width 8, batch 8, lr 1e-4, 6 epochs = 324 steps of 480 samples with 10 % held out, input 128x128,
last epoch kept) once per training seed, evaluated on a MVTec LOCO category's logical anomalies
against its test and validation normals (``synthgen-eval --kinds logical --extra-normals
validation``). The shards are built once; seeds vary the network's initialisation and data order,
so the spread says how much of a difference is noise.

Every step is a synthgen command (printed before it runs) and is skipped when its output exists, so
an interrupted run continues. Prints one markdown table: per kind, mean and standard deviation over
the seeds of the official image AUROC (max of the map), the model's own image score AUROC, pixel
AUROC, AU-PRO (FPR 0.3) and AU-sPRO at FPR 0.05 and 0.3.

    python benchmarks/logical_usefulness.py --root ../shared/data/mvtec_loco --category juice_bottle \
        --dtd ../shared/data/dtd --weights-dir ../shared/weights --work /tmp/usefulness --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
KINDS = ("draem", "logical")
#: (report.json path, column title)
COLUMNS = (
    (("loco", "logical_anomalies", "image_auroc"), "image AUROC (official)"),
    (("loco", "logical_anomalies", "image_auroc_model_score"), "image AUROC (model score)"),
    (("loco", "logical_anomalies", "pixel_auroc"), "pixel AUROC"),
    (("metrics", "au_pro"), "AU-PRO 0.3"),
    (("loco", "logical_anomalies", "au_spro", "0.05"), "AU-sPRO 0.05"),
    (("loco", "logical_anomalies", "au_spro", "0.3"), "AU-sPRO 0.3"),
)


def run(command: list[str], done: Path) -> None:
    """Run a synthgen command unless ``done`` exists (resumable)."""
    if done.exists():
        return
    print("+", shlex.join(command), flush=True)
    subprocess.run(command, check=True)


def lookup(report: dict, path: tuple[str, ...]) -> float:
    value = report
    for key in path:
        value = value[key]
    return float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="MVTec LOCO root (holding CATEGORY/).")
    parser.add_argument("--category", default="juice_bottle")
    parser.add_argument("--dtd", type=Path, required=True, help="DTD folder for the draem shards.")
    parser.add_argument("--weights-dir", type=Path, required=True, help="Folder with PiDiNet's weights.")
    parser.add_argument("--work", type=Path, required=True, help="Folder for builds, runs and reports.")
    parser.add_argument("--seeds", default="0,1,2", help="Training seeds, comma-separated.")
    parser.add_argument("--num-samples", type=int, default=480)
    parser.add_argument("--build-size", default="256")
    parser.add_argument("--set", action="append", default=[], help="Extra --set for the logical build, repeatable.")
    args = parser.parse_args()

    seeds = [int(s) for s in args.seeds.split(",")]
    dataset = ["--dataset", "mvtec_loco", "--root", str(args.root), "--category", args.category]
    extra = {"draem": ["--textures", str(args.dtd)],
             "logical": ["--weights-dir", str(args.weights_dir), *[a for s in args.set for a in ("--set", s)]]}
    results: dict[str, list[dict]] = {}
    for kind in KINDS:
        shards = args.work / f"shards-{kind}"
        run([str(BIN / "synthgen"), "build", *dataset, "--strategy", kind, "--num-samples", str(args.num_samples),
             "--image-size", args.build_size, "--quiet", "--out", str(shards), *extra[kind]], shards / "manifest.json")
        results[kind] = []
        for seed in seeds:
            model = args.work / f"run-{kind}-seed{seed}"
            run([str(BIN / "synthgen-train"), "reconstruction", "--shards", str(shards), "--out", str(model),
                 "--seed", str(seed), "--epochs", "6", "--batch-size", "8", "--base-width", "8", "--image-size", "128",
                 "--lr", "1e-4", "--select", "last", "--workers", "0", "--quiet"], model / "model.pt")
            report = model / "eval"
            run([str(BIN / "synthgen-eval"), str(model), *dataset, "--kinds", "logical", "--extra-normals", "validation",
                 "--out", str(report)], report / "report.json")
            results[kind].append(json.loads((report / "report.json").read_text()))

    print(f"\n{args.category}, {len(seeds)} training seed(s) {args.seeds}: mean +- sd\n")
    print("| training shards | " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for kind, reports in results.items():
        cells = []
        for path, _ in COLUMNS:
            values = [lookup(r, path) for r in reports]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} +- {sd:.3f}")
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
