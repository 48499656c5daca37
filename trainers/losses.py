"""Losses more than one method uses.

DRAEM's FocalLoss (loss.py, gamma 2, smooth 1e-5), which GLASS's code reuses unchanged: the
reconstruction method applies it to its segmentation logits, GLASS to its discriminator's
probabilities on the hardest positions.
"""

from __future__ import annotations

import torch

#: DRAEM loss.py: FocalLoss(gamma=2, smooth=1e-5).
FOCAL_GAMMA = 2.0
FOCAL_SMOOTH = 1e-5


def two_class_focal_loss(p_normal: torch.Tensor, p_anomalous: torch.Tensor, target: torch.Tensor,
                         gamma: float = FOCAL_GAMMA, smooth: float = FOCAL_SMOOTH) -> torch.Tensor:
    """The focal loss DRAEM and GLASS share (both use the same FocalLoss class), from the two class
    probabilities and targets in {0, 1} of one shape."""
    # The one-hot target is clamped to [smooth / (classes - 1), 1 - smooth]; with two classes:
    anomalous_weight = target.clamp(smooth, 1.0 - smooth)
    normal_weight = (1.0 - target).clamp(smooth, 1.0 - smooth)
    p_t = normal_weight * p_normal + anomalous_weight * p_anomalous + smooth
    return (-((1.0 - p_t) ** gamma) * torch.log(p_t)).mean()
