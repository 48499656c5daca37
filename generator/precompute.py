"""The precompute stage: per-source edge maps (PiDiNet) and candidate-region maps (SAM or classical).

LogicAL (sec. 3.1, 4.2) starts every synthetic anomaly from two maps of a normal image: PiDiNet's
"four scales" of edges (the first, finest scale trains the edge-to-image generator; all are edited)
and a map of candidate semantic regions from Segment Anything, refined. Both are computed once per
source image and cached (generator.cache.MapCache), keyed by the image's sha256, the model (weights
sha256) and every parameter, so a rebuild with other strategies never recomputes them.

The maps contract (what ``StrategyContext.maps(i)`` returns for source ``i``; do not change it). Every
array is at the build's image size (H, W):

    "edges":       uint8 (4, H, W)  PiDiNet's four side outputs, scale 0 = the first (finest) stage;
                                    value = round(255 * sigmoid probability)
    "edges_fused": uint8 (H, W)     PiDiNet's fused map, same encoding
    "regions":     int32 (H, W)     exclusive candidate regions: 0 = background / no region, 1..K
                                    regions numbered by decreasing area

Use without a build::

    from synthgen.generator.precompute import MapSettings, compute_maps
    maps = compute_maps(images)                  # uint8 (N, H, W, 3) RGB array, or a list of paths
    maps = compute_maps(paths, image_size=(256, 256), settings=MapSettings(regions="classical"))
    maps[0]["edges"][0]                          # finest edge scale of the first image

Edges: the ``table5_pidinet`` checkpoint by default (any registered name or a checkpoint path via
``edge_model``); when no weights resolve, a one-line error says where to get them. There is no
fallback for edges: LogicAL's synthesis is defined on PiDiNet's maps. Regions: SAM when a checkpoint
resolves, else the weight-free classical proposer with a warning; ``regions="sam"`` insists on SAM.
The edge network runs batched on the device (``device="cuda"``); SAM runs one image at a time (its
automatic mask generator is per image), on the same device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from .cache import MapCache, map_key
from .config import BuildConfig, digest
from .diskspace import require_free_space
from .errors import SynthgenError
from .imageio import read_rgb, resize_rgb, sha256_file
from .models.edges import MAP_NAMES, EdgeDetector
from .models.weights import REGISTRY, resolve_weights
from .regions import RegionProposer, cached_regions, region_cache_key
from .sources import RESIZE_VERSION, SourceSet, read_sources
from .viz import colorize_labels, contact_sheet, save_sheet

EDGE_SCALES = 4  # PiDiNet's side outputs; the fifth channel of EdgeDetector's output is the fused map
EDGES_KIND, REGIONS_KIND = "edges", "regions"  # MapCache folders


@dataclass(frozen=True)
class MapSettings:
    """How maps are made (the options of ``synthgen precompute`` and ``synthgen build``).

    edge_model: a PiDiNet weights name from the registry ("pidinet" = table5_pidinet, "pidinet-tiny")
        or the path of a PiDiNet checkpoint.
    weights_dir: a folder searched for registered weights (else $SYNTHGEN_WEIGHTS, then the caches).
    regions: "auto" (SAM if a checkpoint resolves locally, else classical with a warning), "sam" or
        "classical".
    sam_model: "vit_b", "vit_l" or "vit_h"; must match the checkpoint.
    sam_checkpoint: an explicit SAM checkpoint file; without it the registry name sam_<model> is resolved.
    device: "cpu", "cuda" or "cuda:N", for PiDiNet and SAM.
    """

    edge_model: str = "pidinet"
    weights_dir: str | None = None
    regions: str = "auto"
    sam_model: str = "vit_b"
    sam_checkpoint: str | None = None
    device: str = "cpu"


class MapMaker:
    """The loaded edge detector and region proposer, and what identifies them."""

    def __init__(
        self,
        settings: MapSettings = MapSettings(),
        *,
        detector: EdgeDetector | None = None,
        proposer: RegionProposer | None = None,
    ):
        self.detector = detector or EdgeDetector(settings.edge_model, settings.device, weights_dir=settings.weights_dir)
        self.proposer = proposer or RegionProposer(
            settings.regions,
            checkpoint=settings.sam_checkpoint,
            model_type=settings.sam_model,
            device=settings.device,
            resolve=lambda name: _resolve_sam(name, settings),
        )

    def describe(self) -> dict[str, Any]:
        """Which models and parameters produce the maps (manifest record and build identity)."""
        return {"edges": self.detector.cache_params(), "regions": self.proposer.describe()}

    def artifacts(self) -> list[dict[str, Any]]:
        """Manifest ``artifacts`` rows: the PiDiNet file, and the SAM checkpoint or the classical method.

        The classical proposer has no weights file: its row carries the sha256 of its parameters, so
        the row still pins exactly what produced the regions.
        """
        edges = self.detector
        # The registry name of the weights (matched by sha256), else the user's own checkpoint.
        name = next((n for n, spec in REGISTRY.items() if spec.sha256 == edges.weights_sha256), "pidinet (own weights)")
        rows = [{"name": name, "file": str(edges.path), "sha256": edges.weights_sha256,
                 "role": "edge maps (4 scales + fused)"}]
        regions = self.proposer.describe()
        checkpoint = self.proposer.segmenter.checkpoint if self.proposer.segmenter is not None else None
        if checkpoint is not None:
            sha, file = regions["checkpoint_sha256"], str(checkpoint)
        else:  # classical, or a SAM built in memory (tests)
            sha, file = digest(regions), "(no weights file)"
        rows.append({"name": regions["model"], "file": file, "sha256": sha,
                     "role": f"region maps ({regions['method']})", "method": regions["method"]})
        return rows


def settings_from_config(config: BuildConfig) -> MapSettings:
    """The map settings of a build."""
    return MapSettings(
        edge_model=config.edge_model,
        weights_dir=config.weights_dir,
        regions=config.regions,
        sam_model=config.sam_model,
        sam_checkpoint=config.sam_checkpoint,
        device=config.device,
    )


def precompute_sources(
    config: BuildConfig, sources: SourceSet, *, progress: bool = False
) -> tuple[MapStore, dict[str, Any], list[dict[str, Any]]]:
    """A build's maps: (store for ``StrategyContext.maps``, identity record, manifest artifact rows)."""
    maker = MapMaker(settings_from_config(config))
    ids = [source_image_id(sha) for sha in sources.sha256]
    store, _ = precompute(sources.load_stack(), ids, maker, progress=progress)
    return store, maker.describe(), maker.artifacts()


