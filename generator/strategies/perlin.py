"""Perlin noise and DRAEM's Perlin anomaly masks: on the CPU one sample at a time (torch's matrix
products for the noise, OpenCV for the rotation), on other devices as one torch batch.

DRAEM (Zavrtanik et al., ICCV 2021; facts from its data_loader.py and perlin.py) makes its anomaly
mask like this:
- lattice resolution per axis ``2 ** randint(0, 6)`` (min_perlin_scale 0, perlin_scale 6, upper
  bound exclusive: 1, 2, ..., 32 cells), drawn independently for the two axes;
- a unit gradient of uniform random angle at each of the (res_y + 1) x (res_x + 1) lattice points;
- gradient noise with the quintic fade 6t^5 - 15t^4 + 10t^3, scaled by sqrt(2) so it spans [-1, 1];
  pixel i of an axis of length n sits at lattice coordinate i * res / n;
- the noise image rotated by U(-90, 90) degrees (imgaug Affine: bilinear, fill 0);
- mask = noise > 0.5.

The random parts (resolutions, angles, rotation) are drawn on the CPU by :func:`draw_draem_perlin`
from the sample's numpy Generator; :func:`perlin_noise` and :func:`perlin_mask` only compute. DRAEM
repeats each gradient over ``n // res`` pixels, which needs n divisible by res; evaluating the noise
at i * res / n directly is the same field when n is divisible and stays defined when it is not, so
no generate-then-crop step is needed.

Fractal Perlin noise (octaves of doubling resolution and halving amplitude, DRAEM's
``generate_fractal_noise_2d`` with persistence 0.5) gives the ``perlin`` texture source its images.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from .base import Recipe
from .geometry import rotate_images, warp_rotate

#: DRAEM: perlin_scale = 2 ** torch.randint(min_perlin_scale=0, perlin_scale=6) per axis.
SCALE_EXPONENTS = (0, 6)
#: DRAEM: self.rot = iaa.Affine(rotate=(-90, 90)) applied to the noise.
MASK_ROTATION_DEG = 90.0
#: DRAEM: threshold = 0.5; mask where noise > threshold.
MASK_THRESHOLD = 0.5
#: DRAEM's generate_fractal_noise_2d default persistence.
FRACTAL_PERSISTENCE = 0.5


def fade(t: torch.Tensor) -> torch.Tensor:
    """Perlin's quintic fade 6t^5 - 15t^4 + 10t^3 (zero first and second derivative at 0 and 1)."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def draw_lattice_angles(rng: np.random.Generator, res_y: int, res_x: int) -> np.ndarray:
    """Gradient angles in [0, 2 pi) at the (res_y + 1, res_x + 1) lattice points."""
    return rng.uniform(0.0, 2.0 * math.pi, size=(res_y + 1, res_x + 1))


