"""LogicAL's ground truth (SSIM between two generated images) and the JND map, batched in torch.

Ground truth (LogicAL sec. 3.2): "we use SSIM to calculate the ground truth maps with both generated
normal and anomaly images", i.e. the edge-to-image generator's output for the normal edge map and
for the anomaly edge map are compared, not the anomaly image and the real photo, because the
generator's own error would otherwise mark every pixel. The paper gives no threshold and no
morphology; the choices here are:

- SSIM map as Wang et al. 2004 define it (the paper's [26]): 11x11 Gaussian window with sigma 1.5,
  K1 = 0.01, K2 = 0.03, data range 1; per RGB channel, averaged over the channels (skimage's
  ``channel_axis`` convention); the borders reflected so the map has the image's size.
- mask = SSIM < ``SSIM_THRESHOLD`` = 0.5: the midpoint of SSIM's [0, 1] range for non-negatively
  correlated patches. Below it, a patch has lost at least half of its luminance/contrast/structure
  agreement; an object removed or replaced there. Validated on the demo dataset, where the edited
  region is known (benchmarks/bench_logical.py reports the IoU per strategy and a threshold sweep).
  Option ``<strategy>.ssim_threshold`` changes it per build.
- no extra morphology: the 11x11 Gaussian window already smooths the map (a lone pixel cannot fall
  below 0.5 without its neighbours doing so), and opening would erase thin removed structures
  (wires, print lines) that are the anomaly.

JND map (LogicAL sec. 3.2 and supp. eq. 5; the paper's [27], Wu et al. 2013): the localization
network reconstructs the *normal* image's JND map. Wu et al. 2013 build on the nonlinear additivity
model for masking (NAMM, Yang et al. 2005) and add a "disorderly" term from a per-pixel
autoregressive prediction (a 21x21 least-squares fit per pixel, seconds per image). This module
computes the NAMM JND that Wu et al. start from (pixel domain, on the 0..255 grey scale):

    JND = LA + CM - 0.3 min(LA, CM)                              (NAMM, C = 0.3)
    LA  = 17 (1 - sqrt(bg / 127)) + 3   if bg <= 127             (Chou & Li 1995 luminance adaptation)
          3/128 (bg - 127) + 3          otherwise
    CM  = max(0, mg (0.0001 bg + 0.115) + (0.5 - 0.01 bg))       (Chou & Li 1995 spatial masking)

with bg the 5x5 weighted background luminance (weights 1/32, centre 0) and mg the largest of four
5x5 directional gradient magnitudes (/16). Chou & Li's masking term goes negative on smooth bright
backgrounds (bg > 50, mg ~ 0), where they take the larger of it and LA; a negative masking
threshold means nothing, so NAMM's CM is clipped at 0 here. The map is normalised per
image to [0, 1] by its min and max, as the "normalized JND map" of LogicAL/OmniAL; a constant map
becomes 0. The disorderly (autoregressive) term is not included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.layers import gaussian_kernel, separable_blur

#: Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
#: below this SSIM a pixel is anomalous (see the module docstring)
SSIM_THRESHOLD = 0.5

#: ITU-R BT.601 luma weights, the grey scale the JND models were defined on
LUMA = (0.299, 0.587, 0.114)
#: NAMM's overlap factor between luminance adaptation and contrast masking (Yang et al. 2005)
NAMM_OVERLAP = 0.3


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM of two image batches (B, C, H, W) in [0, 1] -> (B, H, W), channel mean.

    Computed in float32 whatever the inputs' precision (the variance terms cancel badly in bf16).
    """
    a, b = a.float(), b.float()
    kernel = gaussian_kernel(SSIM_WINDOW, SSIM_SIGMA, a.device, a.dtype)
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_a, mu_b = separable_blur(a, kernel), separable_blur(b, kernel)
    var_a = separable_blur(a * a, kernel) - mu_a**2
    var_b = separable_blur(b * b, kernel) - mu_b**2
    cov = separable_blur(a * b, kernel) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim.mean(1)


def ssim_masks(
    generated_normal: torch.Tensor, generated_anomaly: torch.Tensor, threshold: float = SSIM_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks (B, H, W) float {0, 1}, SSIM maps (B, H, W)) of two generated batches (LogicAL sec. 3.2)."""
    ssim = ssim_map(generated_normal, generated_anomaly)
    return (ssim < threshold).float(), ssim


# --------------------------------------------------------------------------------------------------
# JND


def _jnd_kernels(device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(background kernel (1, 1, 5, 5), four directional gradient kernels (4, 1, 5, 5)), Yang et al. 2005."""
    background = torch.tensor(
        [[1, 1, 1, 1, 1], [1, 2, 2, 2, 1], [1, 2, 0, 2, 1], [1, 2, 2, 2, 1], [1, 1, 1, 1, 1]], dtype=dtype
    ) / 32
    horizontal = [[0, 0, 0, 0, 0], [1, 3, 8, 3, 1], [0, 0, 0, 0, 0], [-1, -3, -8, -3, -1], [0, 0, 0, 0, 0]]
    diagonal = [[0, 0, 1, 0, 0], [0, 8, 3, 0, 0], [1, 3, 0, -3, -1], [0, 0, -3, -8, 0], [0, 0, -1, 0, 0]]
    anti_diagonal = [[0, 0, 1, 0, 0], [0, 0, 3, 8, 0], [-1, -3, 0, 3, 1], [0, -8, -3, 0, 0], [0, 0, -1, 0, 0]]
    vertical = [[0, 1, 0, -1, 0], [0, 3, 0, -3, 0], [0, 8, 0, -8, 0], [0, 3, 0, -3, 0], [0, 1, 0, -1, 0]]
    gradients = torch.tensor([horizontal, diagonal, anti_diagonal, vertical], dtype=dtype) / 16
    return background.view(1, 1, 5, 5).to(device), gradients.view(4, 1, 5, 5).to(device)


def jnd_map(images: torch.Tensor) -> torch.Tensor:
    """Normalised NAMM JND maps (B, H, W) in [0, 1] of RGB images (B, 3, H, W) in [0, 1]."""
    luma = torch.tensor(LUMA, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    grey = (images.float() * luma).sum(1, keepdim=True) * 255
    background_kernel, gradient_kernels = _jnd_kernels(images.device, torch.float32)
    padded = F.pad(grey, (2, 2, 2, 2), mode="reflect")
    bg = F.conv2d(padded, background_kernel)
    mg = F.conv2d(padded, gradient_kernels).abs().amax(1, keepdim=True)
    la = torch.where(bg <= 127, 17 * (1 - torch.sqrt(bg.clamp(min=0) / 127)) + 3, 3 / 128 * (bg - 127) + 3)
    cm = (mg * (0.0001 * bg + 0.115) + (0.5 - 0.01 * bg)).clamp(min=0)
    jnd = (la + cm - NAMM_OVERLAP * torch.minimum(la, cm))[:, 0]
    low = jnd.flatten(1).amin(1).view(-1, 1, 1)
    span = jnd.flatten(1).amax(1).view(-1, 1, 1) - low
    return torch.where(span > 0, (jnd - low) / span.clamp(min=1e-12), torch.zeros_like(jnd))
