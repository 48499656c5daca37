"""Perlin noise and DRAEM masks against an independent numpy reference of DRAEM's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from synthgen.generator.strategies.perlin import (
    MASK_THRESHOLD,
    draw_draem_perlin,
    draw_lattice_angles,
    fractal_perlin_noise,
    perlin_mask,
    perlin_noise,
)


def reference_perlin(shape: tuple[int, int], angles: np.ndarray) -> np.ndarray:
    """DRAEM's rand_perlin_2d_np, written out in numpy: gradients repeated over n // res pixels."""
    res = (angles.shape[0] - 1, angles.shape[1] - 1)
    reps = (shape[0] // res[0], shape[1] // res[1])
    u = (np.arange(shape[0]) * res[0] / shape[0]) % 1
    v = (np.arange(shape[1]) * res[1] / shape[1]) % 1
    fy, fx = np.meshgrid(u, v, indexing="ij")
    grads = np.stack([np.cos(angles), np.sin(angles)], -1)

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[dy : dy + res[0], dx : dx + res[1]].repeat(reps[0], 0).repeat(reps[1], 1)
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        return a + (b - a) * t

    ty, tx = fade(fy), fade(fx)
    return math.sqrt(2) * lerp(lerp(corner(0, 0), corner(1, 0), ty), lerp(corner(0, 1), corner(1, 1), ty), tx)


def random_lattices(seed: int, count: int, max_exp: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [draw_lattice_angles(rng, 2 ** int(rng.integers(0, max_exp)), 2 ** int(rng.integers(0, max_exp))) for _ in range(count)]


@pytest.mark.parametrize("shape", [(128, 128), (64, 128)])
def test_noise_matches_draem_formula_in_one_mixed_batch(shape):
    lattices = random_lattices(0, 12)
    noise = perlin_noise(lattices, shape, dtype=torch.float64).numpy()
    for field, angles in zip(noise, lattices):
        np.testing.assert_allclose(field, reference_perlin(shape, angles), atol=1e-12)


def test_noise_range_and_zero_at_lattice_points():
    lattices = random_lattices(1, 20)
    noise = perlin_noise(lattices, (96, 160))
    assert noise.abs().max() <= 1.0 + 1e-6
    for field, angles in zip(noise, lattices):
        res_y, res_x = angles.shape[0] - 1, angles.shape[1] - 1
        rows = [i for i in range(96) if (i * res_y) % 96 == 0]  # pixels exactly on lattice lines
        cols = [j for j in range(160) if (j * res_x) % 160 == 0]
        assert torch.all(field[rows][:, cols] == 0)
        assert field.abs().max() > 0.05  # and not zero everywhere


def test_noise_is_smooth_across_cell_boundaries():
    # Sampling a C1 field 4x finer shrinks its second differences ~16x; a kinked (C0) one only ~4x.
    lattice = random_lattices(2, 1, max_exp=3)
    coarse = perlin_noise(lattice, (64, 64), dtype=torch.float64)[0]
    fine = perlin_noise(lattice, (256, 256), dtype=torch.float64)[0]

    def max_second_difference(field: torch.Tensor) -> float:
        return float((field[2:] - 2 * field[1:-1] + field[:-2]).abs().max())

    assert max_second_difference(coarse) / max_second_difference(fine) > 10


def test_float32_agrees_with_float64():
    lattices = random_lattices(3, 8)
    single = perlin_noise(lattices, (100, 72), dtype=torch.float32)
    double = perlin_noise(lattices, (100, 72), dtype=torch.float64)
    assert (single.double() - double).abs().max() < 1e-5


def test_fractal_noise_is_the_sum_of_its_octaves():
    rng = np.random.default_rng(4)
    octaves = [[draw_lattice_angles(rng, 2 * 2**k, 4 * 2**k)] for k in range(3)]
    total = fractal_perlin_noise(octaves, (64, 64))
    expected = sum(0.5**k * perlin_noise(a, (64, 64)) for k, a in enumerate(octaves))
    assert torch.allclose(total, expected, atol=1e-6)


def reference_mask(shape: tuple[int, int], angles: np.ndarray, rotation: float) -> np.ndarray:
    """DRAEM's pipeline with scipy's rotation (bilinear, constant 0 outside) as the reference."""
    noise = reference_perlin(shape, angles)
    rotated = ndimage.rotate(noise, rotation, reshape=False, order=1, mode="grid-constant", cval=0.0)
    return (rotated > MASK_THRESHOLD).astype(np.float32)


def test_draem_masks_match_reference_and_have_draem_statistics():
    rng = np.random.default_rng(5)
    draws = [draw_draem_perlin(rng) for _ in range(200)]
    masks = perlin_mask([a for _, a in draws], [p["perlin_rotation"] for p, _ in draws], (128, 128))
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    areas = masks.flatten(1).mean(1).numpy()
    reference = np.array([reference_mask((128, 128), a, p["perlin_rotation"]).mean() for p, a in draws])
    assert np.abs(areas - reference).max() < 0.002  # only pixels within float error of 0.5 may flip
    # Properties of DRAEM's mask distribution: many small blobs or none, never most of the image.
    assert 0.03 < areas.mean() < 0.15
    assert 0.02 < (areas == 0).mean() < 0.5
    assert areas.max() < 0.5
    scales = np.array([p["perlin_scale"] for p, _ in draws])
    assert set(np.unique(scales)) == {1, 2, 4, 8, 16, 32}
    assert all(-90 <= p["perlin_rotation"] <= 90 for p, _ in draws)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    rng = np.random.default_rng(6)
    draws = [draw_draem_perlin(rng) for _ in range(16)]
    angles, rotations = [a for _, a in draws], [p["perlin_rotation"] for p, _ in draws]
    cpu = perlin_noise(angles, (256, 256))
    cuda = perlin_noise(angles, (256, 256), device="cuda").cpu()
    assert (cpu - cuda).abs().max() < 1e-5
    mask_cpu = perlin_mask(angles, rotations, (256, 256))
    mask_cuda = perlin_mask(angles, rotations, (256, 256), device="cuda").cpu()
    assert (mask_cpu != mask_cuda).float().mean() < 1e-4  # pixels at the threshold may flip
