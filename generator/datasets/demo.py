"""The embedded demo dataset: a small MVTec-LOCO-style category that the code renders itself.

Category ``parts_box``: a top-down photo of a kraft-card tray on a conveyor belt. A label strip
along the top carries a colour tag; below it the left compartment holds exactly two round items of
the tag's colour, the right compartment one steel bar. Normal images differ in the tag colour, the
tray's position, the items' positions inside their slots, the bar's angle, the lighting and the
sensor noise.

Anomalies follow MVTec LOCO's conventions: one PNG per defect region whose pixel value is the
defect type (see :data:`DEFECTS`, also written as ``defects_config.json``).

- logical: a round item missing, the bar missing, an extra round item, round items whose colour
  differs from the tag, a round item in the bar's compartment (two regions: where it is missing and
  where it lies misplaced);
- structural: a scratch or a dent on an item, a contamination blob in a compartment.

As in LOCO, a missing object's region is the whole area where it may lie (its slot widened by the
position jitter) and its saturation threshold is the object's own area in pixels; every other
region is the defect's footprint, with relative saturation 1.0.

Determinism: every image draws from its own generator seeded by (seed, folder, index), and the
renderer uses only correctly rounded float arithmetic (+, -, *, /, sqrt) on pixels plus OpenCV's
integer drawing and bit-exact 8-bit filters, so one seed gives byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

import cv2
import numpy as np


from ..atomic import ordinary_dir_mode
from ..errors import SynthgenError
from ..imageio import sha256_file, write_png
from ..paths import cache_root
from .base import DatasetIndex, DefectSpec, register_reader
from .mvtec_loco import read_loco_layout

CATEGORY = "parts_box"
# Folder name of the cached copy: bump it whenever the rendered pixels change, so caches refresh.
CACHE_NAME = "demo-v1"
SIZE = 256

# ------------------------------------------------------------------------------------------------
# the defect table (LOCO convention: values count down from 255)

_ROUND_R = 14.0  # round item radius, px
_BAR_LENGTH = 110.0  # distance between the centres of the bar's round end caps, px
_BAR_WIDTH = 16  # bar thickness, px (OpenCV's thick lines take an integer width)

DEFECTS: tuple[DefectSpec, ...] = (
    # Absolute thresholds: the missing object's area (pi r^2; a capsule is L * W + pi (W / 2)^2).
    DefectSpec("missing_round_item", 255, float(round(math.pi * _ROUND_R**2)), False),
    DefectSpec("missing_bar", 254, float(round(_BAR_LENGTH * _BAR_WIDTH + math.pi * (_BAR_WIDTH / 2) ** 2)), False),
    DefectSpec("extra_round_item", 253, 1.0, True),
    DefectSpec("wrong_colour", 252, 1.0, True),
    DefectSpec("misplaced_item", 251, 1.0, True),
    DefectSpec("scratch", 250, 1.0, True),
    DefectSpec("dent", 249, 1.0, True),
    DefectSpec("contamination", 248, 1.0, True),
)
# The kinds cycle over the images of each anomaly folder, in this order.
LOGICAL = ("missing_round_item", "extra_round_item", "wrong_colour", "misplaced_item", "missing_bar")
STRUCTURAL = ("scratch", "dent", "contamination")


@dataclass(frozen=True)
class DemoCounts:
    """Images per folder."""

    train: int = 24
    validation: int = 8
    test_good: int = 8
    logical: int = 8
    structural: int = 8


# ------------------------------------------------------------------------------------------------
# scene geometry (nominal, in pixels, before the tray's shift) and colours

_TRAY = (20, 20, 236, 236)
_LABEL = (32, 30, 224, 62)
_TAG = (196, 36, 216, 56)
_LEFT = (32, 72, 122, 226)
_RIGHT = (132, 72, 224, 226)
_SLOTS = ((77.0, 106.0), (77.0, 192.0))  # round items: centres of the upper and lower slot
_SLOT_JITTER = 7.0
_EXTRA_SLOT = (77.0, 149.0)  # where an extra round item fits between the two
_EXTRA_JITTER = 3.0
_BAR_CENTRE = (190.0, 149.0)
_BAR_JITTER = (5.0, 6.0)
_BAR_MAX_ANGLE = 5.0  # degrees from vertical
_MISPLACED_X = (150.0, 156.0)  # room left of the bar for a misplaced round item
_MISPLACED_Y = (100.0, 198.0)
_TRAY_SHIFT = 3  # whole pixels, so the tray layer is rendered once and moved by slicing

_PALETTE = {"red": (196.0, 48.0, 40.0), "green": (52.0, 150.0, 70.0), "blue": (44.0, 86.0, 186.0)}
_CONVEYOR = (72.0, 80.0, 92.0)
_CARD = (206.0, 190.0, 162.0)
_FLOOR = (182.0, 164.0, 136.0)
_PAPER = (238.0, 236.0, 228.0)
_INK = (38.0, 38.0, 44.0)
_STEEL = (150.0, 155.0, 162.0)
_DIRT = (92.0, 64.0, 38.0)
_SCRATCH = (246.0, 246.0, 240.0)

_ITEM_SHADOW = (3, 2.5, 0.45)  # an item's cast shadow: offset (px), blur sigma (px), strength

# Sensor noise before the lens blur (sigma 0.6 px), which leaves about half of it.
_NOISE_SIGMA = 3.0
_LENS_SIGMA = 0.6
_Y, _X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
_U, _V = (_X - SIZE / 2) / (SIZE / 2), (_Y - SIZE / 2) / (SIZE / 2)  # -1..1 across the image
_VIGNETTE = 1 - 0.09 * (_U * _U + _V * _V)

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Disc:
    x: float
    y: float
    colour: str  # a _PALETTE key


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    angle: float  # degrees from vertical


@dataclass(frozen=True)
class Stroke:
    """Paint laid over the finished objects: how structural defects are drawn."""

    coverage: np.ndarray  # uint8 (SIZE, SIZE), 255 = opaque
    colour: RGB


@dataclass(frozen=True)
class Scene:
    """Everything one image depends on; anomalies are scenes derived with ``dataclasses.replace``."""

    shift: tuple[int, int]  # the tray's offset from its nominal place
    tag: str
    discs: tuple[Disc, ...]
    bars: tuple[Bar, ...]
    strokes: tuple[Stroke, ...]
    gain: float  # exposure
    tilt: tuple[float, float]  # linear light falloff across x and y
    texture_seed: int
    noise_seed: int


Region = tuple[str, np.ndarray]  # (defect name, bool mask)


# ------------------------------------------------------------------------------------------------
# drawing primitives: OpenCV, antialiased, with 4 fractional bits of sub-pixel precision

_SHIFT = 4
_ONE = 1 << _SHIFT


def _fx(v: float) -> int:
    return int(round(v * _ONE))


def _draw(paint: Callable[[np.ndarray], object], size: int = SIZE) -> np.ndarray:
    """The uint8 coverage (255 = inside) of whatever ``paint`` draws with value 255 on an empty canvas."""
    canvas = np.zeros((size, size), np.uint8)
    paint(canvas)
    return canvas


def _circle(canvas, x, y, r, line=cv2.LINE_AA) -> None:
    cv2.circle(canvas, (_fx(x), _fx(y)), _fx(r), 255, -1, line, _SHIFT)


def _ring(canvas, x, y, r) -> None:
    cv2.circle(canvas, (_fx(x), _fx(y)), _fx(r), 255, 1, cv2.LINE_AA, _SHIFT)


def _capsule(canvas, bar: Bar, width: int, extra_length: float = 0.0, line=cv2.LINE_AA) -> None:
    """A thick line with round ends (OpenCV draws thick lines with round caps)."""
    half = (_BAR_LENGTH + extra_length) / 2
    dx, dy = half * math.sin(math.radians(bar.angle)), half * math.cos(math.radians(bar.angle))
    cv2.line(canvas, (_fx(bar.x - dx), _fx(bar.y - dy)), (_fx(bar.x + dx), _fx(bar.y + dy)), 255, width, line, _SHIFT)


def _round_rect(canvas, box, radius: int, offset: float = 0.0) -> None:
    """A filled rectangle with rounded corners: a filled core plus a thick outline with round joins."""
    p0 = (_fx(box[0] + offset + radius), _fx(box[1] + offset + radius))
    p1 = (_fx(box[2] + offset - radius), _fx(box[3] + offset - radius))
    cv2.rectangle(canvas, p0, p1, 255, -1, cv2.LINE_AA, _SHIFT)
    cv2.rectangle(canvas, p0, p1, 255, 2 * radius, cv2.LINE_AA, _SHIFT)


def _polyline(canvas, points: np.ndarray, thickness: int) -> None:
    pts = np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], False, 255, thickness, cv2.LINE_AA, _SHIFT)


def _polygon(canvas, points: np.ndarray) -> None:
    pts = np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [pts], 255, cv2.LINE_AA, _SHIFT)


def _ellipse(canvas, x, y, axes, angle) -> None:
    cv2.ellipse(canvas, (_fx(x), _fx(y)), (_fx(axes[0]), _fx(axes[1])), float(angle), 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)


def _disc_coverage(disc: Disc) -> np.ndarray:
    return _draw(lambda c: _circle(c, disc.x, disc.y, _ROUND_R))


def _bar_coverage(bar: Bar) -> np.ndarray:
    return _draw(lambda c: _capsule(c, bar, _BAR_WIDTH))


def _u8(alpha: np.ndarray) -> np.ndarray:
    return np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8)


def _blur(coverage: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a uint8 coverage (OpenCV's 8-bit Gaussian is bit-exact), as float in [0, 1]."""
    return cv2.GaussianBlur(coverage, (0, 0), sigma).astype(np.float32) / 255


