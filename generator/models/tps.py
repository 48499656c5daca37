"""Thin-plate-spline (TPS) warps, as DeepSIM uses them to augment edge-map/photo training pairs.

LogicAL (sec. 3.1) trains its edge-to-image generator on TPS-warped pairs, following DeepSIM, so that
the generator does not collapse on edited (out-of-distribution) edge maps; it also warps finished
synthetic anomalies the same way (Fig. 5e-f). The facts below come from DeepSIM's published code
(read for facts only, see DESIGN.md sec. 5):

- a regular 3x3 grid of control points over the image, corners included (``--tps_points_per_dim 3``);
- every control point is moved by U(-0.1 W, 0.1 W) per coordinate; here x shifts scale with the
  width and y shifts with the height (DeepSIM uses 0.1 W for both; the two agree on square images);
- the four corners are pinned, so the image frame stays in place;
- one warp per sample, applied identically to the edge map and the photo; bilinear sampling, the
  image reflected at its border; the edge map is binarised again afterwards (by rounding, see
  ``EDGE_THRESHOLD`` for why not DeepSIM's "anything not background" rule).

The warp itself is the interpolating thin-plate spline (Bookstein; Donato & Belongie, "Approximate
thin plate spline mappings", ECCV 2002): f(q) = a0 + a1 x + a2 y + sum_k w_k U(|q - t_k|) with
U(r) = r^2 log r^2, solved exactly through the control points (no regularisation, as in DeepSIM's
code, which solves the same linear system).

Randomness and rendering are separate, as in the strategy API: :func:`draw_tps` draws one sample's
control-point shifts from a numpy Generator on the CPU; :func:`apply_tps` / :func:`warp_pair` are
deterministic and run on whatever device the images are on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: control points per image side, corners included (DeepSIM ``--tps_points_per_dim`` default)
POINTS_PER_DIM = 3
#: largest control-point shift as a fraction of the image side (DeepSIM ``scale=0.1 * w``)
MAX_SHIFT = 0.1
#: a warped edge pixel is edge when the bilinear value is at least one half (rounding to the nearer of
#: {0, 1}). DeepSIM instead marks every pixel that is not pure background (``__binary_thresh``); on
#: 1-pixel Canny lines that makes warped lines 2-3 pixels wide (2.1-2.4x the edge pixels, measured on
#: tests/test_tps.py's scene) while unwarped inputs at generation time stay thin. Rounding keeps the
#: edge density (0.95-1.07x) and so the training inputs look like the inputs the generator will get.
EDGE_THRESHOLD = 0.5


def draw_tps(
    rng: np.random.Generator, *, points_per_dim: int = POINTS_PER_DIM, max_shift: float = MAX_SHIFT
) -> np.ndarray:
    """Draw one sample's control-point shifts: (P, P, 2) float64, [row, column, (dx, dy)].

    dx is a fraction of the image width, dy of the height, each U(-max_shift, max_shift); the four
    corner points get 0 (pinned). All P*P*2 values are drawn even for the corners, so the number of
    draws, and hence the rest of the RNG stream, does not depend on which points are pinned.
    """
    shifts = rng.uniform(-max_shift, max_shift, size=(points_per_dim, points_per_dim, 2))
    shifts[[0, 0, -1, -1], [0, -1, 0, -1]] = 0.0
    return shifts


def control_points(points_per_dim: int = POINTS_PER_DIM) -> np.ndarray:
    """The regular grid of control points in grid_sample's normalised coordinates, (P, P, 2) as (x, y).

    Normalised coordinates with ``align_corners=False``: -1 and 1 are the outer edges of the border
    pixels, so the corner points sit on the image corners (DeepSIM's grid spans 0..W and 0..H).
    """
    ticks = np.linspace(-1.0, 1.0, points_per_dim)
    ys, xs = np.meshgrid(ticks, ticks, indexing="ij")
    return np.stack([xs, ys], axis=-1)


def _tps_kernel(sq_dist: torch.Tensor) -> torch.Tensor:
    """U(r) = r^2 log r^2 from the squared distance r^2, with U(0) = 0 (xlogy's 0 log 0 = 0)."""
    return torch.xlogy(sq_dist, sq_dist)


def _solve_tps(targets: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Coefficients of the TPS that maps ``targets`` onto ``sources``: (B, N+3, 2).

    targets, sources: (B, N, 2) float64. Solves [[K, P], [P^T, 0]] [w; a] = [sources; 0] with
    K_ij = U(|t_i - t_j|) and P = [1, x, y] of the targets (Bookstein's system).
    """
    b, n, _ = targets.shape
    kernel = _tps_kernel(torch.cdist(targets, targets).square())
    affine = torch.cat([targets.new_ones(b, n, 1), targets], dim=2)
    system = targets.new_zeros(b, n + 3, n + 3)
    system[:, :n, :n] = kernel
    system[:, :n, n:] = affine
    system[:, n:, :n] = affine.transpose(1, 2)
    rhs = torch.cat([sources, sources.new_zeros(b, 3, 2)], dim=1)
    return torch.linalg.solve(system, rhs)


def tps_backward_map(displacements, points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Where each output position comes from in the input: f(points) per sample, (B, M, 2).

    displacements: (B, P, P, 2) as drawn by :func:`draw_tps`. points: (B or 1, M, 2) output positions
    in normalised coordinates (x, y); the result is on ``points``' device, float32.

    f is the thin-plate spline with f(p_k + d_k) = p_k: what sat at control point p_k in the input
    appears at p_k + d_k in the output (a backward map, so every output pixel is defined). It is
    solved in float64 on the CPU (a (N+3)^2 system per sample) and evaluated in float32. Distances
    are measured in units proportional to pixels (normalised coordinates would stretch the radial
    basis on non-square images); the TPS is invariant to uniform scaling, so which unit is moot.
    """
    shifts = torch.as_tensor(np.asarray(displacements), dtype=torch.float64)
    if shifts.ndim != 4 or shifts.shape[1] != shifts.shape[2] or shifts.shape[3] != 2:
        raise ValueError(f"displacements must be (B, P, P, 2), got {tuple(shifts.shape)}")
    batch, points_per_dim = shifts.shape[0], shifts.shape[1]
    aspect = torch.tensor([width, height], dtype=torch.float64) / max(height, width)

    sources = torch.as_tensor(control_points(points_per_dim)).reshape(1, -1, 2)
    targets = sources + 2.0 * shifts.reshape(batch, -1, 2)  # a shift of one image side is 2 here
    coeffs = _solve_tps(targets * aspect, (sources * aspect).expand(batch, -1, -1))

    device = points.device
    aspect = aspect.to(device, torch.float32)
    coeffs = coeffs.to(device, torch.float32)
    centres = targets.to(device, torch.float32) * aspect
    query = points.to(torch.float32).expand(batch, -1, -1) * aspect
    n = centres.shape[1]
    radial = _tps_kernel(torch.cdist(query, centres).square())  # (B, M, N)
    mapped = radial @ coeffs[:, :n] + coeffs[:, n : n + 1] + query @ coeffs[:, n + 1 :]
    return mapped / aspect


def tps_sampling_grid(displacements, height: int, width: int, device=None) -> torch.Tensor:
    """The grid_sample grid (B, H, W, 2) of the warps: :func:`tps_backward_map` at the pixel centres."""
    device = torch.device("cpu") if device is None else torch.device(device)
    # Pixel centres in normalised coordinates (align_corners=False).
    xs = (torch.arange(width, device=device, dtype=torch.float32) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=torch.float32) * 2 + 1) / height - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([grid_x, grid_y], dim=-1).reshape(1, -1, 2)
    mapped = tps_backward_map(displacements, centres, height, width)
    return mapped.reshape(-1, height, width, 2)


def apply_tps(images: torch.Tensor, displacements) -> torch.Tensor:
    """Warp a batch (B, C, H, W) of float images, sample i by displacements[i] (see :func:`draw_tps`).

    Bilinear sampling; positions outside the image are reflected back in (DeepSIM's
    ``map_coordinates(..., mode='reflect')``). Deterministic; runs on the images' device.
    """
    grid = tps_sampling_grid(displacements, images.shape[2], images.shape[3], device=images.device)
    if grid.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {grid.shape[0]} displacement sets")
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)


def rebinarize_edges(edges: torch.Tensor) -> torch.Tensor:
    """Edge maps in {0, 1} again after bilinear resampling: values of one half and above are edge."""
    return (edges >= EDGE_THRESHOLD).to(edges.dtype)


def warp_pair(
    edges: torch.Tensor, images: torch.Tensor, displacements, *, binary_edges: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the same warp to edge maps (B, 1, H, W) and images (B, 3, H, W), both float in [0, 1].

    ``binary_edges``: the edge maps are binary (thresholded edges, as DeepSIM's); they are binarised
    again after the bilinear warp. Soft edge maps (edge probabilities) are left as warped.
    """
    warped = apply_tps(torch.cat([edges, images], dim=1), displacements)
    warped_edges, warped_images = warped[:, : edges.shape[1]], warped[:, edges.shape[1] :]
    if binary_edges:
        warped_edges = rebinarize_edges(warped_edges)
    return warped_edges, warped_images