def category_sources_and_maps(
    dataset: str, root: str | Path | None, category: str, split: str, image_size: tuple[int, int],
    settings: MapSettings, *, progress: bool = False,
) -> tuple[SourceSet, MapStore, dict[str, Any]]:
    """A category's normal images of ``split``, read and resized as a build reads them, with their maps
    (computed into the cache when missing): (sources, map store, identity record of the map models)."""
    _, sources = read_sources(dataset, root, category, split, image_size, progress=progress)
    maker = MapMaker(settings)
    store, _ = precompute(sources.load_stack(), [source_image_id(sha) for sha in sources.sha256], maker, progress=progress)
    return sources, store, maker.describe()


def _resolve_sam(name: str, settings: MapSettings) -> Path:
    """A SAM checkpoint by registry name. "auto" looks only on this machine: a silent multi-GB download
    is no default; "sam" goes through the whole resolution, download included."""
    return resolve_weights(name, weights_dir=settings.weights_dir, download=settings.regions == "sam")


def source_image_id(file_sha256: str) -> str:
    """Cache identity of a source file as the build sees it: its content and synthgen's resize procedure."""
    return f"{file_sha256}:resize-v{RESIZE_VERSION}"


def pixels_image_id(image: np.ndarray) -> str:
    """Cache identity of an image given as pixels: the sha256 of its shape and bytes."""
    h = hashlib.sha256(repr(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return f"pixels:{h.hexdigest()}"


@dataclass(frozen=True)
class MapStore:
    """Reads the precomputed maps of a set of images back from the cache, in the maps contract.

    Small and picklable (cache folder and keys only), so worker processes get it with the build plan.
    ``store(i)`` costs two small file reads (about a millisecond at 256x256).
    """

    root: Path
    image_size: tuple[int, int]
    edge_keys: tuple[str, ...]
    region_keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.edge_keys)

    def subset(self, indices: Sequence[int]) -> "MapStore":
        """The store of images ``indices`` only (in that order)."""
        return MapStore(self.root, self.image_size, tuple(self.edge_keys[i] for i in indices),
                        tuple(self.region_keys[i] for i in indices))

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        edges = _read_edges(MapCache(EDGES_KIND, self.root), self.edge_keys[i], self.image_size)
        regions = _read_regions(MapCache(REGIONS_KIND, self.root), self.region_keys[i], self.image_size)
        if edges is None or regions is None:
            raise SynthgenError(
                f"{self.root}: precomputed maps of source {i} vanished from the cache during the build; run it again"
            )
        return {"edges": edges[:EDGE_SCALES], "edges_fused": edges[EDGE_SCALES], "regions": regions.astype(np.int32)}


def _read_edges(cache: MapCache, key: str, size: tuple[int, int]) -> np.ndarray | None:
    """The cached (5, H, W) uint8 edge maps, or None when absent, damaged or of another shape."""
    entry = cache.get(key)
    edges = entry.get("edges") if entry else None
    if edges is None or edges.dtype != np.uint8 or edges.shape != (len(MAP_NAMES), *size):
        return None
    return edges


def _read_regions(cache: MapCache, key: str, size: tuple[int, int]) -> np.ndarray | None:
    entry = cache.get(key)
    regions = entry.get("regions") if entry else None
    if regions is None or regions.dtype != np.uint16 or regions.shape != tuple(size):
        return None
    return regions


@dataclass
class PrecomputeReport:
    """What a precompute run did: how many maps it computed and how many came from the cache."""

    images: int
    edges_computed: int
    regions_computed: int


def precompute(
    images: np.ndarray,
    image_ids: Sequence[str],
    maker: MapMaker,
    *,
    cache_root: str | Path | None = None,
    progress: bool = False,
) -> tuple[MapStore, PrecomputeReport]:
    """Edge and region maps of ``images`` (uint8 (N, H, W, 3) RGB, a memory map is fine) into the cache.

    ``image_ids[i]`` identifies image i's content (:func:`source_image_id`, :func:`pixels_image_id`).
    Missing edge maps are computed in device-sized batches; regions one image at a time (SAM's
    generator is per image). Each entry is written atomically once complete, so an interrupted or
    failing run leaves only whole entries behind.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise SynthgenError(f"precompute: expected uint8 (N, H, W, 3) RGB images, got {images.dtype} {images.shape}")
    if len(image_ids) != len(images):
        raise SynthgenError(f"precompute: {len(images)} images but {len(image_ids)} image ids")
    size = tuple(int(v) for v in images.shape[1:3])
    edge_cache = MapCache(EDGES_KIND, cache_root)
    region_cache = MapCache(REGIONS_KIND, cache_root)
    edge_keys = _edge_keys(image_ids, maker.detector, size)
    edges_computed = _fill_edges(images, edge_keys, maker.detector, edge_cache, size, progress)

    region_keys, regions_computed = [], 0
    for i in tqdm(range(len(images)), desc="regions", unit="image", disable=not progress, leave=False):
        key, edges = _region_key(maker, image_ids[i], size, _read_edges(edge_cache, edge_keys[i], size))
        if _read_regions(region_cache, key, size) is None:
            cached_regions(maker.proposer, np.asarray(images[i]), image_ids[i], region_cache, edges=edges)
            regions_computed += 1
        region_keys.append(key)
    store = MapStore(edge_cache.root, size, tuple(edge_keys), tuple(region_keys))
    return store, PrecomputeReport(len(images), edges_computed, regions_computed)


def _region_key(maker: MapMaker, image_id: str, size: tuple[int, int], edges: np.ndarray) -> tuple[str, np.ndarray | None]:
    """(cache key of an image's region map, the fused edges its proposer reads or None). The classical
    proposer cuts its segments along the fused edges, so they are part of the key; SAM looks at the
    image only."""
    fused = edges[EDGE_SCALES] if maker.proposer.uses_edges() else None
    return region_cache_key(maker.proposer, image_id, size, edges=fused), fused


# The precompute stage in pieces, for an executor whose tasks run where the cache is not
# (generator.executors): what is missing here, and the cache entries a task computes and returns.


def missing_edges(images: np.ndarray, image_ids: Sequence[str], detector: EdgeDetector) -> list[int]:
    """Indices of the images (as for :func:`precompute`) whose edge maps are not in this machine's cache."""
    size = tuple(int(v) for v in images.shape[1:3])
    cache = MapCache(EDGES_KIND)
    return [i for i, key in enumerate(_edge_keys(image_ids, detector, size)) if _read_edges(cache, key, size) is None]


def missing_regions(images: np.ndarray, image_ids: Sequence[str], maker: MapMaker) -> list[tuple[int, np.ndarray | None]]:
    """(index, fused edges the proposer reads or None) of the images whose region maps are not in this
    machine's cache; their edge maps must be cached already."""
    size = tuple(int(v) for v in images.shape[1:3])
    edge_cache, region_cache = MapCache(EDGES_KIND), MapCache(REGIONS_KIND)
    missing = []
    for i, edge_key in enumerate(_edge_keys(image_ids, maker.detector, size)):
        key, fused = _region_key(maker, image_ids[i], size, _read_edges(edge_cache, edge_key, size))
        if _read_regions(region_cache, key, size) is None:
            missing.append((i, fused))
    return missing


def edge_entries(images: np.ndarray, image_ids: Sequence[str], detector: EdgeDetector) -> dict[str, dict[str, np.ndarray]]:
    """{cache key: entry} of the edge maps of ``images``, computed in one detector call (so in its
    forward-pass batches, as :func:`precompute` batches them)."""
    size = tuple(int(v) for v in images.shape[1:3])
    maps = detector(np.ascontiguousarray(images))
    return {key: {"edges": edges} for key, edges in zip(_edge_keys(image_ids, detector, size), maps)}


def region_entries(
    images: np.ndarray, image_ids: Sequence[str], proposer: RegionProposer, fused_edges: Sequence[np.ndarray | None]
) -> dict[str, dict[str, np.ndarray]]:
    """{cache key: entry} of the region maps of ``images`` (one image at a time, as SAM runs), given
    the fused edges :func:`missing_regions` returned."""
    out = {}
    for image, image_id, edges in zip(images, image_ids, fused_edges):
        key = region_cache_key(proposer, image_id, tuple(image.shape[:2]), edges=edges)
        out[key] = {"regions": proposer.propose(np.asarray(image), edges=edges)}
    return out


def cached_edge_maps(
    images: np.ndarray, image_ids: Sequence[str], detector: EdgeDetector, *, cache_root: str | Path | None = None, progress: bool = False
) -> np.ndarray:
    """uint8 (N, 5, H, W): the four edge scales and the fused map of each image (``images`` and
    ``image_ids`` as for :func:`precompute`), from the precompute stage's cache, computing and caching
    only the missing ones. ``synthgen train-e2i`` reads its edge maps here, so training and the
    builds that follow share one computation and are certain to see the same maps."""
    size = tuple(int(v) for v in images.shape[1:3])
    cache = MapCache(EDGES_KIND, cache_root)
    keys = _edge_keys(image_ids, detector, size)
    _fill_edges(images, keys, detector, cache, size, progress)
    maps = [_read_edges(cache, key, size) for key in keys]
    if any(m is None for m in maps):
        raise SynthgenError(f"{cache.root}: edge maps vanished from the cache while being read; run it again")
    return np.stack(maps)


def _edge_keys(image_ids: Sequence[str], detector: EdgeDetector, size: tuple[int, int]) -> list[str]:
    """Cache keys of the edge maps: image content, detector weights and settings, size."""
    params = {**detector.cache_params(), "image_size": list(size)}
    return [map_key(image_id, "pidinet", params) for image_id in image_ids]


def _fill_edges(
    images: np.ndarray, keys: list[str], detector: EdgeDetector, cache: MapCache, size: tuple[int, int], progress: bool
) -> int:
    """Compute and cache the edge maps that are missing; returns how many were computed."""
    missing = [i for i, key in enumerate(keys) if _read_edges(cache, key, size) is None]
    require_free_space(cache.root, len(missing) * (len(MAP_NAMES) * size[0] * size[1] + 4096), "edge maps (synthgen cache)")
    # One chunk = what the detector runs in one forward pass on its device (its memory bound).
    chunk = detector.images_per_pass(*size)
    with tqdm(total=len(missing), desc="edges", unit="image", disable=not progress, leave=False) as bar:
        for start in range(0, len(missing), chunk):
            batch = missing[start : start + chunk]
            maps = detector(np.ascontiguousarray(images[batch]))
            for i, edges in zip(batch, maps):
                cache.put(keys[i], {"edges": edges})
            bar.update(len(batch))
    return len(missing)


def load_images(
    images: np.ndarray | Sequence[str | Path], image_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, list[str]]:
    """(uint8 (N, H, W, 3) stack, content ids) from an array or from image files.

    Files are decoded with synthgen's reader and, when ``image_size`` (H, W) is given, resized as a
    build resizes them; without it they must all have one size.
    """
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise SynthgenError(f"images: expected uint8 (N, H, W, 3) RGB, got {images.dtype} {images.shape}")
        if image_size is not None and tuple(images.shape[1:3]) != tuple(image_size):
            images = np.stack([resize_rgb(image, image_size) for image in images])
        return images, [pixels_image_id(image) for image in images]
    paths = [Path(p) for p in images]
    if not paths:
        raise SynthgenError("images: no image files given")
    decoded = [read_rgb(p) for p in paths]
    if image_size is not None:
        decoded = [resize_rgb(image, image_size) for image in decoded]
    sizes = {image.shape[:2] for image in decoded}
    if len(sizes) > 1:
        raise SynthgenError(f"images: sizes differ ({', '.join(f'{h}x{w}' for h, w in sorted(sizes))}); pass image_size")
    ids = [source_image_id(sha256_file(p)) for p in paths]
    return np.stack(decoded), ids


def compute_maps(
    images: np.ndarray | Sequence[str | Path],
    *,
    image_size: tuple[int, int] | None = None,
    settings: MapSettings = MapSettings(),
    maker: MapMaker | None = None,
    cache_root: str | Path | None = None,
) -> list[dict[str, np.ndarray]]:
    """The maps of each image, in the maps contract (module docstring), computed or read from the cache.

    images: uint8 (N, H, W, 3) RGB, or image file paths. image_size: (H, W) to resize to first.
    settings / maker: which models (a ready MapMaker skips loading them again).
    """
    stack, ids = load_images(images, image_size)
    store, _ = precompute(stack, ids, maker or MapMaker(settings), cache_root=cache_root)
    return [store(i) for i in range(len(store))]


# --------------------------------------------------------------------------------------------------
# contact sheet: image | 4 edge scales | fused | regions


def maps_sheet(images: np.ndarray, store: MapStore, captions: Sequence[str], out_png: str | Path, tile: int = 160) -> Path:
    """A PNG with one row per image: the image, its four edge scales, the fused map, its regions."""
    rows, labels = [], []
    for i, (image, caption) in enumerate(zip(images, captions)):
        maps = store(i)
        rows.append([np.asarray(image), *maps["edges"], maps["edges_fused"], colorize_labels(maps["regions"])])
        labels.append(f"{caption}  ({int(maps['regions'].max())} regions)")
    columns = ["image", *(f"edges scale {s}" for s in range(EDGE_SCALES)), "edges fused", "regions"]
    return save_sheet(out_png, contact_sheet(rows, labels, columns, tile=tile))


def evenly_spaced(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return [int(i) for i in np.linspace(0, n - 1, k).round()]


# --------------------------------------------------------------------------------------------------
# `synthgen precompute`


def precompute_category(
    dataset: str,
    root: str | Path | None,
    category: str,
    split: str,
    image_size: tuple[int, int],
    settings: MapSettings,
    *,
    sheet: str | Path | None = None,
    sheet_rows: int = 6,
    progress: bool = False,
    executor: Any = None,
) -> list[str]:
    """Maps of a category's normal images at a build's image size, into the cache; summary lines for
    the user. The sources are read and resized exactly as ``synthgen build`` reads them, so a later
    build at the same size with the same settings finds every map in the cache.

    executor: None computes here; else an object whose ``precompute(images, image_ids, maker,
    progress)`` computes the missing maps elsewhere into this machine's cache and returns a
    PrecomputeReport (generator.executors.ray_executor.RayExecutor)."""
    _, sources = read_sources(dataset, root, category, split, image_size, progress=progress)
    images = sources.images
    maker = MapMaker(settings)
    stack = sources.load_stack()
    ids = [source_image_id(sha) for sha in sources.sha256]
    if executor is not None:
        report = executor.precompute(stack, ids, maker, progress=progress)
        store, _ = precompute(stack, ids, maker)  # every map is cached now: this only reads them back
    else:
        store, report = precompute(stack, ids, maker, progress=progress)
    described = maker.describe()
    regions = described["regions"]
    lines = [
        f"{report.images} images of {dataset}/{category}/{split} at {image_size[0]}x{image_size[1]}: "
        f"edges computed {report.edges_computed} (cached {report.images - report.edges_computed}), "
        f"regions computed {report.regions_computed} (cached {report.images - report.regions_computed})",
        f"edges: PiDiNet {maker.detector.path} (sha256 {maker.detector.weights_sha256[:12]})",
        f"regions: {regions['method']} ({regions['model']})",
        f"cache: {store.root}",
    ]
    if sheet is not None:
        picks = evenly_spaced(len(stack), sheet_rows)
        path = maps_sheet(stack[picks], store.subset(picks), [images[i].id for i in picks], sheet)
        lines.append(f"maps sheet: {path}")
    return lines
