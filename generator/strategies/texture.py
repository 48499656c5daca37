"""Anomaly texture sources, and DRAEM's random augmentation of the texture.

Texture sources (:class:`TextureBank`), chosen per build:
- ``dtd``: a folder of texture images (DTD's ``images/<class>/*.jpg``, or any folder searched
  recursively), as DRAEM uses. Keys are paths relative to the folder.
- ``normals``: the build's own normal images (in-distribution source, CutPaste-like); keys
  ``normal:<i>``.
- ``perlin``: coloured fractal Perlin noise; keys ``perlin:<seed>``. Each texture is a pure
  function of its seed, so rendering stays free of randomness.

DRAEM's texture augmentation (facts from its data_loader.py, MVTecDRAEMTrainDataset): it picks 3
distinct augmenters out of a list of 10 (``np.random.choice(10, 3, replace=False)``) and applies them
in the order drawn. The list, with the imgaug defaults that its arguments leave implicit (read from
imgaug 0.4.0's source):

====  ==========================================================  ======================================
 #    DRAEM / imgaug                                              here (float RGB in [0, 1])
====  ==========================================================  ======================================
 0    GammaContrast((0.5, 2.0), per_channel=True)                 x ** g_c, g_c ~ U(0.5, 2) per channel
 1    MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30))   the brightness channel of a colour space
      colour space uniform over YCrCb, HSV, HLS, Lab, Luv, YUV;   drawn from the same six, multiplied and
      mul and add in random order, uint8 saturation after each     shifted (add/255) in random order,
                                                                  clipped to [0, 1] after each step
 2    pillike.EnhanceSharpness(), factor U(0, 2)                  TF.adjust_sharpness (PIL's kernel)
 3    AddToHueAndSaturation((-50, 50), per_channel=True)          see below
 4    Solarize(0.5, threshold=(32, 128)): p = 0.5, t ~ U(32, 128)  TF.solarize(x, t / 255) with p = 0.5
 5    Posterize(): nb_bits ~ U{1..8}, keep the top bits           same on the 8-bit value round(255 x)
 6    Invert() (p = 1)                                            1 - x
 7    pillike.Autocontrast(): cutoff ~ U{0..20} percent,          per channel stretch between the
      PIL semantics, per channel histogram                        cutoff-th lowest and highest values
 8    pillike.Equalize()                                          TF.equalize (PIL's algorithm)
 9    Affine(rotate=(-45, 45)): bilinear, fill 0                  rotate_images(..., "zeros")
====  ==========================================================  ======================================

Hue and saturation (imgaug AddToHueAndSaturation semantics): two integers h, s ~ U{-50..50} are
drawn independently (per_channel=True). imgaug maps h to OpenCV's hue unit (half degrees, full
circle = 180) as ``int(h / 255 * 180)``, truncated toward zero, i.e. at most +-35 units = +-70
degrees, and adds it modulo 180; s is added to the 0..255 saturation channel and clipped. Here the
hue shift is ``int(h / 255 * 180) / 180`` of a full turn (torchvision's ``adjust_hue`` unit: 0.5 =
half a turn), and the saturation shift is ``s / 255`` added to HSV saturation in [0, 1] and clipped.
torchvision's ``adjust_saturation`` cannot express this: it multiplies (blends with grey) instead of
adding, so both shifts are done in one HSV round trip here (the hue part equals ``adjust_hue``).

Known differences from DRAEM's run: DRAEM reads textures with OpenCV (BGR) and imgaug treats them
as RGB, so its luma weights and hue direction act on swapped channels; here the augmenters see true
RGB. imgaug rounds to uint8 after every augmenter; here values stay float in [0, 1]. Textures are
resized with :func:`generator.imageio.resize_rgb` (area filter when shrinking), DRAEM with
cv2.resize's bilinear default.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from ..datasets._layout import check_entry
from ..errors import SynthgenError
from ..imageio import read_rgb, resize_rgb
from .perlin import draw_lattice_angles, fractal_perlin_noise
from .rotation import rotate_images

TEXTURE_KINDS = ("dtd", "normals", "perlin")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# --------------------------------------------------------------------------------------------------
# colour spaces (float RGB in [0, 1], shape (3, H, W))

#: ITU-R BT.601 luma, OpenCV's Y of YCrCb and YUV.
LUMA = (0.299, 0.587, 0.114)
#: OpenCV's sRGB (D65) -> XYZ matrix and white point, used by its Lab and Luv conversions.
RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
XYZ_TO_RGB = torch.linalg.inv(RGB_TO_XYZ)
WHITE_X, WHITE_Z = 0.950456, 1.088754
#: CIE u', v' of the white point (Luv).
WHITE_U = 4 * WHITE_X / (WHITE_X + 15 + 3 * WHITE_Z)
WHITE_V = 9 / (WHITE_X + 15 + 3 * WHITE_Z)
_DELTA = 6.0 / 29.0  # CIE Lab's linear-segment knee


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den > 0, else 0."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), torch.zeros_like(num))


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0, 1)
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def _cie_f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _DELTA**3, t.clamp(min=0) ** (1 / 3), t / (3 * _DELTA**2) + 4 / 29)


def _cie_f_inv(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29))


def _to_xyz(rgb: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,jhw->ihw", RGB_TO_XYZ.to(rgb), srgb_to_linear(rgb))


def _from_xyz(xyz: torch.Tensor) -> torch.Tensor:
    return linear_to_srgb(torch.einsum("ij,jhw->ihw", XYZ_TO_RGB.to(xyz), xyz))


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB -> HSV with hue as a fraction of a turn in [0, 1), S and V in [0, 1]."""
    r, g, b = rgb
    value = rgb.amax(0)
    chroma = value - rgb.amin(0)
    sector = torch.where(
        value == r,
        _safe_div(g - b, chroma) % 6,
        torch.where(value == g, _safe_div(b - r, chroma) + 2, _safe_div(r - g, chroma) + 4),
    )
    hue = torch.where(chroma > 0, sector / 6, torch.zeros_like(sector))
    return torch.stack([hue, _safe_div(chroma, value), value])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    hue, saturation, value = hsv
    channels = []
    for n in (5, 3, 1):  # R, G, B
        k = (n + hue * 6) % 6
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels)


