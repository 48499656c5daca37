"""Images per second of PiDiNet, pixel-difference form vs converted form, and the accuracy of reduced precision.

    python benchmarks/bench_pidinet.py [--weights-dir DIR] [--devices cpu cuda] [--threads 2]
                                       [--min-seconds 5] [--precisions fp32 bf16 fp16] [--compile]

Rows: pidinet and pidinet-tiny (the published table5 checkpoints), in the pixel-difference form the network
was trained in and in the converted form (plain convolutions), at 256x256 and at MVTec LOCO's native
800x1600 (H 1600, W 800). Each row times whole forward passes of one batch (after a warm-up pass) until
``--min-seconds`` have passed. Inference runs as EdgeDetector runs it: torch.inference_mode, channels_last.

On CUDA the converted form is also timed under bf16 and fp16 autocast (``--precisions``), and each such row
reports the fused map's difference from fp32 on the same real images (juice_bottle when ../shared is
present, else a synthetic scene): max and mean |p - p_fp32|, and the share of uint8 pixels that change.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from synthgen.generator.imageio import read_rgb, resize_rgb
from synthgen.generator.models.edges import PRECISIONS
from synthgen.generator.models.pidinet import load_pidinet
from synthgen.generator.models.weights import REGISTRY, resolve_weights

MODELS = ("pidinet", "pidinet-tiny")
SIZES = {"256x256": (256, 256), "800x1600": (1600, 800)}  # name -> (H, W)
# Images per forward pass: enough to fill the device, within its memory (PiDiNet: ~1 KB per pixel, fp32).
BATCH = {"cpu": {"256x256": 8, "800x1600": 1}, "cuda": {"256x256": 256, "800x1600": 8}}
SHARED = Path(__file__).resolve().parents[2] / "shared"  # ../shared beside the checkout, where present
DEFAULT_IMAGES = SHARED / "data/mvtec_loco/juice_bottle/train/good"


def real_or_synthetic_images(folder: Path, count: int, size_hw: tuple[int, int]) -> np.ndarray:
    """``count`` uint8 (H, W, 3) images: the folder's first PNGs, cycled, else a seeded synthetic scene."""
    files = sorted(folder.glob("*.png"))[:count] if folder.is_dir() else []
    if files:
        images = [resize_rgb(read_rgb(f), size_hw) for f in files]
        return np.stack([images[i % len(images)] for i in range(count)])
    rng = np.random.default_rng(0)
    h, w = size_hw
    yy, xx = np.mgrid[:h, :w]
    scene = np.zeros((h, w, 3))
    scene[(yy - h / 2) ** 2 / (0.3 * h) ** 2 + (xx - w / 2) ** 2 / (0.3 * w) ** 2 < 1] = (200, 170, 60)
    scene[int(0.45 * h) : int(0.6 * h), int(0.35 * w) : int(0.65 * w)] = (240, 230, 200)
    return np.stack([np.clip(scene + rng.normal(0, 6, scene.shape), 0, 255).astype(np.uint8) for _ in range(count)])


def to_batch(images: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last)


def forward(model, x: torch.Tensor, precision: str) -> torch.Tensor:
    dtype = PRECISIONS[precision]
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        return model(x).float()


def images_per_second(model, x: torch.Tensor, precision: str, min_seconds: float) -> float:
    """Throughput of whole forward passes, after one warm-up pass (which also primes cuDNN/oneDNN)."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    forward(model, x, precision)
    sync()
    passes, start = 0, time.perf_counter()
    while True:
        forward(model, x, precision)
        sync()
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return passes * x.shape[0] / elapsed


def accuracy_vs_fp32(model, x: torch.Tensor, precision: str) -> str:
    """Fused-map differences of a reduced precision from fp32 on the same inputs."""
    if precision == "fp32":
        return "-"
    reference = forward(model, x, "fp32")[:, 4]
    reduced = forward(model, x, precision)[:, 4]
    difference = (reduced - reference).abs()
    changed = ((reduced * 255).round() != (reference * 255).round()).float().mean()
    return f"max {difference.max():.4f} mean {difference.mean():.5f} uint8 changed {100 * changed:.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", type=Path, default=None, help="folder holding the table5 checkpoints")
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--min-seconds", type=float, default=5.0, help="timed seconds per row, at least one pass")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"], choices=list(PRECISIONS),
                        help="autocast precisions of the converted form on CUDA (the CPU runs fp32)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the converted form")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of real PNGs for accuracy")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    weights_dir = args.weights_dir
    if weights_dir is None and (SHARED / "weights").is_dir():
        weights_dir = SHARED / "weights"

    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    header = f"{'device':6} {'model':13} {'form':16} {'prec':5} {'size':9} {'batch':>5} {'img/s':>9}  accuracy vs fp32"
    print(header)
    print("-" * len(header))
    for model_name in MODELS:
        path = resolve_weights(model_name, weights_dir=weights_dir)
        variant = REGISTRY[model_name].architecture
        for device_name in args.devices:
            device = torch.device(device_name)
            forms = {
                "pixel-difference": load_pidinet(path, variant, converted=False),
                "converted": load_pidinet(path, variant, converted=True),
            }
            if args.compile:
                forms["converted+compile"] = torch.compile(load_pidinet(path, variant, converted=True))
            for size_name in args.sizes:
                batch = BATCH[device.type][size_name]
                x = to_batch(real_or_synthetic_images(args.images, batch, SIZES[size_name]), device)
                for form, model in forms.items():
                    model = model.to(device, memory_format=torch.channels_last)
                    precisions = args.precisions if device.type == "cuda" and form != "pixel-difference" else ["fp32"]
                    for precision in precisions:
                        rate = images_per_second(model, x, precision, args.min_seconds)
                        accuracy = accuracy_vs_fp32(model, x, precision)
                        print(f"{device_name:6} {model_name:13} {form:16} {precision:5} {size_name:9} "
                              f"{batch:>5} {rate:>9.2f}  {accuracy}", flush=True)
                    model.to("cpu")
                del x
                if device.type == "cuda":
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