@functools.lru_cache(maxsize=256)
def _axis_weights(n: int, res: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolation weights of the n pixels of one axis on its res + 1 lattice points: (n, res + 1) each.

    Pixel i sits at lattice coordinate u = i * res / n, in cell k = floor(u) at offset f = u - k.
    ``blend[i]`` holds the fade weights 1 - fade(f) at point k and fade(f) at k + 1; ``ramp[i]``
    holds the same weights times the offset to the point (f and f - 1), the gradient's lever arm.
    Cached (read-only): a build meets the same few (size, resolution) pairs in every sample.
    """
    u = torch.arange(n, dtype=dtype, device=device) * res / n
    cell = u.floor()
    f = u - cell
    t = fade(f)
    rows = torch.arange(n, device=device)
    k = cell.long()
    blend = torch.zeros(n, res + 1, dtype=dtype, device=device)
    ramp = torch.zeros(n, res + 1, dtype=dtype, device=device)
    blend[rows, k], blend[rows, k + 1] = 1 - t, t
    ramp[rows, k], ramp[rows, k + 1] = (1 - t) * f, t * (f - 1)
    return blend, ramp


def lattice_noise(
    angles: np.ndarray | torch.Tensor,
    size: tuple[int, int],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The Perlin noise of one lattice of gradient angles (res_y + 1, res_x + 1), (H, W) in [-1, 1].

    The noise is separable: at pixel (r, c) it is a sum over the four surrounding lattice points of
    fade weights along rows times fade weights along columns times the gradient's dot product with
    the offset, i.e. Wy_ramp @ cos(angles) @ Wx_blend^T + Wy_blend @ sin(angles) @ Wx_ramp^T with the
    per-axis weight matrices of :func:`_axis_weights` (DRAEM's gradient is (cos, sin) along (axis 0,
    axis 1)). Two thin matrix products replace per-pixel gathers.
    """
    h, w = size
    device = torch.device(device)
    lattice = torch.as_tensor(angles, dtype=dtype, device=device)
    row_blend, row_ramp = _axis_weights(h, lattice.shape[0] - 1, dtype, device)
    col_blend, col_ramp = _axis_weights(w, lattice.shape[1] - 1, dtype, device)
    noise = row_ramp @ (torch.cos(lattice) @ col_blend.T) + row_blend @ (torch.sin(lattice) @ col_ramp.T)
    return noise.mul_(math.sqrt(2.0))


def perlin_noise(
    angles: Sequence[np.ndarray | torch.Tensor],
    size: tuple[int, int],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Perlin noise fields, one per lattice in ``angles``, as a (B, H, W) tensor in [-1, 1].

    ``angles[b]`` has shape (res_y + 1, res_x + 1); its resolution may differ from sample to sample,
    and each output depends only on its own lattice (:func:`lattice_noise`).
    """
    out = torch.empty(len(angles), *size, dtype=dtype, device=device)
    for b, a in enumerate(angles):
        out[b] = lattice_noise(a, size, device, dtype)
    return out


def fractal_perlin_noise(
    octave_angles: Sequence[Sequence[np.ndarray]],
    size: tuple[int, int],
    device: torch.device | str = "cpu",
    persistence: float = FRACTAL_PERSISTENCE,
) -> torch.Tensor:
    """Sum of octaves ``persistence ** k * perlin_noise(octave_angles[k])``, (B, H, W).

    ``octave_angles[k]`` holds the B lattices of octave k (normally twice the resolution of k - 1).
    """
    noise = torch.zeros(len(octave_angles[0]), *size, device=device)
    for k, angles in enumerate(octave_angles):
        noise += persistence**k * perlin_noise(angles, size, device)
    return noise


def perlin_mask_array(
    angles: np.ndarray, rotation_deg: float, size: tuple[int, int], threshold: float = MASK_THRESHOLD
) -> np.ndarray:
    """One DRAEM mask on the CPU: Perlin noise rotated with OpenCV (bilinear, fill 0), ``> threshold``.

    Returns (H, W) bool. The CPU path of :func:`perlin_mask` and of the strategies' ``render_pixels``.
    """
    noise = lattice_noise(angles, size).numpy()
    return warp_rotate(noise, float(rotation_deg), padding="zeros") > threshold


def perlin_mask(
    angles: Sequence[np.ndarray | torch.Tensor],
    rotations_deg: Sequence[float],
    size: tuple[int, int],
    device: torch.device | str = "cpu",
    threshold: float = MASK_THRESHOLD,
) -> torch.Tensor:
    """DRAEM's binary mask: Perlin noise rotated (bilinear, fill 0), then ``noise > threshold``.

    Returns float32 (B, H, W) in {0, 1}. On the CPU sample by sample (:func:`perlin_mask_array`), on
    other devices as one batch (rotate_images' grid_sample).
    """
    if torch.device(device).type == "cpu":
        masks = [perlin_mask_array(a, r, size, threshold) for a, r in zip(angles, rotations_deg)]
        return torch.from_numpy(np.stack(masks)).float() if masks else torch.zeros(0, *size)
    noise = perlin_noise(angles, size, device)
    rotated = rotate_images(noise[:, None], rotations_deg, padding="zeros")[:, 0]
    return (rotated > threshold).float()


def draw_draem_perlin(rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """Draw one DRAEM Perlin mask: (params for Recipe.params, lattice angles for Recipe.arrays)."""
    res_y = 2 ** int(rng.integers(*SCALE_EXPONENTS))
    res_x = 2 ** int(rng.integers(*SCALE_EXPONENTS))
    angles = draw_lattice_angles(rng, res_y, res_x)
    rotation = float(rng.uniform(-MASK_ROTATION_DEG, MASK_ROTATION_DEG))
    params = {"perlin_scale": [res_y, res_x], "perlin_rotation": rotation, "perlin_threshold": MASK_THRESHOLD}
    return params, angles


def draem_perlin_mask_array(recipe: Recipe, size: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool mask drawn by :func:`draw_draem_perlin` into ``recipe``, on the CPU."""
    return perlin_mask_array(recipe.arrays["perlin_angles"], recipe.params["perlin_rotation"], size)


def draem_perlin_masks(recipes: Sequence[Recipe], size: tuple[int, int], device: torch.device | str) -> torch.Tensor:
    """Render the masks drawn by :func:`draw_draem_perlin` (stored as ``perlin_angles``), (B, H, W)."""
    return perlin_mask(
        [r.arrays["perlin_angles"] for r in recipes],
        [r.params["perlin_rotation"] for r in recipes],
        size,
        device,
        threshold=MASK_THRESHOLD,
    )
