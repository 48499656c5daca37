"""LogicAL's training objective (supplementary Sec. 7, Eq. 2-7).

    L      = L_rec + L_seg                                   (2)
    L_rec  = L_img + L_jnd + L_edge                          (3)
    L_img  = L2(I, I_rec) + L_ssim(I, I_rec)                 (4)
    L_jnd  = L2(J, J_rec) + L_ssim(J, J_rec)                 (5)
    L_edge = annotator-robust loss of RCF, as PiDiNet uses it (6)
    L_seg  = focal loss(M, M_seg)                            (7)

I is the clean normal image, J its JND map, M the ground-truth mask. The paper gives no weights
between the terms, so all weights are 1.

L2 is the mean squared error. L_ssim = 1 - mean SSIM (Wang et al. 2004) with an 11x11 Gaussian
window of sigma 1.5, K1 = 0.01, K2 = 0.03 and data range 1 (images and JND maps are in [0, 1]), the
constants of DRAEM's SSIM loss that the OmniAL family trains with. The window is applied without
padding, so the mean runs over the positions where the whole window lies inside the image; that is
exactly what ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` averages (it crops the 5-pixel border), whereas DRAEM's
zero padding would bias the border.

L_edge, Eq. (6), with the mapping between the paper's notation and PiDiNet's code (``utils.py``
``cross_entropy_loss_RCF``, ``edge_dataloader.py``, ``main.py`` of hellozhuo/pidinet, read for facts):
- the ground truth y in [0, 1] is PiDiNet's first-scale edge probability of the normal image;
  y = 0 is a negative pixel, 0 < y < eta is ignored (weight 0), y >= eta is a positive pixel.
  "y = 0" is read as "y at the map's own zero level", its minimum: PiDiNet's labels (BSDS annotator
  votes) have exact zeros, but its *outputs*, which LogicAL uses as labels, never reach 0 (measured
  on the juice_bottle LogicAL build: every map's minimum is 4/255, no pixel is 0), so the literal
  rule would find no negative pixel, and with no negatives the positives weigh 0 too: L_edge would
  be 0 for every real sample. For maps with exact zeros the two readings are the same.
  PiDiNet's default eta is 0.3, applied to 0..255 labels as ``label >= 0.3 * 256``; for uint8 maps
  that selects the same pixels (value >= 77) as y = value / 255 >= 0.3 does here.
- per image, with |Y+| positives and |Y-| negatives (ignored pixels counted in neither):
  positive pixels weigh 1.0 * |Y-| / (|Y+| + |Y-|) and negative pixels weigh
  lambda * |Y+| / (|Y+| + |Y-|) with lambda = 1.1 (PiDiNet's ``--lmbda``, "weight on negative
  pixels"). LogicAL's text calls the two multipliers alpha = 1.0 and beta = 1.1 and attaches them to
  the percentages of positive and negative pixels; the weighting implemented is the code's, which is
  what "following PiDiNet" means.
- the loss is the weighted binary cross-entropy, -w * [y' log p + (1 - y') log(1 - p)] with y' the
  binarised label. PiDiNet's batches hold one image and it *sums* over the pixels; here the weighted
  sum of each image is divided by its pixel count and the images are averaged, so that L_edge is a
  per-pixel mean like the other four terms of Eq. (3) and does not grow with the resolution.
  An image without positive pixels gives 0 (its negative weight is 0), as in PiDiNet.

L_seg: focal loss of Lin et al. 2017 with gamma = 2 on the softmax of the 2-channel mask logits,
FL = -(1 - p_t)^gamma log p_t averaged over all pixels, without the alpha class weight (DRAEM's
``FocalLoss()`` is used with alpha=None). DRAEM's label smoothing of 1e-5 is left out.

Samples whose shard row lacks the JND or edge map (``has_jnd`` / ``has_edge`` = 0, e.g. a build that
mixes LogicAL with a strategy that stores no such maps) do not contribute to L_jnd / L_edge.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .model import LogicALOutput

SSIM_WINDOW = 11  # Wang et al. 2004; DRAEM's SSIM loss
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
EDGE_THRESHOLD = 0.3  # PiDiNet --eta (BSDS)
EDGE_BALANCE = 1.1  # PiDiNet --lmbda: multiplier of the negative-pixel weight
FOCAL_GAMMA = 2.0  # Lin et al. 2017


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised (size, size) Gaussian; the same taps as scipy's gaussian_filter(sigma, truncate=3.5)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim_per_sample(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of each sample of a, b (B, C, H, W), averaged over channels and valid positions -> (B,)."""
    channels = a.shape[1]
    window = gaussian_window().to(a.device, a.dtype).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(dim=1)


