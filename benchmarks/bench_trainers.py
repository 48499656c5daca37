"""Inference throughput of trained models: images/s of ``model.predict`` at the model's input size.

Each run folder (any method synthgen-eval can load) predicts batches of random images of its own
input size (256x256 for the runs of issue 6); the result is the median of ``--repeats`` timed
passes after one warm-up pass, as images per second. The whole predict call is timed: feature
extraction, scoring, upsampling and Gaussian smoothing of the maps (what PBAS's 75 FPS on an RTX
3090 covers too). The thread count is fixed by ``--threads`` so numbers are comparable.

    python benchmarks/bench_trainers.py RUN [RUN ...] --device cpu --threads 2 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import synthgen.trainers.methods  # noqa: F401  (registers every method's model loader)
from synthgen.trainers.base import load_model, read_run_info


def images_per_second(model, batch_size: int, repeats: int, device: torch.device) -> float:
    """Median throughput of ``repeats`` timed batches (after one warm-up batch)."""
    images = torch.rand(batch_size, 3, *model.image_size, generator=torch.Generator().manual_seed(0)).to(device)

    def one_pass() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        model.predict(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    one_pass()
    return batch_size / statistics.median(one_pass() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="Run folders to measure.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    for run in args.runs:
        model = load_model(run, device)
        speed = images_per_second(model, args.batch_size, args.repeats, device)
        results.append({"run": str(run), "method": read_run_info(run)["method"], "image_size": list(model.image_size),
                        "images_per_second": round(speed, 2)})
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"device": args.device, "threads": args.threads, "batch_size": args.batch_size, "results": results}, indent=2))


if __name__ == "__main__":
    main()
