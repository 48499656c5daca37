"""Reading images and masks from disk, with the checks that turn bad files into one-line errors.

Every image that enters synthgen passes through :func:`read_rgb`; every ground-truth mask through
:func:`read_mask`. Both fully decode the file (so a truncated PNG fails here, not halfway through a
shard) and both name the file in any error.

Colour policy (documented in the README):
- 8-bit RGB and palette images without transparency are accepted as they are.
- 8-bit greyscale is accepted only when the caller says the whole category is greyscale
  (``allow_gray=True``; MVTec AD grid/screw/zipper are), and is replicated to three channels.
  A greyscale file among colour files is an error: it is almost always a stray or broken file.
- Alpha channels, 16-bit, float, CMYK and bilevel images are refused: converting them would
  silently change the data.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import SynthgenError

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageInfo:
    """What the file header says, without decoding pixels."""

    path: Path
    mode: str
    width: int
    height: int


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _open(path: Path, data: bytes | None = None) -> Image.Image:
    if data is None and not path.is_file():
        raise SynthgenError(f"{path}: file not found")
    # PIL warns for images above Image.MAX_IMAGE_PIXELS and raises above twice that. Both are refused
    # (a decompression bomb must not be decoded): the warning is made an error here, on each call, since
    # a caller (a test runner) may reset the process's warning filters at any time.
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    try:
        return Image.open(path if data is None else io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise SynthgenError(
            f"{path}: refused as a possible decompression bomb ({e}); synthgen reads images of at most "
            f"{Image.MAX_IMAGE_PIXELS} pixels"
        ) from None
    except UnidentifiedImageError:
        raise SynthgenError(f"{path}: not a readable image file") from None
    except OSError as e:
        raise SynthgenError(f"{path}: cannot open image ({e})") from None


def probe_image(path: str | Path) -> ImageInfo:
    """Header-only look at an image (cheap: used to check a whole dataset before building)."""
    path = Path(path)
    with _open(path) as im:
        return ImageInfo(path, im.mode, im.width, im.height)


def _refuse_16_bit(im: Image.Image, path: Path, what: str) -> None:
    """PIL opens a 16-bit-per-channel RGB PNG or TIFF as 8-bit mode RGB and drops the low byte while
    decoding; the file's raw mode (read before decoding) still says 16 bits."""
    for tile in im.tile:
        raw = tile.args if isinstance(tile.args, str) else (tile.args[0] if tile.args else "")
        if isinstance(raw, str) and ";16" in raw:
            raise SynthgenError(f"{path}: 16-bit {what} ({raw}); convert it to 8-bit")


def _decode(im: Image.Image, path: Path) -> None:
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as e:  # PIL raises OSError("image file is truncated ...")
        raise SynthgenError(f"{path}: truncated or corrupt image ({e})") from None


def read_rgb(path: str | Path, *, allow_gray: bool = False, data: bytes | None = None) -> np.ndarray:
    """Decode an image to an (H, W, 3) uint8 array, enforcing the colour policy above.

    data: the file's contents, already read (shipped from another machine); ``path`` then only names it.
    """
    path = Path(path)
    with _open(path, data) as im:
        _refuse_16_bit(im, path, "image")
        _decode(im, path)
        mode = im.mode
        if mode == "RGB":
            arr = np.asarray(im)
        elif mode == "P" and "transparency" not in im.info:
            arr = np.asarray(im.convert("RGB"))
        elif mode == "L":
            if not allow_gray:
                raise SynthgenError(
                    f"{path}: greyscale image in a colour dataset (mode L); "
                    "convert it to RGB or remove it"
                )
            arr = np.repeat(np.asarray(im)[:, :, None], 3, axis=2)
        elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
            raise SynthgenError(f"{path}: image has an alpha channel (mode {mode}); save it as 8-bit RGB")
        elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            raise SynthgenError(f"{path}: 16-bit image (mode {mode}); convert it to 8-bit RGB")
        elif mode == "F":
            raise SynthgenError(f"{path}: floating-point image (mode F); convert it to 8-bit RGB")
        else:
            raise SynthgenError(f"{path}: unsupported image mode {mode}; save it as 8-bit RGB")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def read_mask(path: str | Path, *, expect_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a ground-truth mask to (H, W) uint8, keeping its pixel values (LOCO's 255, 254, ...).

    ``expect_size`` is (width, height) of the image the mask belongs to.
    """
    path = Path(path)
    with _open(path) as im:
        _refuse_16_bit(im, path, "mask")
        _decode(im, path)
        mode = im.mode
        if mode in ("L", "P"):
            arr = np.asarray(im)
        elif mode == "1":
            arr = np.asarray(im, dtype=np.uint8) * 255
        elif mode == "RGB":
            rgb = np.asarray(im)
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                raise SynthgenError(f"{path}: mask has colour pixels; masks must be single-channel")
            arr = rgb[..., 0]
        elif mode.startswith("I"):
            raise SynthgenError(f"{path}: 16-bit mask (mode {mode}); masks must be 8-bit")
        else:
            raise SynthgenError(f"{path}: unsupported mask mode {mode}; masks must be 8-bit greyscale")
        size = (im.width, im.height)
    if expect_size is not None and size != tuple(expect_size):
        raise SynthgenError(
            f"{path}: mask is {size[0]}x{size[1]} but its image is {expect_size[0]}x{expect_size[1]}"
        )
    return np.ascontiguousarray(arr, dtype=np.uint8)


def resize_rgb(arr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image. Area filter when shrinking (no aliasing), bilinear when growing."""
    h, w = size_hw
    if arr.shape[:2] == (h, w):
        return arr
    shrinking = h * w < arr.shape[0] * arr.shape[1]
    return cv2.resize(arr, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_mask(arr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize a label/mask image with nearest neighbour, so pixel values (defect types) survive."""
    h, w = size_hw
    if arr.shape[:2] == (h, w):
        return arr
    return cv2.resize(arr, (w, h), interpolation=cv2.INTER_NEAREST)


def encode_png(arr: np.ndarray, *, compress_level: int = 6) -> bytes:
    """The bytes :func:`write_png` would write (for PNGs that live inside Parquet or tar files)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def write_png(path: str | Path, arr: np.ndarray, *, compress_level: int = 6) -> None:
    """Write uint8 (H, W) or (H, W, 3) as PNG, deterministically (no timestamps, fixed compression)."""
    Image.fromarray(np.ascontiguousarray(arr)).save(path, format="PNG", compress_level=compress_level)
