"""Anomaly texture sources, and DRAEM's random augmentation of the texture.

Texture sources (:class:`TextureBank`), chosen per build:
- ``dtd``: a folder of texture images (DTD's ``images/<class>/*.jpg``, or any folder searched
  recursively), as DRAEM uses. Keys are paths relative to the folder.
- ``normals``: the build's own normal images (in-distribution source, CutPaste-like); keys
  ``normal:<i>``.
- ``perlin``: coloured fractal Perlin noise; keys ``perlin:<seed>``. Each texture is a pure
  function of its seed, so rendering stays free of randomness.

Textures are (H, W, 3) uint8 arrays, and DRAEM's augmenters work on them as imgaug does: on 8-bit
values, rounding to uint8 after every augmenter. Point-wise augmenters are 256-entry lookup tables
(one per channel), colour conversions and warps are OpenCV's 8-bit ones (imgaug calls the same
OpenCV functions), so one augmenter costs well under a millisecond at 256 x 256.

DRAEM's texture augmentation (facts from its data_loader.py, MVTecDRAEMTrainDataset): it picks 3
distinct augmenters out of a list of 10 (``np.random.choice(10, 3, replace=False)``) and applies them
in the order drawn. The list, with the imgaug defaults that its arguments leave implicit (read from
imgaug 0.4.0's source):

====  ==========================================================  ======================================
 #    DRAEM / imgaug                                              here (uint8 RGB)
====  ==========================================================  ======================================
 0    GammaContrast((0.5, 2.0), per_channel=True)                 LUT round(255 (v/255) ** g_c),
                                                                  g_c ~ U(0.5, 2) per channel
 1    MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30))   the same: OpenCV 8-bit conversion to
      colour space uniform over YCrCb, HSV, HLS, Lab, Luv, YUV;   one of the six spaces, a LUT on its
      mul and add in random order, uint8 saturation after each     brightness channel (rounded and
                                                                  clipped after each step), and back
 2    pillike.EnhanceSharpness(), factor U(0, 2)                  PIL's: blend with the 3x3 SMOOTH
                                                                  filter (1 1 1 / 1 5 1 / 1 1 1) / 13,
                                                                  border pixels kept
 3    AddToHueAndSaturation((-50, 50), per_channel=True)          see below
 4    Solarize(0.5, threshold=(32, 128)): p = 0.5, t ~ U(32, 128)  LUT: v >= t -> 255 - v, p = 0.5
 5    Posterize(): nb_bits ~ U{1..8}, keep the top bits           LUT v & mask
 6    Invert() (p = 1)                                            LUT 255 - v
 7    pillike.Autocontrast(): cutoff ~ U{0..20} percent,          per channel LUT stretching the
      PIL semantics, per channel histogram                        cutoff-th lowest and highest values
                                                                  to 0 and 255 (rounded)
 8    pillike.Equalize()                                          per channel LUT, PIL's algorithm
 9    Affine(rotate=(-45, 45)): bilinear, fill 0                  cv2.warpAffine, bilinear, fill 0
====  ==========================================================  ======================================

Hue and saturation (imgaug AddToHueAndSaturation semantics, which converts with OpenCV's 8-bit HSV:
hue in half degrees, 0..179): two integers h, s ~ U{-50..50} are drawn independently
(per_channel=True). imgaug maps h to OpenCV's hue unit as ``int(h / 255 * 180)``, truncated toward
zero (at most +-35 units = +-70 degrees), and adds it modulo 180; s is added to the 0..255
saturation channel and clipped. Both are lookup tables on the HSV channels here, as in imgaug.

Known differences from DRAEM's run: DRAEM reads textures with OpenCV (BGR) and imgaug treats them
as RGB, so its luma weights and hue direction act on swapped channels; here the augmenters see true
RGB. Textures are resized with :func:`generator.imageio.resize_rgb` (area filter when shrinking),
DRAEM with cv2.resize's bilinear default. imgaug truncates in a few lookup tables (PIL's
autocontrast) where these round.

History: until issue 17 the augmenters ran on float tensors in [0, 1] without rounding between
them (3-10 ms each at 256 x 256); the 8-bit arithmetic changed the bytes of every augmented texture
(by one or two levels in most pixels), which is why builds made before and after differ.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..datasets._layout import check_entry
from ..errors import SynthgenError
from ..imageio import read_rgb, resize_rgb
from .perlin import draw_lattice_angles, fractal_perlin_noise
from .base import to_uint8_hwc
from .geometry import warp_rotate

TEXTURE_KINDS = ("dtd", "normals", "perlin")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# --------------------------------------------------------------------------------------------------
# DRAEM's ten augmenters: each draws its parameters (numpy) and applies them to a uint8 (H, W, 3) array

BRIGHTNESS_SPACES = ("YCrCb", "HSV", "HLS", "Lab", "Luv", "YUV")  # imgaug's default to_colorspace list
#: OpenCV 8-bit conversions to and from each space, and which channel is its brightness.
_BRIGHTNESS_CODES = {
    "YCrCb": (cv2.COLOR_RGB2YCrCb, cv2.COLOR_YCrCb2RGB, 0),
    "HSV": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB, 2),
    "HLS": (cv2.COLOR_RGB2HLS, cv2.COLOR_HLS2RGB, 1),
    "Lab": (cv2.COLOR_RGB2Lab, cv2.COLOR_Lab2RGB, 0),
    "Luv": (cv2.COLOR_RGB2Luv, cv2.COLOR_Luv2RGB, 0),
    "YUV": (cv2.COLOR_RGB2YUV, cv2.COLOR_YUV2RGB, 0),
}
#: PIL's ImageFilter.SMOOTH, the "degenerate" image of ImageEnhance.Sharpness.
_PIL_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13
_LEVELS = np.arange(256, dtype=np.float64)


def _to_lut(values: np.ndarray) -> np.ndarray:
    """Float table(s) of 256 entries -> uint8, rounded and saturated."""
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _apply_lut(x: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """One 256-entry table for every channel, or a (3, 256) table per channel."""
    if tables.ndim == 1:
        return cv2.LUT(x, tables)
    return cv2.LUT(x, np.ascontiguousarray(tables.T).reshape(256, 1, 3))


def _draw_gamma(rng: np.random.Generator) -> dict:
    return {"gamma": [float(g) for g in rng.uniform(0.5, 2.0, size=3)]}


def _apply_gamma(x: np.ndarray, p: dict) -> np.ndarray:
    return _apply_lut(x, _to_lut(255 * (_LEVELS / 255) ** np.array(p["gamma"])[:, None]))


def _draw_brightness(rng: np.random.Generator) -> dict:
    return {
        "colorspace": BRIGHTNESS_SPACES[int(rng.integers(len(BRIGHTNESS_SPACES)))],
        "mul": float(rng.uniform(0.8, 1.2)),
        "add": float(rng.uniform(-30.0, 30.0)),  # on the 0..255 scale
        "mul_first": bool(rng.random() < 0.5),  # imgaug Sequential([mul, add], random_order=True)
    }


def _apply_brightness(x: np.ndarray, p: dict) -> np.ndarray:
    multiplied = _to_lut(_LEVELS * p["mul"])
    added = _to_lut(_LEVELS + p["add"])
    relight = added[multiplied] if p["mul_first"] else multiplied[added]
    to_space, back, channel = _BRIGHTNESS_CODES[p["colorspace"]]
    tables = np.tile(_LEVELS.astype(np.uint8), (3, 1))  # identity on the two colour channels
    tables[channel] = relight
    return cv2.cvtColor(_apply_lut(cv2.cvtColor(x, to_space), tables), back)


def _draw_sharpness(rng: np.random.Generator) -> dict:
    return {"factor": float(rng.uniform(0.0, 2.0))}


def _apply_sharpness(x: np.ndarray, p: dict) -> np.ndarray:
    smooth = cv2.filter2D(x, -1, _PIL_SMOOTH, borderType=cv2.BORDER_REPLICATE)
    out = cv2.addWeighted(x, p["factor"], smooth, 1.0 - p["factor"], 0.0)  # rounded and saturated
    out[0], out[-1], out[:, 0], out[:, -1] = x[0], x[-1], x[:, 0], x[:, -1]  # PIL keeps the border
    return out


def _draw_hue_saturation(rng: np.random.Generator) -> dict:
    hue, saturation = (int(v) for v in rng.integers(-50, 51, size=2))
    return {"hue": hue, "saturation": saturation, "hue_degrees": 2 * int(hue / 255 * 180)}


def _apply_hue_saturation(x: np.ndarray, p: dict) -> np.ndarray:
    hue_table = (_LEVELS + int(p["hue"] / 255 * 180)) % 180  # OpenCV hue: 0..179 half degrees
    tables = np.stack([hue_table, _LEVELS + p["saturation"], _LEVELS])
    return cv2.cvtColor(_apply_lut(cv2.cvtColor(x, cv2.COLOR_RGB2HSV), _to_lut(tables)), cv2.COLOR_HSV2RGB)


def _draw_solarize(rng: np.random.Generator) -> dict:
    if rng.random() < 0.5:
        return {"applied": True, "threshold": float(rng.uniform(32.0, 128.0))}
    return {"applied": False}


def _apply_solarize(x: np.ndarray, p: dict) -> np.ndarray:
    if not p["applied"]:
        return x
    return _apply_lut(x, _to_lut(np.where(_LEVELS >= p["threshold"], 255 - _LEVELS, _LEVELS)))


def _draw_posterize(rng: np.random.Generator) -> dict:
    return {"bits": int(rng.integers(1, 9))}


def _apply_posterize(x: np.ndarray, p: dict) -> np.ndarray:
    return x & np.uint8((0xFF << (8 - p["bits"])) & 0xFF)  # zero the 8 - bits low bits


def _apply_invert(x: np.ndarray, p: dict) -> np.ndarray:
    return 255 - x


def _channel_histograms(x: np.ndarray) -> np.ndarray:
    """(3, 256) pixel counts per channel (int64)."""
    if x.shape[0] * x.shape[1] < 2**24:  # OpenCV counts in float32: exact below 2 ** 24 pixels, 5x faster
        return np.stack([cv2.calcHist([x], [c], None, [256], [0, 256]).reshape(256) for c in range(3)]).astype(np.int64)
    return np.stack([np.bincount(x[..., c].ravel(), minlength=256) for c in range(3)])


def _draw_autocontrast(rng: np.random.Generator) -> dict:
    return {"cutoff": int(rng.integers(0, 21))}


def _apply_autocontrast(x: np.ndarray, p: dict) -> np.ndarray:
    histograms = _channel_histograms(x)
    n = x.shape[0] * x.shape[1]
    cut = n * p["cutoff"] // 100  # PIL: ignore `cut` pixels at each end of the histogram
    tables = []
    for counts in histograms:
        below = np.cumsum(counts)
        low = int(np.searchsorted(below, cut, side="right"))  # the (cut + 1)-th smallest value
        high = int(np.searchsorted(below, n - cut, side="left"))  # the (cut + 1)-th largest value
        if high <= low:
            tables.append(_LEVELS)
        else:
            tables.append((_LEVELS - low) * (255.0 / (high - low)))
    return _apply_lut(x, _to_lut(np.stack(tables)))


def _apply_equalize(x: np.ndarray, p: dict) -> np.ndarray:
    tables = []
    for counts in _channel_histograms(x):  # PIL's ImageOps.equalize, channel by channel
        last = counts[np.flatnonzero(counts)[-1]]
        step = (counts.sum() - last) // 255
        if step == 0:
            tables.append(_LEVELS)
        else:
            tables.append(np.minimum((np.concatenate(([0], np.cumsum(counts)[:-1])) + step // 2) // step, 255))
    return _apply_lut(x, _to_lut(np.stack(tables)))


def _draw_rotate(rng: np.random.Generator) -> dict:
    return {"angle": float(rng.uniform(-45.0, 45.0))}


def _apply_rotate(x: np.ndarray, p: dict) -> np.ndarray:
    return warp_rotate(x, p["angle"], padding="zeros")


def _no_params(rng: np.random.Generator) -> dict:
    return {}


@dataclass(frozen=True)
class Augmenter:
    name: str
    draw: Callable[[np.random.Generator], dict]
    apply: Callable[[np.ndarray, dict], np.ndarray]


#: In DRAEM's order (the index is what its np.random.choice picks).
DRAEM_AUGMENTERS = (
    Augmenter("gamma", _draw_gamma, _apply_gamma),
    Augmenter("brightness", _draw_brightness, _apply_brightness),
    Augmenter("sharpness", _draw_sharpness, _apply_sharpness),
    Augmenter("hue_saturation", _draw_hue_saturation, _apply_hue_saturation),
    Augmenter("solarize", _draw_solarize, _apply_solarize),
    Augmenter("posterize", _draw_posterize, _apply_posterize),
    Augmenter("invert", _no_params, _apply_invert),
    Augmenter("autocontrast", _draw_autocontrast, _apply_autocontrast),
    Augmenter("equalize", _no_params, _apply_equalize),
    Augmenter("rotate", _draw_rotate, _apply_rotate),
)
_BY_NAME = {a.name: a for a in DRAEM_AUGMENTERS}
#: DRAEM: randAugmenter picks 3 of the list.
NUM_AUGMENTERS = 3


def draw_draem_augmenters(rng: np.random.Generator) -> list[dict]:
    """Choose 3 distinct augmenters in random order and draw their parameters: [{"op": name, ...}]."""
    chosen = rng.choice(len(DRAEM_AUGMENTERS), size=NUM_AUGMENTERS, replace=False)
    return [{"op": DRAEM_AUGMENTERS[i].name, **DRAEM_AUGMENTERS[i].draw(rng)} for i in chosen]


def augment_texture(texture: np.ndarray, ops: list[dict]) -> np.ndarray:
    """Apply drawn augmenters in order to one (H, W, 3) uint8 texture; returns a new uint8 array."""
    texture = np.ascontiguousarray(texture)
    for op in ops:
        texture = _BY_NAME[op["op"]].apply(texture, op)
    return texture if ops else texture.copy()


# --------------------------------------------------------------------------------------------------
# texture sources

#: Lattice of the first octave of a ``perlin`` texture: 2 ** U{1..3} cells per axis, then octaves
#: double it. Four octaves with persistence 0.5 (DRAEM's fractal defaults) reach 64 cells at most,
#: which still spans 4 pixels per cell at 256 x 256.
PERLIN_TEXTURE_BASE_EXPONENTS = (1, 4)
PERLIN_TEXTURE_OCTAVES = 4


def perlin_texture(seed: int, size: tuple[int, int]) -> np.ndarray:
    """Coloured fractal Perlin noise, (H, W, 3) uint8, a pure function of ``seed``.

    Each channel is an independent fractal noise stretched to [0, 255], so the colours vary freely.
    """
    rng = np.random.default_rng(seed)
    res_y, res_x = (2 ** int(e) for e in rng.integers(*PERLIN_TEXTURE_BASE_EXPONENTS, size=2))
    octave_angles = [
        [draw_lattice_angles(rng, res_y * 2**k, res_x * 2**k) for _ in range(3)] for k in range(PERLIN_TEXTURE_OCTAVES)
    ]
    noise = fractal_perlin_noise(octave_angles, size, "cpu")
    low = noise.amin(dim=(1, 2), keepdim=True)
    high = noise.amax(dim=(1, 2), keepdim=True)
    return to_uint8_hwc(((noise - low) / (high - low).clamp(min=1e-12))[None])[0]


def _list_texture_files(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise SynthgenError(f"{root}: texture folder not found")
    files = {
        p.relative_to(root).as_posix(): p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and check_entry(p).is_file()
    }
    if not files:
        raise SynthgenError(f"{root}: no texture images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return dict(sorted(files.items()))


class TextureBank:
    """The anomaly textures of one build, resized to the image size, behind a small LRU cache.

    ``keys()`` lists what a strategy's ``draw`` may choose (sorted, stable across runs);
    ``get(key)`` returns the (H, W, 3) uint8 texture (read-only: augmenters copy it). Textures stay
    on the CPU, where they are augmented; a strategy moves the result to its device. At most
    ``cache_mb`` MiB of textures are kept (about 1,000 at 256 x 256 by default), so memory stays flat
    however many textures a build uses.
    ``dtd_files``: the folder's files by key, already read (generator.executors.shipped), instead of
    reading ``dtd_root`` on this machine.
    """

    def __init__(
        self,
        kind: str,
        image_size: tuple[int, int],
        *,
        dtd_root: str | Path | None = None,
        dtd_files: Mapping[str, bytes] | None = None,
        normal_pixels: Callable[[int], np.ndarray] | None = None,
        num_normals: int = 0,
        perlin_seeds: int = 64,
        cache_mb: int = 192,
    ):
        self.kind = kind
        self.image_size = tuple(image_size)
        self._normal_pixels = normal_pixels
        self._files: dict[str, Path] = {}
        # The files' contents when an executor shipped them (no machine but the first needs the folder).
        self._contents: Mapping[str, bytes] = dtd_files or {}
        if kind == "dtd":
            if dtd_root is None:
                raise SynthgenError("--textures: the 'dtd' texture source needs a texture folder")
            if dtd_files is not None:
                self._files = {key: Path(dtd_root) / key for key in sorted(dtd_files)}
            else:
                self._files = _list_texture_files(Path(dtd_root))
            self._keys = list(self._files)
        elif kind == "normals":
            if normal_pixels is None or num_normals < 1:
                raise SynthgenError("--textures normals: the build has no normal images to use as textures")
            self._keys = sorted(f"normal:{i}" for i in range(num_normals))
        elif kind == "perlin":
            self._keys = sorted(f"perlin:{seed}" for seed in range(perlin_seeds))
        else:
            raise SynthgenError(f"--textures: unknown texture source '{kind}' (known: {', '.join(TEXTURE_KINDS)})")
        h, w = self.image_size
        self._capacity = max(1, cache_mb * 2**20 // (3 * h * w))
        self._key_set = set(self._keys)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def keys(self) -> list[str]:
        return list(self._keys)

    def get(self, key: str) -> np.ndarray:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        texture = self._load(key)
        texture.setflags(write=False)
        self._cache[key] = texture
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return texture

    def _load(self, key: str) -> np.ndarray:
        if key not in self._key_set:
            raise KeyError(f"no texture '{key}' in the {self.kind} texture source")
        if self.kind == "dtd":
            rgb = read_rgb(self._files[key], allow_gray=True, data=self._contents.get(key))
            return np.ascontiguousarray(resize_rgb(rgb, self.image_size))
        number = int(key.partition(":")[2])
        if self.kind == "normals":
            return np.array(self._normal_pixels(number), dtype=np.uint8)
        return perlin_texture(number, self.image_size)
