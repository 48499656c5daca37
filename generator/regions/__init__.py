"""Candidate semantic regions per normal image: Segment Anything + LogicAL's refinement, or a
weight-free graph-based fallback. The pipeline uses :class:`RegionProposer` and
:func:`cached_regions`; the rest is exported for tests and tools."""

from .classical import ClassicalParams, classical_masks
from .proposer import RegionParams, RegionProposer, cached_regions, region_cache_key
from .refine import RefineParams, refine_masks
from .sam import SAM_MODEL_TYPES, SamParams, SamSegmenter, build_random_sam, load_sam

__all__ = [
    "SAM_MODEL_TYPES",
    "ClassicalParams",
    "RefineParams",
    "RegionParams",
    "RegionProposer",
    "SamParams",
    "SamSegmenter",
    "build_random_sam",
    "cached_regions",
    "classical_masks",
    "load_sam",
    "refine_masks",
    "region_cache_key",
]
