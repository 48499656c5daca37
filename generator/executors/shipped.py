"""A build's heavy read-only inputs held in memory, so that they can travel to other machines.

A local build's workers read the prepared source stack and the precomputed maps from this machine's
cache, the textures from their folder and the generator weights from their file. A cluster's nodes
have none of these. ``ShippedInputs.collect(plan)`` reads them once on the machine that planned the
build; an executor puts the result in its object store once (Ray: ``ray.put``) and every task builds
its ``StrategyContext`` from it (``render.make_context(plan, device, shipped)``), with the same
bytes, so the shards are byte-identical to a local build's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..render import load_models
from ..plan import BuildPlan


@dataclass(frozen=True)
class ShippedMaps:
    """The precomputed maps of every source (the maps contract of generator.precompute), in memory."""

    maps: tuple[dict[str, np.ndarray], ...]

    def __len__(self) -> int:
        return len(self.maps)

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        # Copies: arrays out of an object store are read-only views, and a map store's reader hands
        # every caller arrays of its own.
        return {name: np.array(array) for name, array in self.maps[i].items()}


@dataclass(frozen=True)
class ShippedInputs:
    """sources: the (N, H, W, 3) uint8 source stack; textures: the texture folder's files by bank key
    (``--textures DIR`` only); maps: the sources' maps (strategies that need maps); models: the
    networks strategies render with, loaded on the CPU (the LogicAL renderer's generator)."""

    sources: np.ndarray
    textures: dict[str, bytes] | None
    maps: ShippedMaps | None
    models: dict[str, Any]

    @classmethod
    def collect(cls, plan: BuildPlan) -> "ShippedInputs":
        textures = None
        if plan.textures.get("source") == "dtd":  # the files the plan hashed, by the keys strategies draw
            root = Path(plan.textures["root"])
            textures = {row["key"]: (root / row["key"]).read_bytes() for row in plan.textures["files"]}
        maps = ShippedMaps(tuple(plan.maps(i) for i in range(len(plan.maps)))) if plan.maps is not None else None
        sources = np.ascontiguousarray(plan.sources.load_stack())  # out of the memory map, into memory
        return cls(sources, textures, maps, load_models(plan, torch.device("cpu")))

    def models_on(self, device: torch.device) -> dict[str, Any]:
        """The models on ``device`` (an E2IModel or an InpaintModel: its generator network moves, the rest
        stays; a RealPixelModel: its InpaintModel's)."""
        from ..models.real_pixels import RealPixelModel

        def moved(model: Any) -> Any:
            if isinstance(model, RealPixelModel):
                return RealPixelModel(moved(model.inpainter))
            return replace(model, generator=model.generator.to(device))

        return {name: moved(model) for name, model in self.models.items()}