def _shifted(coverage: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate by whole pixels (positive: right and down), filling with 0."""
    h, w = coverage.shape
    out = np.zeros_like(coverage)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = coverage[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Grow a bool mask by one pixel, so a region also covers its antialiased fringe."""
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


# ------------------------------------------------------------------------------------------------
# compositing, in place on float32 RGB images, only inside the window a shape touches

Window = tuple[slice, slice]


def _window(coverage: np.ndarray, margin: int = 0) -> Window:
    """The bounding box of a coverage's non-zero pixels, grown by ``margin`` and clipped."""
    x, y, w, h = cv2.boundingRect(coverage)
    rows, cols = coverage.shape
    return slice(max(y - margin, 0), min(y + h + margin, rows)), slice(max(x - margin, 0), min(x + w + margin, cols))


def _paint(img: np.ndarray, coverage: np.ndarray, colour: RGB | Callable[[Window], np.ndarray], opacity: float = 1.0) -> None:
    """Alpha-composite ``colour`` (an RGB triple, or a function giving the (h, w, 3) colours of a window)."""
    win = _window(coverage)
    alpha = coverage[win].astype(np.float32) * (opacity / 255)
    layer = colour(win) if callable(colour) else np.asarray(colour, np.float32)
    img[win] += (layer - img[win]) * alpha[..., None]


def _darken(img: np.ndarray, amount: np.ndarray, strength: float) -> None:
    """Darken by ``strength`` times a [0, 1] map."""
    img *= (1 - strength * amount)[..., None]


def _lighten(img: np.ndarray, amount: np.ndarray, strength: float) -> None:
    """Move towards white by ``strength`` times a [0, 1] map."""
    img += (255 - img) * (strength * amount)[..., None]


def _cast_shadow(img: np.ndarray, coverage: np.ndarray, offset: int, sigma: float, strength: float) -> None:
    """The soft shadow of a shape lit from the top-left, falling to the bottom-right."""
    win = _window(coverage, offset + int(3 * sigma) + 2)
    _darken(img[win], _blur(_shifted(coverage[win], offset, offset), sigma), strength)


def _edge_band(coverage: np.ndarray, dx: int, dy: int, sigma: float) -> np.ndarray:
    """The soft band a shape loses when moved by (dx, dy): its edges facing (-dx, -dy)."""
    return np.clip(coverage.astype(np.float32) / 255 - _blur(_shifted(coverage, dx, dy), sigma), 0, 1)


# ------------------------------------------------------------------------------------------------
# rendering

_PAD = _TRAY_SHIFT  # the tray layer is rendered with this margin so any shift can be cut out of it


@lru_cache(maxsize=1)
def _tray_layer() -> tuple[np.ndarray, np.ndarray]:
    """The tray, its shadow, compartments and printed label as an affine map: ``out = bg * K + P``.

    Every compositing step is affine in the background colour, so rendering the static tray once over
    black (giving P) and once over white (giving K + P) captures it exactly. Both are padded by _PAD.
    """
    size = SIZE + 2 * _PAD

    def draw(paint):
        return _draw(paint, size)

    def tray_over(bg: float) -> np.ndarray:
        img = np.full((size, size, 3), bg, np.float32)
        tray = draw(lambda c: _round_rect(c, _TRAY, 12, _PAD))
        _cast_shadow(img, tray, offset=5, sigma=5.0, strength=0.55)
        _paint(img, tray, _CARD)
        _lighten(img, _edge_band(tray, 2, 2, 1.0), 0.25)  # a raised rim: lit top-left edges ...
        _darken(img, _edge_band(tray, -2, -2, 1.0), 0.25)  # ... and shaded bottom-right edges
        for box in (_LEFT, _RIGHT):
            floor = draw(lambda c: _round_rect(c, box, 5, _PAD))
            _paint(img, floor, _FLOOR)
            # A recess: its top and left walls shade the floor, its bottom and right walls face the light.
            _darken(img, _edge_band(floor, 5, 5, 3.0), 0.35)
            _lighten(img, _edge_band(floor, -2, -2, 1.0), 0.18)
        label = draw(lambda c: _round_rect(c, _LABEL, 3, _PAD))
        _cast_shadow(img, label, offset=1, sigma=1.0, strength=0.25)
        _paint(img, label, _PAPER)
        x, y = _LABEL[0] + _PAD + 8, _LABEL[1] + _PAD
        for text, dy, scale in (("PARTS KIT  A-2", 13, 0.42), ("2x ROUND   1x BAR", 26, 0.33)):
            ink = draw(lambda c: cv2.putText(c, text, (x, y + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA))
            _paint(img, ink, _INK)
        return img

    p = tray_over(0.0)
    return tray_over(1.0) - p, p


def _background(scene: Scene) -> np.ndarray:
    """Conveyor belt: a slate colour with low-frequency mottling."""
    coarse = np.random.default_rng(scene.texture_seed).integers(0, 256, (9, 9), dtype=np.uint8)
    mottle = cv2.resize(coarse, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    return (0.9 + 0.2 * mottle)[..., None] * np.asarray(_CONVEYOR, np.float32)


def _disc_colours(disc: Disc) -> Callable[[Window], np.ndarray]:
    """A domed plastic cap: diffuse shading of a hemisphere lit from the top-left, a glint, a moulded rim."""
    rim = _draw(lambda c: _ring(c, disc.x, disc.y, _ROUND_R - 2.5))

    def colours(win: Window) -> np.ndarray:
        u, v = (_X[win] - disc.x) / _ROUND_R, (_Y[win] - disc.y) / _ROUND_R
        height = np.sqrt(np.clip(1 - (u * u + v * v), 0, 1)) * 0.8 + 0.2
        # The surface normal (u, v, height) against the light direction (-0.39, -0.47, 0.79).
        diffuse = np.clip((-0.39 * u - 0.47 * v + 0.79 * height) / np.sqrt(u * u + v * v + height * height), 0, 1)
        glint = np.clip(1 - ((u + 0.35) ** 2 + (v + 0.4) ** 2) / 0.09, 0, 1) ** 2
        shade = (0.35 + 0.75 * diffuse) * (1 - 0.25 / 255 * rim[win].astype(np.float32))
        return np.asarray(_PALETTE[disc.colour], np.float32) * shade[..., None] + (90 * glint)[..., None]

    return colours


def _bar_colours(bar: Bar) -> Callable[[Window], np.ndarray]:
    """A steel rod: cylinder shading across its axis with a bright specular streak."""
    nx, ny = math.cos(math.radians(bar.angle)), -math.sin(math.radians(bar.angle))  # unit normal to the axis

    def colours(win: Window) -> np.ndarray:
        t = ((_X[win] - bar.x) * nx + (_Y[win] - bar.y) * ny) / (_BAR_WIDTH / 2)
        profile = np.sqrt(np.clip(1 - t * t, 0, 1))
        streak = np.clip(1 - ((t + 0.35) / 0.22) ** 2, 0, 1)
        return np.asarray(_STEEL, np.float32) * (0.5 + 0.5 * profile)[..., None] + (80 * streak)[..., None]

    return colours


def _draw_tag(img: np.ndarray, scene: Scene) -> None:
    sx, sy = scene.shift
    box = (_TAG[0] + sx, _TAG[1] + sy, _TAG[2] + sx, _TAG[3] + sy)
    _paint(img, _draw(lambda c: _round_rect(c, box, 2)), _PALETTE[scene.tag])
    outline = _draw(lambda c: cv2.rectangle(c, (_fx(box[0]), _fx(box[1])), (_fx(box[2]), _fx(box[3])), 255, 1, cv2.LINE_AA, _SHIFT))
    _paint(img, outline, _INK, opacity=0.5)


def _draw_items(img: np.ndarray, scene: Scene) -> None:
    items = [(_bar_coverage(b), _bar_colours(b)) for b in scene.bars]
    items += [(_disc_coverage(d), _disc_colours(d)) for d in scene.discs]
    offset, sigma, strength = _ITEM_SHADOW
    for coverage, _ in items:  # all shadows first, so no shadow falls on an item
        _cast_shadow(img, coverage, offset, sigma, strength)
    for coverage, colours in items:
        _paint(img, coverage, colours)


def render(scene: Scene) -> np.ndarray:
    """The (SIZE, SIZE, 3) uint8 RGB photo of a scene."""
    k, p = _tray_layer()
    sx, sy = scene.shift
    win = np.s_[_PAD - sy : _PAD - sy + SIZE, _PAD - sx : _PAD - sx + SIZE]
    img = _background(scene) * k[win] + p[win]
    _draw_tag(img, scene)
    _draw_items(img, scene)
    for stroke in scene.strokes:
        _paint(img, stroke.coverage, stroke.colour)
    light = scene.gain * (1 + scene.tilt[0] * _U + scene.tilt[1] * _V) * _VIGNETTE
    img *= light[..., None]
    img += np.random.default_rng(scene.noise_seed).standard_normal(img.shape, dtype=np.float32) * _NOISE_SIGMA
    photo = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(photo, (0, 0), _LENS_SIGMA)


# ------------------------------------------------------------------------------------------------
# sampling scenes and anomalies


def _uniform(rng: np.random.Generator, half_width: float) -> float:
    return float(rng.uniform(-half_width, half_width))


def sample_scene(rng: np.random.Generator) -> Scene:
    """A normal scene: two round items of the tag's colour on the left, one bar on the right."""
    sx, sy = (int(v) for v in rng.integers(-_TRAY_SHIFT, _TRAY_SHIFT + 1, 2))
    tag = str(rng.choice(sorted(_PALETTE)))
    discs = tuple(
        Disc(x + sx + _uniform(rng, _SLOT_JITTER), y + sy + _uniform(rng, _SLOT_JITTER), tag) for x, y in _SLOTS
    )
    bar = Bar(
        _BAR_CENTRE[0] + sx + _uniform(rng, _BAR_JITTER[0]),
        _BAR_CENTRE[1] + sy + _uniform(rng, _BAR_JITTER[1]),
        _uniform(rng, _BAR_MAX_ANGLE),
    )
    return Scene(
        shift=(sx, sy),
        tag=tag,
        discs=discs,
        bars=(bar,),
        strokes=(),
        gain=float(rng.uniform(0.93, 1.05)),
        tilt=(_uniform(rng, 0.06), _uniform(rng, 0.06)),
        texture_seed=int(rng.integers(2**31)),
        noise_seed=int(rng.integers(2**31)),
    )


def _item_region(coverage: np.ndarray) -> np.ndarray:
    """What an item drawn with this coverage changes: its footprint, the floor its shadow darkens by
    more than 10 %, and one pixel more for the lens blur."""
    offset, sigma, strength = _ITEM_SHADOW
    shadow = _blur(_shifted(coverage, offset, offset), sigma) * strength
    return _dilate((coverage > 0) | (shadow > 0.1))


def _missing_slot_region(scene: Scene, slot: tuple[float, float]) -> np.ndarray:
    """Where a round item of this slot, or its shadow, may lie: its disc widened by the slot's jitter."""
    x, y = slot[0] + scene.shift[0], slot[1] + scene.shift[1]
    return _item_region(_draw(lambda c: _circle(c, x, y, _ROUND_R + _SLOT_JITTER * math.sqrt(2), cv2.LINE_8)))


def _missing_bar_region(scene: Scene) -> np.ndarray:
    """Where the bar, or its shadow, may lie: the nominal capsule widened by the position and angle jitter."""
    sway = _BAR_LENGTH / 2 * math.sin(math.radians(_BAR_MAX_ANGLE))
    nominal = Bar(_BAR_CENTRE[0] + scene.shift[0], _BAR_CENTRE[1] + scene.shift[1], 0.0)
    width = math.ceil(_BAR_WIDTH + 2 * (_BAR_JITTER[0] + sway))
    return _item_region(_draw(lambda c: _capsule(c, nominal, width, 2 * _BAR_JITTER[1], cv2.LINE_8)))


def logical_anomaly(scene: Scene, kind: str, rng: np.random.Generator) -> tuple[Scene, list[Region]]:
    """Break one composition rule of a normal scene; returns the new scene and its defect regions."""
    if kind == "missing_round_item":
        i = int(rng.integers(len(scene.discs)))
        discs = scene.discs[:i] + scene.discs[i + 1 :]
        return replace(scene, discs=discs), [(kind, _missing_slot_region(scene, _SLOTS[i]))]
    if kind == "missing_bar":
        return replace(scene, bars=()), [(kind, _missing_bar_region(scene))]
    if kind == "extra_round_item":
        x = _EXTRA_SLOT[0] + scene.shift[0] + _uniform(rng, _EXTRA_JITTER)
        y = _EXTRA_SLOT[1] + scene.shift[1] + _uniform(rng, _EXTRA_JITTER)
        extra = Disc(x, y, scene.tag)
        return replace(scene, discs=scene.discs + (extra,)), [(kind, _item_region(_disc_coverage(extra)))]
    if kind == "wrong_colour":
        colour = str(rng.choice([c for c in sorted(_PALETTE) if c != scene.tag]))
        discs = tuple(replace(d, colour=colour) for d in scene.discs)
        return replace(scene, discs=discs), [(kind, _dilate(_disc_coverage(d) > 0)) for d in discs]
    if kind == "misplaced_item":
        i = int(rng.integers(len(scene.discs)))
        x = float(rng.uniform(*_MISPLACED_X)) + scene.shift[0]
        y = float(rng.uniform(*_MISPLACED_Y)) + scene.shift[1]
        moved = replace(scene.discs[i], x=x, y=y)
        discs = scene.discs[:i] + scene.discs[i + 1 :] + (moved,)
        regions = [("missing_round_item", _missing_slot_region(scene, _SLOTS[i])), (kind, _item_region(_disc_coverage(moved)))]
        return replace(scene, discs=discs), regions
    raise ValueError(f"unknown logical anomaly {kind!r}")


@dataclass(frozen=True)
class _Target:
    """The item a structural defect lands on, described in its own axis frame."""

    coverage: np.ndarray
    colour: RGB
    centre: np.ndarray  # (x, y)
    axis: np.ndarray  # unit vector along the long axis (a random direction for a round item)
    half_length: float  # half extent along the axis (to the end-cap centres for the bar)
    half_width: float  # half extent across it

    def point(self, along: float, across: float) -> np.ndarray:
        """The point at fractions (along, across) of the half extents from the centre."""
        normal = np.array([-self.axis[1], self.axis[0]])
        return self.centre + self.axis * along * self.half_length + normal * across * self.half_width

    def alpha(self) -> np.ndarray:
        return self.coverage.astype(np.float32) / 255


def _pick_target(scene: Scene, rng: np.random.Generator) -> _Target:
    """One of the scene's items, at random."""
    i = int(rng.integers(len(scene.bars) + len(scene.discs)))
    if i < len(scene.bars):
        bar = scene.bars[i]
        a = math.radians(bar.angle)
        axis = np.array([math.sin(a), math.cos(a)])
        return _Target(_bar_coverage(bar), _STEEL, np.array([bar.x, bar.y]), axis, _BAR_LENGTH / 2, _BAR_WIDTH / 2)
    disc = scene.discs[i - len(scene.bars)]
    a = rng.uniform(0, 2 * math.pi)
    axis = np.array([math.cos(a), math.sin(a)])
    return _Target(_disc_coverage(disc), _PALETTE[disc.colour], np.array([disc.x, disc.y]), axis, _ROUND_R, _ROUND_R)


def _darker(colour: RGB, factor: float) -> RGB:
    return (colour[0] * factor, colour[1] * factor, colour[2] * factor)


def structural_anomaly(scene: Scene, kind: str, rng: np.random.Generator) -> tuple[Scene, list[Region]]:
    """Damage the surface of a normal scene; returns the new scene and its one defect region."""
    if kind == "scratch":
        target = _pick_target(scene, rng)
        # Roughly along the item's axis (any direction on a round item), with one kink.
        a0 = math.atan2(target.axis[1], target.axis[0]) + rng.uniform(-0.5, 0.5)
        a1 = a0 + rng.uniform(-0.3, 0.3)
        length = rng.uniform(0.7, 0.95) * min(2 * target.half_length, 60.0)
        mid = target.point(rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3))
        ends = (mid - np.array([math.cos(a0), math.sin(a0)]) * length / 2, mid + np.array([math.cos(a1), math.sin(a1)]) * length / 2)
        points = np.array([ends[0], mid, ends[1]])
        groove = _draw(lambda c: _polyline(c, points + 1.0, 1)) * target.alpha()  # the shadowed lower lip
        streak = _draw(lambda c: _polyline(c, points, 2)) * target.alpha()
        strokes = (Stroke(_u8(groove / 255 * 0.7), _darker(target.colour, 0.35)), Stroke(_u8(streak / 255 * 0.9), _SCRATCH))
        region = _dilate((groove + streak) > 0)
    elif kind == "dent":
        target = _pick_target(scene, rng)
        x, y = target.point(rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3))
        axes = (rng.uniform(3.5, 5.5), rng.uniform(2.5, 4.0))
        tilt = rng.uniform(0, 180)
        pit = _draw(lambda c: _ellipse(c, x, y, axes, tilt)) / 255 * target.alpha()
        lit = _draw(lambda c: _ellipse(c, x + 1.5, y + 1.5, axes, tilt)) / 255 * target.alpha()
        rim = np.clip(lit - pit, 0, 1)  # the pit's far wall faces the light, which comes from the top-left
        strokes = (Stroke(_u8(pit * 0.9), _darker(target.colour, 0.3)), Stroke(_u8(rim * 0.8), _SCRATCH))
        region = _dilate((pit + rim) > 0)
    elif kind == "contamination":
        box = (_LEFT, _RIGHT)[int(rng.integers(2))]
        x = rng.uniform(box[0] + 14, box[2] - 14) + scene.shift[0]
        y = rng.uniform(box[1] + 14, box[3] - 14) + scene.shift[1]
        radii = rng.uniform(0.55, 1.0, 9) * rng.uniform(7, 12)
        angles = np.sort(rng.uniform(0, 2 * math.pi, 9))
        outline = np.array([(x + r * math.cos(a), y + r * math.sin(a)) for r, a in zip(radii, angles)])
        blob = cv2.GaussianBlur(_draw(lambda c: _polygon(c, outline)), (0, 0), 1.5)
        strokes = (Stroke(_u8(blob / 255 * 0.92), _DIRT),)
        region = _dilate(blob > 25)  # where the stain is at least 10 % opaque
    else:
        raise ValueError(f"unknown structural anomaly {kind!r}")
    return replace(scene, strokes=scene.strokes + strokes), [(kind, region)]


# ------------------------------------------------------------------------------------------------
# writing the dataset

# Folder -> seed stream of its images, so a count change in one folder leaves the others unchanged.
_STREAMS = {"train/good": 0, "validation/good": 1, "test/good": 2, "test/logical_anomalies": 3, "test/structural_anomalies": 4}


def demo_sample(seed: int, folder: str, index: int) -> tuple[Scene, Scene, list[Region]]:
    """(normal scene, scene as written, defect regions) of one image of the dataset.

    For a normal folder both scenes are the same; for an anomaly folder the first is the normal
    scene the anomaly was made from (useful to check that a region covers what changed).
    """
    rng = np.random.default_rng([seed, _STREAMS[folder], index])
    normal = sample_scene(rng)
    if folder == "test/logical_anomalies":
        return (normal, *logical_anomaly(normal, LOGICAL[index % len(LOGICAL)], rng))
    if folder == "test/structural_anomalies":
        return (normal, *structural_anomaly(normal, STRUCTURAL[index % len(STRUCTURAL)], rng))
    return normal, normal, []


# zlib level 1: level 6 costs ~40 ms per noisy 256x256 image, too slow for a 2 s render budget
_DEMO_PNG_LEVEL = 1


def _write_dataset(cat: Path, seed: int, counts: DemoCounts) -> None:
    values = {d.name: d.pixel_value for d in DEFECTS}
    sizes = {
        "train/good": counts.train,
        "validation/good": counts.validation,
        "test/good": counts.test_good,
        "test/logical_anomalies": counts.logical,
        "test/structural_anomalies": counts.structural,
    }
    for folder, n in sizes.items():
        (cat / folder).mkdir(parents=True)
        for i in range(n):
            _, scene, regions = demo_sample(seed, folder, i)
            write_png(cat / folder / f"{i:03d}.png", render(scene), compress_level=_DEMO_PNG_LEVEL)
            if regions:
                gt = cat / "ground_truth" / folder.split("/")[1] / f"{i:03d}"
                gt.mkdir(parents=True)
                for j, (name, mask) in enumerate(regions):
                    write_png(gt / f"{j:03d}.png", mask.astype(np.uint8) * np.uint8(values[name]), compress_level=_DEMO_PNG_LEVEL)
    rows = [
        {
            "defect_name": d.name,
            "pixel_value": d.pixel_value,
            # LOCO writes absolute thresholds as pixel counts (integers), relative ones as fractions.
            "saturation_threshold": d.saturation_threshold if d.relative_saturation else int(d.saturation_threshold),
            "relative_saturation": d.relative_saturation,
        }
        for d in DEFECTS
    ]
    (cat / "defects_config.json").write_text(json.dumps(rows, indent=4) + "\n")


def _check_counts(counts: DemoCounts) -> None:
    for name, n in vars(counts).items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SynthgenError(f"demo counts: {name} must be a non-negative integer, got {n!r}")
    if counts.train < 1:
        raise SynthgenError("demo counts: train must be at least 1")


def render_demo(root: str | Path, *, seed: int = 0, counts: DemoCounts = DemoCounts()) -> Path:
    """Render the demo into ``root/parts_box`` and return that folder.

    The files go to a hidden temporary folder beside it, renamed into place only when complete, so
    ``parts_box/`` never exists half-written. An existing ``parts_box/`` is an error.
    """
    _check_counts(counts)
    root = Path(root).expanduser()
    target = root / CATEGORY
    if target.exists():
        raise SynthgenError(f"{target}: already exists; remove it to render the demo again")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{CATEGORY}.", dir=root))
    tmp.chmod(ordinary_dir_mode())  # the rendered folder is readable as a plain mkdir's would be
    try:
        _write_dataset(tmp, seed, counts)
        (tmp / FILES_RECORD).write_text(json.dumps(_file_hashes(tmp), indent=1, sort_keys=True))
        try:
            os.rename(tmp, target)  # atomic; fails if another process renamed its copy in first
        except OSError:
            raise SynthgenError(f"{target}: appeared while rendering (another process?)") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def ensure_demo(root: str | Path | None = None) -> Path:
    """The folder holding ``parts_box/``, rendered with the default seed and counts if absent.

    Default: ``<cache_root>/datasets/demo-v1``. Safe when processes race: their renders are
    identical and the first rename wins.
    """
    root = Path(root).expanduser() if root is not None else cache_root() / "datasets" / CACHE_NAME
    problem = _render_problem(root / CATEGORY) if (root / CATEGORY).is_dir() else None
    if problem is not None:  # the cache is not trusted: a damaged render is rendered again
        warnings.warn(f"{root / CATEGORY}: damaged cached demo dataset ({problem}); rendering it again")
        shutil.rmtree(root / CATEGORY, ignore_errors=True)
    if not (root / CATEGORY).is_dir():
        try:
            render_demo(root)
        except SynthgenError:
            if not (root / CATEGORY).is_dir():
                raise
    return root


FILES_RECORD = ".sha256.json"  # in the rendered category folder: relative path -> sha256 of every file


def _file_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != FILES_RECORD}


def _render_problem(folder: Path) -> str | None:
    """None when every file of a rendered demo folder has its recorded sha256, else what differs."""
    try:
        recorded = json.loads((folder / FILES_RECORD).read_text())
    except (OSError, ValueError):
        return "no readable hash record"
    actual = _file_hashes(folder)
    if actual == recorded:
        return None
    differ = sorted(set(actual) ^ set(recorded)) or sorted(k for k in actual if actual[k] != recorded.get(k))
    return f"{differ[0]} differs from its record"


@register_reader("demo", categories=lambda root: [CATEGORY])
def read_demo(root: Path | None, category: str) -> DatasetIndex:
    """The demo category, rendered on first use (at ``root`` if given, else in the cache)."""
    return read_loco_layout("demo", ensure_demo(root), category, require_config=True)
