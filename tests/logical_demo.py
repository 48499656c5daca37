"""The demo dataset as LogicAL strategies see it, with known object regions (shared by
tests/test_logical_strategies.py and benchmarks/bench_logical.py).

The demo's scenes (generator/datasets/demo.py) say where every object lies, so the region map is
exact: label 1 and 2 are the round items, 3 the bar, each with its shadow (what removing the object
changes). Edge maps stand in for PiDiNet's: Gaussian-derivative gradient magnitudes at four scales,
as uint8 probabilities (255 = edge), finest first, and their maximum as the "fused" map; they have
the maps contract's dtypes and shapes and need no weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from synthgen.generator.datasets.demo import _bar_coverage, _disc_coverage, _item_region, demo_sample, render
from synthgen.generator.imageio import resize_mask, resize_rgb
from synthgen.generator.models.e2i import load_e2i_model
from synthgen.generator.strategies import StrategyContext
from synthgen.generator.training.e2i import tiny_config, train_e2i

#: Gaussian scales (px at 256x256) of the four stand-in side outputs, fine to coarse
EDGE_SIGMAS = (1.0, 2.0, 4.0, 8.0)
#: gradient magnitude (grey levels in [0, 1] per pixel) that counts as a certain edge
EDGE_FULL = 0.08


LOGICAL_STRATEGIES = ("semantic-remove", "semantic-replace", "semantic-merge",
                      "arbitrary-remove", "arbitrary-replace", "arbitrary-merge", "logical")


@dataclass(frozen=True)
class DemoSource:
    id: str


def demo_images(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, size, size, 3) uint8, exclusive region maps (n, size, size) int32) of the first
    n training scenes of the demo (seed 0)."""
    images, regions = [], []
    for k in range(n):
        scene = demo_sample(0, "train/good", k)[0]
        footprints = [_item_region(_disc_coverage(d)) for d in scene.discs]
        footprints += [_item_region(_bar_coverage(b)) for b in scene.bars]
        labels = np.zeros(footprints[0].shape, np.int32)
        for label, footprint in enumerate(footprints, start=1):
            labels[footprint & (labels == 0)] = label
        image = render(scene)
        if size != image.shape[0]:
            image = resize_rgb(image, (size, size))
            labels = resize_mask(labels.astype(np.uint8), (size, size)).astype(np.int32)
        images.append(image)
        regions.append(labels)
    return np.stack(images), np.stack(regions)


def demo_backgrounds(n: int, size: int) -> np.ndarray:
    """(n, size, size, 3) uint8: the first n training scenes of :func:`demo_images` rendered without
    their items (what removing every item would leave)."""
    images = []
    for k in range(n):
        scene = demo_sample(0, "train/good", k)[0]
        image = render(replace(scene, discs=(), bars=()))
        images.append(resize_rgb(image, (size, size)) if size != image.shape[0] else image)
    return np.stack(images)


def stand_in_edges(image: np.ndarray) -> np.ndarray:
    """(4, H, W) uint8 edge probabilities of an RGB image at EDGE_SIGMAS (scaled to its size)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    scale = image.shape[0] / 256
    maps = []
    for sigma in EDGE_SIGMAS:
        blurred = cv2.GaussianBlur(grey, (0, 0), max(0.5, sigma * scale))
        magnitude = np.hypot(cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)) / 8
        maps.append(np.round(np.clip(magnitude / EDGE_FULL, 0, 1) * 255).astype(np.uint8))
    return np.stack(maps)


def demo_maps(images: np.ndarray, regions: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The maps contract (edges, edges_fused, regions) of every image."""
    out = []
    for image, labels in zip(images, regions):
        edges = stand_in_edges(image)
        out.append({"edges": edges, "edges_fused": edges.max(0), "regions": labels})
    return out


def train_demo_generator(out_dir: Path, images: np.ndarray, maps: list[dict], epochs: int, seed: int = 0):
    """A tiny edge-to-image generator trained on (first-scale edge, photo) pairs, loaded as E2IModel."""
    pairs = [(m["edges"][0], image) for m, image in zip(maps, images)]
    config = tiny_config(binary_edges=False)
    path = train_e2i(pairs, out_dir, config=config, epochs=epochs, batch_size=8, image_size=images.shape[1],
                     seed=seed, device="cpu")
    return load_e2i_model(path)


def demo_context(images: np.ndarray, maps: list[dict], model, options: dict | None = None) -> StrategyContext:
    """A StrategyContext over the demo images, their maps and the generator, on the CPU.

    Every sample is an edit (``identity_fraction`` 0 for every strategy) unless ``options`` set it:
    the tests and measurements of edits want edits; the seam guard is tested on its own."""
    options = {name: {"identity_fraction": 0.0, **(options or {}).get(name, {})}
               for name in {*LOGICAL_STRATEGIES, *(options or {})}}
    size = images.shape[1:3]
    stack = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255

    def no_textures(key: str) -> torch.Tensor:
        raise AssertionError("LogicAL strategies use no textures")

    return StrategyContext(
        image_size=size,
        device=torch.device("cpu"),
        dataset="demo",
        category="parts_box",
        sources=[DemoSource(f"train/good/{k:03d}") for k in range(len(images))],
        normal_image=lambda i: stack[i],
        texture=no_textures,
        texture_keys=lambda: [],
        options=options,
        maps=lambda i: maps[i],
        models={"e2i": model} if model is not None else {},
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
