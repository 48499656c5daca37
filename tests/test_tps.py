"""Thin-plate-spline warps (generator/models/tps.py): DeepSIM's augmentation, checked against
independent references (scipy's RBF thin-plate spline, blob positions, identity)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.interpolate import RBFInterpolator

from synthgen.generator.models.tps import (
    apply_tps,
    control_points,
    draw_tps,
    tps_backward_map,
    tps_sampling_grid,
    warp_pair,
)

CORNERS = ([0, 0, -1, -1], [0, -1, 0, -1])


def _shifts(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([draw_tps(rng) for _ in range(n)])


def _canny_scene(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic photo of a few discs and bars and its Canny edge map (uint8 0/255)."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 40, np.uint8)
    for _ in range(4):
        centre = tuple(int(v) for v in rng.integers(size // 8, size - size // 8, 2))
        cv2.circle(image, centre, int(rng.integers(size // 16, size // 6)), tuple(int(v) for v in rng.integers(80, 256, 3)), -1)
    cv2.rectangle(image, (size // 5, size // 2), (4 * size // 5, size // 2 + size // 10), (250, 250, 250), -1)
    return cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 50, 150), image


def test_draw_tps_ranges_corners_and_reproducibility():
    shifts = _shifts(0, 200)
    assert shifts.shape == (200, 3, 3, 2)
    assert np.all(shifts[:, CORNERS[0], CORNERS[1]] == 0)
    inner = np.delete(shifts.reshape(200, 9, 2), [0, 2, 6, 8], axis=1)
    assert np.abs(inner).max() <= 0.1 and np.abs(inner).max() > 0.09  # U(-0.1, 0.1) fills its range
    assert np.array_equal(shifts, _shifts(0, 200))
    assert not np.array_equal(shifts, _shifts(1, 200))


def test_zero_displacement_is_identity():
    images = torch.rand(3, 4, 40, 56, generator=torch.Generator().manual_seed(0))
    warped = apply_tps(images, np.zeros((3, 3, 3, 2)))
    assert torch.allclose(warped, images, atol=1e-5, rtol=0)


def test_control_points_map_to_their_targets_and_corners_stay():
    shifts = _shifts(3, 4)
    height, width = 48, 80
    sources = torch.as_tensor(control_points(), dtype=torch.float32).reshape(1, 9, 2)
    targets = sources + 2 * torch.as_tensor(shifts, dtype=torch.float32).reshape(4, 9, 2)
    # The backward map sends each target back to its control point; corners are fixed points.
    mapped = tps_backward_map(shifts, targets, height, width)
    assert torch.allclose(mapped, sources.expand(4, -1, -1), atol=1e-5)
    corners = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]])
    assert torch.allclose(tps_backward_map(shifts, corners, height, width), corners.expand(4, -1, -1), atol=1e-5)


def test_sampling_grid_matches_scipy_thin_plate_spline():
    """Independent reference: scipy's RBFInterpolator (kernel r^2 log r, linear polynomial) solved in pixels."""
    height, width = 48, 80
    shifts = _shifts(5, 3)
    grid = tps_sampling_grid(shifts, height, width).numpy()
    to_px = np.array([width, height]) / 2
    sources = ((control_points() + 1) * to_px).reshape(-1, 2)
    ys, xs = np.mgrid[0:height, 0:width]
    centres = np.stack([xs + 0.5, ys + 0.5], axis=-1).reshape(-1, 2)
    for i in range(3):
        targets = sources + (shifts[i] * [width, height]).reshape(-1, 2)
        reference = RBFInterpolator(targets, sources, kernel="thin_plate_spline", degree=1)(centres)
        ours = ((grid[i] + 1) * to_px).reshape(-1, 2)
        assert np.abs(ours - reference).max() < 1e-3  # pixels


def test_warp_moves_content_at_a_control_point_to_its_target():
    """A blob painted on the centre control point ends up displaced by that point's shift."""
    size = 128
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    blob = np.exp(-((xs - size / 2) ** 2 + (ys - size / 2) ** 2) / (2 * 1.5**2)).astype(np.float32)
    shifts = np.zeros((1, 3, 3, 2))
    shifts[0, 1, 1] = (0.07, -0.05)  # the centre moves right and up
    shifts[0, 0, 1] = (0.02, 0.03)
    warped = apply_tps(torch.from_numpy(blob)[None, None], shifts)[0, 0].numpy()
    centroid = np.array([(warped * xs).sum(), (warped * ys).sum()]) / warped.sum()
    expected = np.array([size / 2 + 0.07 * size, size / 2 - 0.05 * size])
    assert np.abs(centroid - expected).max() < 0.5


def test_edge_map_stays_binary_and_keeps_its_lines():
    edge, image = _canny_scene(96, seed=1)
    edges = torch.from_numpy(edge).float().div(255)[None, None].repeat(2, 1, 1, 1)
    images = torch.from_numpy(image).float().div(255).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    warped_edges, warped_images = warp_pair(edges, images, _shifts(7, 2), binary_edges=True)
    assert set(torch.unique(warped_edges).tolist()) <= {0.0, 1.0}
    # Rounding after the bilinear warp keeps the amount of edge: lines neither vanish nor thicken
    # (DeepSIM's "any non-background pixel" rule would give 2-2.5x here).
    ratio = warped_edges.sum(dim=(1, 2, 3)) / edges.sum(dim=(1, 2, 3))
    assert torch.all((ratio > 0.8) & (ratio < 1.25)), ratio
    assert warped_images.shape == images.shape
    assert not torch.equal(warped_images, images)


def test_edge_map_and_image_get_the_same_warp():
    edge, _ = _canny_scene(64, seed=2)
    soft = torch.from_numpy(cv2.GaussianBlur(edge, (5, 5), 1.0)).float().div(255)[None, None]
    warped_edges, warped_images = warp_pair(soft, soft.repeat(1, 3, 1, 1), _shifts(9, 1), binary_edges=False)
    assert torch.equal(warped_edges[:, 0], warped_images[:, 0])
    assert len(torch.unique(warped_edges)) > 2  # soft maps stay soft


def test_batch_invariance():
    images = torch.rand(4, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    shifts = _shifts(11, 4)
    together = apply_tps(images, shifts)
    for i in range(4):
        alone = apply_tps(images[i : i + 1], shifts[i : i + 1])
        assert torch.allclose(together[i : i + 1], alone, atol=1e-6, rtol=0)


def test_mismatched_batch_is_refused():
    with pytest.raises(ValueError):
        apply_tps(torch.zeros(2, 1, 8, 8), np.zeros((3, 3, 3, 2)))
    with pytest.raises(ValueError):
        apply_tps(torch.zeros(2, 1, 8, 8), np.zeros((2, 9, 2)))