def _scale_brightness(rgb: torch.Tensor, space: str, relight: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Replace the brightness channel B of ``space`` by relight(B), keeping the other channels.

    B in [0, 1] is the 8-bit channel imgaug edits, divided by 255: Y (YCrCb, YUV), V (HSV), L (HLS),
    L* / 100 (Lab, Luv; OpenCV stores L* * 255 / 100).
    """
    if space in ("YCrCb", "YUV"):  # chroma fixed: every channel moves by the change of luma
        luma = torch.einsum("c,chw->hw", torch.tensor(LUMA).to(rgb), rgb)
        return rgb + (relight(luma) - luma)
    if space == "HSV":  # hue and saturation fixed: the channels scale with V
        value = rgb.amax(0)
        new = relight(value)
        return torch.where(value > 0, rgb * _safe_div(new, value), new)
    if space == "HLS":  # hue and saturation fixed: chroma scales with 1 - |2L - 1|
        lightness = (rgb.amax(0) + rgb.amin(0)) / 2
        new = relight(lightness)
        room, new_room = 1 - (2 * lightness - 1).abs(), 1 - (2 * new - 1).abs()
        return new + (rgb - lightness) * _safe_div(new_room, room)
    xyz = _to_xyz(rgb)
    fy = _cie_f(xyz[1])
    lightness = (116 * fy - 16) / 100
    new = relight(lightness)
    if space == "Lab":  # a* and b* fixed: f(X), f(Y), f(Z) all move by dL* / 116
        shift = (new - lightness) * 100 / 116
        fx, fz = _cie_f(xyz[0] / WHITE_X), _cie_f(xyz[2] / WHITE_Z)
        return _from_xyz(
            torch.stack([WHITE_X * _cie_f_inv(fx + shift), _cie_f_inv(fy + shift), WHITE_Z * _cie_f_inv(fz + shift)])
        )
    # Luv: u* = 13 L* (u' - u'n) and v* fixed, so (u' - u'n) scales with L* / L*_new
    denom = xyz[0] + 15 * xyz[1] + 3 * xyz[2]
    u = torch.where(denom > 0, _safe_div(4 * xyz[0], denom), WHITE_U)  # black has the white's chromaticity
    v = torch.where(denom > 0, _safe_div(9 * xyz[1], denom), WHITE_V)
    ratio = _safe_div(lightness, new)
    u, v = WHITE_U + (u - WHITE_U) * ratio, WHITE_V + (v - WHITE_V) * ratio
    y = _cie_f_inv((100 * new + 16) / 116)
    return _from_xyz(torch.stack([y * 9 * u / (4 * v), y, y * (12 - 3 * u - 20 * v) / (4 * v)]))


# --------------------------------------------------------------------------------------------------
# DRAEM's ten augmenters: each draws its parameters (CPU, numpy) and applies them (device, torch)

BRIGHTNESS_SPACES = ("YCrCb", "HSV", "HLS", "Lab", "Luv", "YUV")  # imgaug's default to_colorspace list


def _draw_gamma(rng: np.random.Generator) -> dict:
    return {"gamma": [float(g) for g in rng.uniform(0.5, 2.0, size=3)]}


def _apply_gamma(x: torch.Tensor, p: dict) -> torch.Tensor:
    return x.clamp(0, 1) ** torch.tensor(p["gamma"]).to(x)[:, None, None]


def _draw_brightness(rng: np.random.Generator) -> dict:
    return {
        "colorspace": BRIGHTNESS_SPACES[int(rng.integers(len(BRIGHTNESS_SPACES)))],
        "mul": float(rng.uniform(0.8, 1.2)),
        "add": float(rng.uniform(-30.0, 30.0)),  # on the 0..255 scale
        "mul_first": bool(rng.random() < 0.5),  # imgaug Sequential([mul, add], random_order=True)
    }


def _apply_brightness(x: torch.Tensor, p: dict) -> torch.Tensor:
    def relight(channel: torch.Tensor) -> torch.Tensor:
        multiplied = lambda c: (c * p["mul"]).clamp(0, 1)  # noqa: E731
        added = lambda c: (c + p["add"] / 255.0).clamp(0, 1)  # noqa: E731
        return added(multiplied(channel)) if p["mul_first"] else multiplied(added(channel))

    return _scale_brightness(x, p["colorspace"], relight)


def _draw_sharpness(rng: np.random.Generator) -> dict:
    return {"factor": float(rng.uniform(0.0, 2.0))}


def _apply_sharpness(x: torch.Tensor, p: dict) -> torch.Tensor:
    return TF.adjust_sharpness(x, p["factor"])


def _draw_hue_saturation(rng: np.random.Generator) -> dict:
    hue, saturation = (int(v) for v in rng.integers(-50, 51, size=2))
    return {"hue": hue, "saturation": saturation, "hue_degrees": 2 * int(hue / 255 * 180)}


def _apply_hue_saturation(x: torch.Tensor, p: dict) -> torch.Tensor:
    hsv = rgb_to_hsv(x)
    hue = (hsv[0] + int(p["hue"] / 255 * 180) / 180) % 1.0
    saturation = (hsv[1] + p["saturation"] / 255).clamp(0, 1)
    return hsv_to_rgb(torch.stack([hue, saturation, hsv[2]]))


def _draw_solarize(rng: np.random.Generator) -> dict:
    if rng.random() < 0.5:
        return {"applied": True, "threshold": float(rng.uniform(32.0, 128.0))}
    return {"applied": False}


def _apply_solarize(x: torch.Tensor, p: dict) -> torch.Tensor:
    return TF.solarize(x, p["threshold"] / 255.0) if p["applied"] else x


def _draw_posterize(rng: np.random.Generator) -> dict:
    return {"bits": int(rng.integers(1, 9))}


def _apply_posterize(x: torch.Tensor, p: dict) -> torch.Tensor:
    step = 2 ** (8 - p["bits"])  # zero the 8 - bits low bits of the 8-bit value
    return torch.floor(torch.round(x * 255) / step) * step / 255


def _apply_invert(x: torch.Tensor, p: dict) -> torch.Tensor:
    return 1.0 - x


def _draw_autocontrast(rng: np.random.Generator) -> dict:
    return {"cutoff": int(rng.integers(0, 21))}


def _apply_autocontrast(x: torch.Tensor, p: dict) -> torch.Tensor:
    flat = x.reshape(3, -1)
    cut = flat.shape[1] * p["cutoff"] // 100  # PIL: ignore `cut` pixels at each end of the histogram
    # the (cut)-th smallest and largest values per channel: two selections, not a full sort
    low = flat.kthvalue(cut + 1, dim=1).values[:, None, None]
    high = flat.kthvalue(flat.shape[1] - cut, dim=1).values[:, None, None]
    stretched = (x - low) / torch.where(high > low, high - low, torch.ones_like(high))
    return torch.where(high > low, stretched.clamp(0, 1), x)


def _apply_equalize(x: torch.Tensor, p: dict) -> torch.Tensor:
    return TF.equalize(x)


def _draw_rotate(rng: np.random.Generator) -> dict:
    return {"angle": float(rng.uniform(-45.0, 45.0))}


def _apply_rotate(x: torch.Tensor, p: dict) -> torch.Tensor:
    return rotate_images(x[None], [p["angle"]], padding="zeros")[0]


def _no_params(rng: np.random.Generator) -> dict:
    return {}


@dataclass(frozen=True)
class Augmenter:
    name: str
    draw: Callable[[np.random.Generator], dict]
    apply: Callable[[torch.Tensor, dict], torch.Tensor]


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


def augment_texture(texture: torch.Tensor, ops: list[dict]) -> torch.Tensor:
    """Apply drawn augmenters in order to one (3, H, W) texture; the result stays in [0, 1]."""
    for op in ops:
        texture = _BY_NAME[op["op"]].apply(texture, op).clamp(0, 1)
    return texture


# --------------------------------------------------------------------------------------------------
# texture sources

#: Lattice of the first octave of a ``perlin`` texture: 2 ** U{1..3} cells per axis, then octaves
#: double it. Four octaves with persistence 0.5 (DRAEM's fractal defaults) reach 64 cells at most,
#: which still spans 4 pixels per cell at 256 x 256.
PERLIN_TEXTURE_BASE_EXPONENTS = (1, 4)
PERLIN_TEXTURE_OCTAVES = 4


def perlin_texture(seed: int, size: tuple[int, int], device: torch.device | str) -> torch.Tensor:
    """Coloured fractal Perlin noise, (3, H, W) in [0, 1], a pure function of ``seed``.

    Each channel is an independent fractal noise stretched to [0, 1], so the colours vary freely.
    """
    rng = np.random.default_rng(seed)
    res_y, res_x = (2 ** int(e) for e in rng.integers(*PERLIN_TEXTURE_BASE_EXPONENTS, size=2))
    octave_angles = [
        [draw_lattice_angles(rng, res_y * 2**k, res_x * 2**k) for _ in range(3)] for k in range(PERLIN_TEXTURE_OCTAVES)
    ]
    noise = fractal_perlin_noise(octave_angles, size, device)
    low = noise.amin(dim=(1, 2), keepdim=True)
    high = noise.amax(dim=(1, 2), keepdim=True)
    return (noise - low) / (high - low).clamp(min=1e-12)


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
    ``get(key)`` returns the (3, H, W) float32 texture on ``device`` (treat it as read-only). At most
    ``cache_mb`` MiB of textures are kept, so memory stays flat however many textures a build uses.
    ``dtd_files``: the folder's files by key, already read (generator.executors.shipped), instead of
    reading ``dtd_root`` on this machine.
    """

    def __init__(
        self,
        kind: str,
        image_size: tuple[int, int],
        device: torch.device | str,
        *,
        dtd_root: str | Path | None = None,
        dtd_files: Mapping[str, bytes] | None = None,
        normal_image: Callable[[int], torch.Tensor] | None = None,
        num_normals: int = 0,
        perlin_seeds: int = 64,
        cache_mb: int = 256,
    ):
        self.kind = kind
        self.image_size = tuple(image_size)
        self.device = torch.device(device)
        self._normal_image = normal_image
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
            if normal_image is None or num_normals < 1:
                raise SynthgenError("--textures normals: the build has no normal images to use as textures")
            self._keys = sorted(f"normal:{i}" for i in range(num_normals))
        elif kind == "perlin":
            self._keys = sorted(f"perlin:{seed}" for seed in range(perlin_seeds))
        else:
            raise SynthgenError(f"--textures: unknown texture source '{kind}' (known: {', '.join(TEXTURE_KINDS)})")
        h, w = self.image_size
        self._capacity = max(1, cache_mb * 2**20 // (3 * h * w * 4))
        self._key_set = set(self._keys)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def keys(self) -> list[str]:
        return list(self._keys)

    def get(self, key: str) -> torch.Tensor:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        texture = self._load(key)
        self._cache[key] = texture
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return texture

    def _load(self, key: str) -> torch.Tensor:
        if key not in self._key_set:
            raise KeyError(f"no texture '{key}' in the {self.kind} texture source")
        if self.kind == "dtd":
            rgb = resize_rgb(read_rgb(self._files[key], allow_gray=True, data=self._contents.get(key)), self.image_size)
            return torch.from_numpy(rgb).permute(2, 0, 1).to(self.device, torch.float32).div_(255.0)
        number = int(key.partition(":")[2])
        if self.kind == "normals":
            return self._normal_image(number).to(self.device, torch.float32)
        return perlin_texture(number, self.image_size, self.device)
