"""The one entry point the pipeline calls for candidate regions, and its cache.

``RegionProposer`` turns an image into an exclusive uint16 region map (0 = no candidate) with either
Segment Anything + LogicAL's refinement (``sam``) or the weight-free graph-based fallback
(``classical``); ``auto`` takes SAM when a checkpoint resolves and otherwise falls back, saying so.
``describe()`` is what goes into the manifest and the cache key. ``cached_regions`` computes each
map once per (image content, size, model, parameters, inputs) and reuses it on every rebuild.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..cache import MapCache, map_key
from ..errors import SynthgenError
from .classical import ClassicalParams, classical_masks
from .refine import RefineParams, refine_masks
from .sam import SAM_MODEL_TYPES, SamParams, SamSegmenter, resolve_device

METHODS = ("sam", "classical", "auto")
CLASSICAL_MODEL = "felzenszwalb"


@dataclass(frozen=True)
class RegionParams:
    """All parameters of region proposal: SAM's mask generator, the fallback, the refinement."""

    sam: SamParams = field(default_factory=SamParams)
    classical: ClassicalParams = field(default_factory=ClassicalParams)
    refine: RefineParams = field(default_factory=RefineParams)


class RegionProposer:
    """Candidate semantic regions of one image at a time.

    method: "sam", "classical" or "auto" (SAM if a checkpoint resolves, else classical + warning).
    checkpoint: explicit SAM checkpoint path; without it ``resolve`` is asked.
    model_type: "vit_b", "vit_l" or "vit_h" (must match the checkpoint).
    resolve: ``resolve(name) -> Path`` for name "sam_<model_type>", raising SynthgenError when no
        file can be found (the weight-resolution module provides it).
    device: "cpu", "cuda", "cuda:N" or None (CUDA when present).
    segmenter: a ready SamSegmenter for "sam"/"auto" (e.g. ``SamSegmenter.random`` in tests);
        replaces checkpoint resolution.
    """

    def __init__(
        self,
        method: str = "auto",
        checkpoint: str | Path | None = None,
        model_type: str = "vit_b",
        params: RegionParams = RegionParams(),
        device: str | None = None,
        resolve: Callable[[str], Path] | None = None,
        segmenter: SamSegmenter | None = None,
    ):
        if method not in METHODS:
            raise SynthgenError(f"--regions: unknown method '{method}'; choose {', '.join(METHODS)}")
        if model_type not in SAM_MODEL_TYPES:
            raise SynthgenError(f"--sam-model: unknown type '{model_type}'; choose {', '.join(SAM_MODEL_TYPES)}")
        self.params = params
        self.segmenter = None
        if method != "classical":
            self.segmenter = segmenter or _sam_segmenter(method, checkpoint, model_type, params.sam, device, resolve)
        self.method = "sam" if self.segmenter is not None else "classical"
        self._description = self._describe()

    def propose(
        self, image: np.ndarray, edges: np.ndarray | None = None, foreground: np.ndarray | None = None
    ) -> np.ndarray:
        """(H, W) uint16 region map of an (H, W, 3) uint8 RGB image; labels 1..K by decreasing area.

        edges: (H, W) uint8 edge map; the classical method cuts segments along its strong edges
            (SAM ignores it).
        foreground: (H, W) bool; regions mostly outside it are dropped (LogicAL supp. Fig. 8).
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        if self.segmenter is not None:
            masks = self.segmenter.masks(image)
        else:
            masks = classical_masks(image, self.params.classical, edges)
        return refine_masks(masks, image.shape[:2], self.params.refine, foreground)

    def uses_edges(self) -> bool:
        """Whether ``propose``'s result depends on the edge map (then it is part of the cache key)."""
        return self.method == "classical"

    def describe(self) -> dict[str, Any]:
        """Method, model, checkpoint sha256 (None without weights) and every parameter that matters."""
        return dict(self._description)

    def _describe(self) -> dict[str, Any]:
        if self.segmenter is not None:
            model_params = asdict(self.segmenter.params)
            identity = dict(self.segmenter.identity)
        else:
            model_params = asdict(self.params.classical)
            identity = {"model": CLASSICAL_MODEL, "model_type": None, "checkpoint_sha256": None}
        model_params["refine"] = asdict(self.params.refine)
        return {"method": self.method, **identity, "params": model_params}


def _sam_segmenter(
    method: str,
    checkpoint: str | Path | None,
    model_type: str,
    params: SamParams,
    device: str | None,
    resolve: Callable[[str], Path] | None,
) -> SamSegmenter | None:
    """The SAM segmenter for ``method`` "sam" or "auto"; None when "auto" finds no checkpoint."""
    if checkpoint is None:
        try:
            checkpoint = _resolve_checkpoint(model_type, resolve)
        except SynthgenError as e:
            if method == "sam":
                raise
            warnings.warn(
                f"regions: no Segment Anything checkpoint ({e}); using the weight-free classical "
                "regions (felzenszwalb) instead",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
    return SamSegmenter.from_checkpoint(model_type, checkpoint, params, resolve_device(device))


def _resolve_checkpoint(model_type: str, resolve: Callable[[str], Path] | None) -> Path:
    name = f"sam_{model_type}"
    if resolve is None:
        raise SynthgenError(f"{name}: no SAM checkpoint given (--sam-checkpoint) and no weight resolver")
    return Path(resolve(name))


def region_cache_key(
    proposer: RegionProposer,
    image_sha256: str,
    image_size: tuple[int, int],
    edges: np.ndarray | None = None,
    foreground: np.ndarray | None = None,
) -> str:
    """Cache key of one region map: image content and size, model, parameters, extra inputs."""
    description = proposer.describe()
    params = {"description": description, "image_size": list(image_size)}
    if edges is not None and proposer.uses_edges():
        params["edges_sha256"] = hashlib.sha256(np.ascontiguousarray(edges).tobytes()).hexdigest()
    if foreground is not None:
        params["foreground_sha256"] = hashlib.sha256(np.packbits(foreground).tobytes()).hexdigest()
    return map_key(image_sha256, description["model"], params)


def cached_regions(
    proposer: RegionProposer,
    image: np.ndarray,
    image_sha256: str,
    cache: MapCache,
    edges: np.ndarray | None = None,
    foreground: np.ndarray | None = None,
) -> np.ndarray:
    """``proposer.propose`` through ``cache``: computed once, then read back (about 1 ms).

    ``image_sha256`` identifies the source file; the size of ``image`` (the build's working size)
    is part of the key, since the same file resized differently yields a different map. An entry
    that is unreadable or does not fit the image is a miss and is rewritten.
    """
    size = image.shape[:2]
    key = region_cache_key(proposer, image_sha256, size, edges, foreground)
    entry = cache.get(key)
    if entry is not None:
        regions = entry.get("regions")
        if regions is not None and regions.dtype == np.uint16 and regions.shape == size:
            return regions
    regions = proposer.propose(image, edges=edges, foreground=foreground)
    cache.put(key, {"regions": regions})
    return regions