def l2_per_sample(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).flatten(1).mean(dim=1)


def rcf_edge_loss_per_sample(
    edge_logits: torch.Tensor, target: torch.Tensor, threshold: float = EDGE_THRESHOLD, balance: float = EDGE_BALANCE
) -> torch.Tensor:
    """Annotator-robust edge loss (Eq. 6, PiDiNet's weighting) of each sample -> (B,).

    edge_logits, target: (B, 1, H, W); target is the edge probability y in [0, 1].
    """
    shape = (-1,) + (1,) * (target.dim() - 1)
    positive = target >= threshold
    floor = target.flatten(1).amin(dim=1).view(shape)
    negative = (target <= floor) & ~positive  # "y = 0": the map's zero level (see the module docstring)
    n_pos = positive.flatten(1).sum(dim=1).to(edge_logits.dtype)
    n_neg = negative.flatten(1).sum(dim=1).to(edge_logits.dtype)
    counted = (n_pos + n_neg).clamp(min=1)  # an all-ignored image has no weighted pixel at all
    weight = torch.where(
        positive,
        (1.0 * n_neg / counted).view(shape),
        torch.where(negative, (balance * n_pos / counted).view(shape), torch.zeros_like(target)),
    )
    bce = F.binary_cross_entropy_with_logits(edge_logits, positive.to(edge_logits.dtype), reduction="none")
    return (weight * bce).flatten(1).sum(dim=1) / math.prod(target.shape[1:])


def focal_loss(mask_logits: torch.Tensor, mask: torch.Tensor, gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Mean focal loss over all pixels; mask_logits (B, 2, H, W), mask (B, 1, H, W) in {0, 1}."""
    log_p = F.log_softmax(mask_logits, dim=1)
    log_pt = log_p.gather(1, mask.long())
    return (-((1.0 - log_pt.exp()) ** gamma) * log_pt).mean()


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B,) over samples where ``valid`` (B,) is true; 0 when none is."""
    valid = valid.to(values.dtype)
    return (values * valid).sum() / valid.sum().clamp(min=1)


def logical_loss(
    out: LogicALOutput,
    batch: dict[str, torch.Tensor],
    edge_threshold: float = EDGE_THRESHOLD,
    edge_balance: float = EDGE_BALANCE,
) -> dict[str, torch.Tensor]:
    """Every term of Eq. 2-7 for one batch; ``loss`` is the total L.

    batch: ``normal`` (B, 3, H, W) and ``jnd``, ``edge``, ``mask`` (B, 1, H, W), all float in [0, 1],
    plus ``has_jnd`` and ``has_edge`` (B,). Computed in float32 whatever the network's precision.
    """
    rec_image, rec_jnd = out.image.float(), out.jnd.float()
    normal, jnd = batch["normal"].float(), batch["jnd"].float()
    terms = {
        "img_l2": l2_per_sample(rec_image, normal).mean(),
        "img_ssim": (1.0 - ssim_per_sample(rec_image, normal)).mean(),
        "jnd_l2": _masked_mean(l2_per_sample(rec_jnd, jnd), batch["has_jnd"]),
        "jnd_ssim": _masked_mean(1.0 - ssim_per_sample(rec_jnd, jnd), batch["has_jnd"]),
        "edge": _masked_mean(
            rcf_edge_loss_per_sample(out.edge_logits.float(), batch["edge"].float(), edge_threshold, edge_balance),
            batch["has_edge"],
        ),
        "seg": focal_loss(out.mask_logits.float(), batch["mask"]),
    }
    terms["loss"] = sum(terms.values())
    return terms
