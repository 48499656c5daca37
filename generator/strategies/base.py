"""What a synthesis strategy is, and what it may use.

A strategy turns a batch of normal images into anomalous images plus masks. It works in two steps
so that results do not depend on the device or on how samples are batched:

1. ``draw(rng, ctx, source_index)`` runs on the CPU, once per sample, with that sample's own
   numpy Generator (seeded from the sample seed). *All* randomness is drawn here: scalar parameters
   go into ``Recipe.params`` (JSON, stored with the sample), arrays (noise gradients, ...) into
   ``Recipe.arrays`` (not stored; they are re-derivable from the seed).
2. ``render(images, recipes, ctx)`` runs on ``ctx.device`` (CPU or CUDA) for a whole batch, with no
   randomness of its own. Each sample's output must depend only on its own image and recipe, never
   on the other samples of the batch.

Images are float32 tensors (B, 3, H, W) in [0, 1]; masks are float32 (B, H, W) in {0, 1}. A sample
whose mask is empty is a normal sample (label 0), as in DRAEM, where half the samples stay normal.

The CPU path. A build stores uint8 pixels, and most of a float render's time on the CPU goes into
converting whole batches between uint8 and float and into float passes over pixels that the sample
leaves unchanged (outside its mask). A strategy may therefore also implement
``render_pixels(pixels, recipes, ctx)``: the same samples computed from and to the stored uint8
pixels, one sample at a time, touching in float only the pixels it changes. Its bytes must equal
``to_uint8_hwc(render(...).images)`` (and masks, normals, notes, accepted) for images that are uint8
pixels / 255, which is what a build renders; tests/test_strategies.py checks that equality for every
strategy that has one. The pipeline uses it when rendering on the CPU; ``render`` stays the batched
path for other devices and the reference.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from ..errors import SynthgenError


@dataclass
class Recipe:
    """Everything one sample's render needs, drawn on the CPU from the sample's RNG."""

    params: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


#: the note key under which a strategy says why it rejected a sample (Rendered.notes)
REJECTED_BECAUSE = "rejected_because"
#: the reason counted for a rejected sample whose strategy gives none
REJECTED_UNSAID = "rejected by the strategy"


@dataclass
class Rendered:
    """A batch of synthesized samples.

    images: (B, 3, H, W) float32 in [0, 1].
    masks: (B, H, W) float32 in {0, 1}; an all-zero mask means the sample is normal.
    extras: per-sample extra fields declared in ``Strategy.extra_fields`` (e.g. LogicAL's normal
        edge map and JND map), each (B, ...) on any device.
    accepted: (B,) bool; False marks a collapsed/invalid sample that the pipeline must redraw
        (it re-runs ``draw`` with the same RNG, which continues its stream) and count as rejected.
    notes: per-sample values measured during render (e.g. mask area), merged into the stored params.
        A rejected sample's note may name why under ``REJECTED_BECAUSE``; the build counts the reasons
        per strategy (the manifest's ``totals.rejections``).
    normals: (B, 3, H, W) the clean image each anomaly was made from, when the strategy changed it
        before synthesis (DRAEM rotates some normals first). None means "the input images". The
        shard stores it as the reconstruction target.
    """

    images: torch.Tensor
    masks: torch.Tensor
    normals: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    accepted: torch.Tensor | None = None
    notes: list[dict[str, Any]] | None = None


@dataclass
class RenderedPixels:
    """A batch rendered straight to the stored bytes (:meth:`Strategy.render_pixels`, the CPU path).

    images: (B, H, W, 3) uint8. masks: (B, H, W) bool, True inside the anomaly.
    normals: (B, H, W, 3) uint8 clean images when the strategy changed them (as ``Rendered.normals``);
        None means the input pixels. accepted and notes: as in :class:`Rendered`.
    """

    images: np.ndarray
    masks: np.ndarray
    normals: np.ndarray | None = None
    accepted: np.ndarray | None = None
    notes: list[dict[str, Any]] | None = None


@dataclass
class ExtraField:
    """A per-sample array a strategy stores besides image and mask.

    shape: the per-sample shape as a function of (H, W), e.g. ``lambda h, w: (4, h, w)``.
    dtype: numpy dtype stored in the shard (uint8 for edge maps and masks, float16 for JND maps).
    scale: multiply the float tensor by this before casting (255 for [0, 1] maps stored as uint8).
    """

    shape: Callable[[int, int], tuple[int, ...]]
    dtype: str
    scale: float = 1.0
    compress: bool = True
    doc: str = ""


class StrategyContext:
    """Shared, read-only resources a strategy may use (built once per build, per worker).

    image_size: (H, W) of every image and mask in the build.
    device: where ``render`` runs.
    dataset, category: names (the per-class selection table keys on ``category``).
    sources: the normal images the build samples from (the in-distribution pool).
    options: per-strategy options from the build config as given, ``options[strategy_name][key]``;
        strategies take theirs parsed and checked from :meth:`options_of`.
    strategies: the build's strategies resolved once (:func:`resolve_strategies`, in the plan): their
        objects and parsed options. Without it (a context made by hand, in tests) each strategy's
        options are parsed on first use, once per context.
    normal_image(i): source ``i`` decoded and resized, (3, H, W) float32 on ``device``.
    source_pixels(i): the same image as the (H, W, 3) uint8 array it was made from. The pipeline
        stores it as the sample's normal when a strategy leaves the normal unchanged, instead of
        converting the float image back (byte-identical, without the round trip). Default: derived
        from ``normal_image``.
    texture(key): an anomaly-source texture resized to the image size, (H, W, 3) uint8 numpy (CPU).
        ``key`` is whatever ``texture_keys()`` listed (a DTD file path, ``normal:<i>``, ``perlin``).
    texture_keys(): the keys ``draw`` may choose from (depends on the build's texture source).
    maps(i): precomputed per-source maps (edges, edges_fused, regions) as numpy arrays at the build
        size, for strategies whose ``needs`` has "maps"; the contract is documented in generator/precompute.py.
    models: loaded networks (edge-to-image generator, ...), keyed by name; later stages.
    """

    def __init__(
        self,
        *,
        image_size: tuple[int, int],
        device: torch.device,
        dataset: str,
        category: str,
        sources: list,
        normal_image: Callable[[int], torch.Tensor],
        texture: Callable[[str], torch.Tensor],
        texture_keys: Callable[[], list[str]],
        options: dict[str, dict[str, Any]] | None = None,
        maps: Callable[[int], dict[str, np.ndarray]] | None = None,
        models: dict[str, Any] | None = None,
        source_pixels: Callable[[int], np.ndarray] | None = None,
        strategies: Mapping[str, "ResolvedStrategy"] | None = None,
    ):
        self.image_size = tuple(image_size)
        self.device = device
        self.dataset = dataset
        self.category = category
        self.sources = sources
        self.normal_image = normal_image
        self.source_pixels = source_pixels or (lambda i: to_uint8_hwc(normal_image(i)[None])[0])
        self.texture = texture
        self.texture_keys = texture_keys
        self.options = options or {}
        self.maps = maps
        self.models = models or {}
        self._resolved: dict[str, ResolvedStrategy] = dict(strategies or {})

    def option(self, strategy: str, key: str, default: Any) -> Any:
        """The raw ``--set`` value (for :meth:`Strategy.read_options`, which parses it)."""
        return self.options.get(strategy, {}).get(key, default)

    def resolved(self, name: str) -> "ResolvedStrategy":
        """Strategy ``name`` resolved: its object and its parsed options, made once per context."""
        if name not in self._resolved:
            self._resolved[name] = resolve_strategy(name, self)
        return self._resolved[name]

    def options_of(self, strategy: str) -> Mapping[str, Any]:
        """Every option of ``strategy``, parsed and checked (:meth:`Strategy.read_options`), defaults filled in."""
        return self.resolved(strategy).options


class Strategy(ABC):
    """Base class of every ``--strategy``. Subclasses set ``name`` and implement draw/render."""

    name: ClassVar[str]
    #: one-line description shown by ``synthgen strategies``
    summary: ClassVar[str] = ""
    #: which context resources this strategy needs: subset of {"textures", "maps", "models"}
    needs: ClassVar[frozenset[str]] = frozenset()
    #: extra per-sample fields this strategy writes (name -> ExtraField)
    extra_fields: ClassVar[dict[str, ExtraField]] = {}

    def read_options(self, ctx: StrategyContext) -> dict[str, Any]:
        """Every option of this strategy (``--set NAME.KEY=VALUE``), read with ``ctx.option`` and checked:
        key -> value, defaults filled in; a bad value raises a one-line SynthgenError.

        The one place a strategy parses its options, called once per build, by the plan
        (:func:`resolve_strategies`), before anything is written; a key given that is not in the returned
        dict is refused as unknown. ``draw``/``render`` take the parsed values from ``ctx.options_of``."""
        return {}

    @abstractmethod
    def draw(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int) -> Recipe:
        """Draw all random choices for one sample (CPU only)."""

    def redraw(self, rng: np.random.Generator, ctx: StrategyContext, source_index: int, rejected: Recipe) -> Recipe:
        """A new draw for a sample whose ``rejected`` recipe ``render`` did not accept (``rng``
        continues the sample's stream). By default a fresh :meth:`draw`; a strategy whose draw makes a
        choice that must not depend on rejections (LogicAL's identity share) keeps it here."""
        return self.draw(rng, ctx, source_index)

    @abstractmethod
    def render(self, images: torch.Tensor, recipes: list[Recipe], ctx: StrategyContext) -> Rendered:
        """Apply the recipes to a batch of normal images on ``ctx.device`` (no randomness here)."""

    def identity_share(self, options: Mapping[str, Any]) -> float:
        """The share of samples drawn as identity renders (no edit; stored as normals), given the parsed
        ``options``: the cost model counts their cheaper render. 0 for a strategy that draws none."""
        return 0.0

    #: True where the strategy implements :meth:`render_pixels` (see the module docstring)
    renders_pixels: ClassVar[bool] = False

    def render_pixels(self, pixels: np.ndarray, recipes: list[Recipe], ctx: StrategyContext) -> RenderedPixels:
        """The CPU path: the bytes ``render`` gives, computed from (B, H, W, 3) uint8 ``pixels``."""
        raise NotImplementedError(f"strategy {self.name} renders float images only")


_STRATEGIES: dict[str, type[Strategy]] = {}


def to_bytes(x: torch.Tensor) -> torch.Tensor:
    """Float values in [0, 1] -> uint8 levels, rounded (half to even) and saturated; any shape.

    The one conversion every stored pixel goes through, so the CPU path (:meth:`Strategy.render_pixels`)
    and the float path round alike."""
    return x.mul(255).clamp_(0, 255).round_().to(torch.uint8)


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float images in [0, 1] -> (B, H, W, 3) uint8 numpy, rounded."""
    # channels-last first, then one allocation and in-place ops (this runs on every rendered pixel)
    return to_bytes(x.permute(0, 2, 3, 1)).cpu().numpy()


#: The float value of each uint8 level, as the pipeline converts pixels (uint8 -> float32, / 255):
#: ``BYTE_LEVELS[pixels]`` is bit for bit the float image a float render receives.
BYTE_LEVELS: np.ndarray = torch.arange(256, dtype=torch.uint8).float().div_(255.0).numpy()


#: the reason of a sample rejected because its anomaly mask came out empty (nothing was synthesized)
EMPTY_MASK = "empty mask"


def mask_notes(counts: Any, num_pixels: int) -> list[dict[str, Any]]:
    """``mask_area`` of each sample from its count of mask pixels: the float32 mean of the mask, as
    ``masks.flatten(1).mean(1)`` gives it (count and division are exact or correctly rounded alike);
    an empty mask, which the image-level strategies reject, is named as the reason."""
    return [{"mask_area": float(np.float32(c) / np.float32(num_pixels)), **({REJECTED_BECAUSE: EMPTY_MASK} if c == 0 else {})}
            for c in counts]


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator that makes a strategy available under ``cls.name``."""
    if cls.name in _STRATEGIES:
        raise RuntimeError(f"strategy {cls.name} registered twice")
    _STRATEGIES[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> Strategy:
    if name not in _STRATEGIES:
        raise SynthgenError(f"unknown strategy '{name}'; known: {', '.join(strategy_names())}")
    return _STRATEGIES[name]()


def number_option(ctx: StrategyContext, strategy: str, key: str, default: float, low: float, high: float) -> float:
    """``ctx.option(strategy, key)`` checked to be a number in [low, high]; a bad value is a user error."""
    value = ctx.option(strategy, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise SynthgenError(f"option {strategy}.{key}: must be a number in [{low}, {high}], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ResolvedStrategy:
    """A strategy of a build, resolved once: its object and its options, parsed and checked."""

    strategy: Strategy
    options: Mapping[str, Any]  # read_options' values; read, never written (a dict: plans are pickled to workers)

    @property
    def name(self) -> str:
        return self.strategy.name


def resolve_strategy(name: str, ctx: StrategyContext) -> ResolvedStrategy:
    """Strategy ``name``'s object and its options parsed from ``ctx.options`` (bad values: one line)."""
    strategy = get_strategy(name)
    return ResolvedStrategy(strategy, strategy.read_options(ctx))


def resolve_strategies(names: tuple[str, ...], options: dict[str, dict[str, Any]],
                       image_size: tuple[int, int]) -> dict[str, ResolvedStrategy]:
    """Each of ``names`` (after expanding ``caf``) resolved once, before a build writes anything: an
    unknown name, ``--set`` options of a strategy that is not in the build, keys the strategy does
    not read and invalid values are refused with one line."""
    objects = {name: get_strategy(name) for name in names}  # an unknown name fails first
    for name in options:
        if name not in names:
            known = f"unknown strategy '{name}'" if name not in _STRATEGIES else f"strategy {name} is not in this build"
            raise SynthgenError(f"--set {name}.*: {known} (this build's strategies: {', '.join(names)})")
    ctx = StrategyContext(image_size=image_size, device=torch.device("cpu"), dataset="", category="", sources=[],
                          normal_image=_no_image, texture=_no_image, texture_keys=list, options=options)
    resolved = {}
    for name, strategy in objects.items():
        resolved[name] = ResolvedStrategy(strategy, strategy.read_options(ctx))  # raises on an invalid value
        for key in options.get(name, {}):
            if key not in resolved[name].options:
                known_keys = ", ".join(sorted(resolved[name].options)) or "none"
                raise SynthgenError(f"--set {name}.{key}: unknown option of {name} (its options: {known_keys})")
    return resolved


def _no_image(_) -> torch.Tensor:
    raise RuntimeError("option parsing reads no images")
