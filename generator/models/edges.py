"""Edge maps for the pipeline: PiDiNet's four side outputs and its fused map, as uint8.

LogicAL (sec. 4.2) extracts "four scales" of edge maps with a pre-trained PiDiNet and trains on the first
(finest); the fused map is PiDiNet's own best single map. All five are kept so that a strategy can choose.
Maps are stored as uint8 (round(255 * p), 255 = certain edge): a quarter of float32's size, and well
inside PiDiNet's precision.

The detector is identified for the per-image map cache (generator.cache.MapCache) by :meth:`cache_params`:
the weights file's sha256 and every option that changes the output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import SynthgenError
from .pidinet import VARIANTS, load_pidinet
from .weights import REGISTRY, file_sha256, resolve_weights, verify_file

MAP_NAMES = ("side1", "side2", "side3", "side4", "fused")  # channel order of the output, fine to coarse
# Bump when a code change alters the maps, so cached maps of the old code are not reused.
EDGE_MAP_VERSION = 1
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# Images per forward pass are bounded by pixels: PiDiNet (C=60) peaks near 1 KB of activations per input
# pixel in fp32 (measured on the CPU). A CPU gains little from batches beyond a few images, and its
# memory is shared with the rest of the build: 2**20 pixels (~1 GB, 16 images at 256x256). A GPU fills up
# with large batches: 2**24 (~16 GB, 256 images at 256x256).
DEFAULT_BATCH_PIXELS = {"cpu": 2**20, "cuda": 2**24}


def _pidinet_specs() -> dict[str, str]:
    """Registry names of PiDiNet weights -> their variant."""
    return {name: spec.architecture for name, spec in REGISTRY.items() if spec.architecture in VARIANTS}


class EdgeDetector:
    """PiDiNet edge maps for batches of images.

    weights: a registry name ("pidinet", "pidinet-tiny"), resolved and verified by
        :func:`generator.models.weights.resolve_weights`; or a path to a PiDiNet checkpoint. A path whose
        file name is a registered one (table5_pidinet.pth) is verified against that entry; any other path
        is taken as the user's own checkpoint, its architecture read off its shapes.
    device: where the network runs ("cpu", "cuda", "cuda:1", or a torch.device).
    converted: fold the pixel-difference convolutions into plain ones (same maps, faster).
    weights_dir: a folder to search for registered weights (else $SYNTHGEN_WEIGHTS).
    precision: "fp32", or "bf16"/"fp16" autocast (faster on GPUs; see benchmarks/bench_pidinet.py for the
        accuracy cost).
    max_batch_pixels: the most input pixels per forward pass (memory bound); None picks by device.
    """

    def __init__(
        self,
        weights: str | Path = "pidinet",
        device: str | torch.device = "cpu",
        converted: bool = True,
        *,
        weights_dir: str | Path | None = None,
        precision: str = "fp32",
        max_batch_pixels: int | None = None,
    ):
        if precision not in PRECISIONS:
            raise SynthgenError(f"precision {precision!r}: unknown; choose one of {', '.join(PRECISIONS)}")
        self.path, variant = self._resolve(weights, weights_dir)
        self.weights_sha256 = file_sha256(self.path)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SynthgenError(f"device {device}: CUDA is not available on this machine")
        self.converted = converted
        self.precision = precision
        self.max_batch_pixels = max_batch_pixels or DEFAULT_BATCH_PIXELS.get(self.device.type, DEFAULT_BATCH_PIXELS["cpu"])
        model = load_pidinet(self.path, variant, converted=converted)
        self.variant = model.variant
        # channels_last: the layout cuDNN and oneDNN run depthwise and 1x1 convolutions fastest in.
        self.model = model.to(self.device, memory_format=torch.channels_last)

    @staticmethod
    def _resolve(weights: str | Path, weights_dir: str | Path | None) -> tuple[Path, str | None]:
        """(verified file, variant name or None to infer) for a registry name or a path."""
        specs = _pidinet_specs()
        if isinstance(weights, str) and weights in specs:
            return resolve_weights(weights, weights_dir=weights_dir), specs[weights]
        path = Path(weights).expanduser()
        if not path.is_file():
            raise SynthgenError(
                f"{weights}: neither a PiDiNet weights name ({', '.join(specs)}) nor an existing checkpoint file"
            )
        for name, variant in specs.items():
            if REGISTRY[name].file_name == path.name:
                verify_file(path, REGISTRY[name])
                return path, variant
        return path, None

    def cache_params(self) -> dict:
        """What identifies these maps for MapCache keys (together with the image's own hash)."""
        return {
            "model": "pidinet",
            "weights_sha256": self.weights_sha256,
            "converted": self.converted,
            "precision": self.precision,
            "maps": list(MAP_NAMES),
            "encoding": "uint8 round(255*p)",
            "version": EDGE_MAP_VERSION,
        }

    def images_per_pass(self, height: int, width: int) -> int:
        """How many images of this size one forward pass takes (the device's memory bound)."""
        return max(1, self.max_batch_pixels // (height * width))

    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Edge maps (B, 5, H, W) uint8 of images given as uint8 (B, H, W, 3) RGB, or as a float tensor
        (B, 3, H, W) RGB in [0, 1] on any device."""
        _check_input(images)
        if isinstance(images, np.ndarray):
            batch, height, width = images.shape[:3]
        else:
            batch, _, height, width = images.shape
        per_pass = self.images_per_pass(height, width)
        out = np.empty((batch, len(MAP_NAMES), height, width), dtype=np.uint8)
        autocast_dtype = PRECISIONS[self.precision]
        with torch.inference_mode(), torch.autocast(
            self.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
        ):
            for start in range(0, batch, per_pass):
                rgb = self._to_device(images[start : start + per_pass])
                count = rgb.shape[0]
                # Every pass runs exactly per_pass images (a short last pass is padded with zeros): convolution
                # kernels are chosen by batch size, and a map computed in a pass of 8 differs from the same
                # image's map in a pass of 16 by a level in a few pixels. Equal passes make an image's map
                # independent of which images share its pass (what the cache held, workers, order).
                if count < per_pass:
                    rgb = torch.cat([rgb, rgb.new_zeros((per_pass - count, *rgb.shape[1:]))])
                    rgb = rgb.contiguous(memory_format=torch.channels_last)  # the layout of a full pass
                maps = self.model(rgb)[:count]
                # Quantise on the device: a quarter of the bytes to copy back.
                out[start : start + count] = (maps.float() * 255).round_().to(torch.uint8).cpu().numpy()
        return out

    def _to_device(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Float (B, 3, H, W) RGB in [0, 1] on the device, channels_last. uint8 travels as uint8 (4x
        less to copy) and its (B, H, W, 3) layout already is channels_last once permuted."""
        if isinstance(images, np.ndarray):
            return torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        return images.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)


def _check_input(images: np.ndarray | torch.Tensor) -> None:
    """Refuse anything but uint8 (B, H, W, 3) arrays and float (B, 3, H, W) tensors in [0, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise SynthgenError(
                f"edge detector input: expected uint8 (B, H, W, 3) RGB, got {images.dtype} {images.shape}"
            )
    elif isinstance(images, torch.Tensor):
        if not images.is_floating_point() or images.dim() != 4 or images.shape[1] != 3:
            raise SynthgenError(
                "edge detector input: expected a float (B, 3, H, W) RGB tensor in [0, 1], "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise SynthgenError("edge detector input: float RGB values must lie in [0, 1]")
    else:
        raise SynthgenError(
            f"edge detector input: expected a numpy array or a torch tensor, got {type(images).__name__}"
        )
