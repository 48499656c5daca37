"""Lightning training of the reconstructive framework, with the split training of the framework's Eq. 3.

Split training (Lin & Yan, "A Comprehensive Augmentation Framework for Anomaly Detection", section
"Reconstructive Framework"): the normal training images I are split by the parity of their index,
I_X = {I_i : i odd}, I_Y = {I_i : i even} (1-based), and

    L = L_SSIM(I_X, R(I_X)) + L_2(I_X - R(I_X)) + L_focal(S(I_Y (+) R(I_Y)), M_gt).

I_X trains only R; I_Y passes through R without a reconstruction loss and trains only S, so S sees
reconstructions of images R never learnt, as it will at test time. Here a sample belongs to I_X or
I_Y by its *source image* (``source_number`` from synthgen.trainers.data: the 1-based position of the normal
image it was made from in the build's source list), so every synthetic variant of one normal image
lands on the same side and the two sets of normal images are disjoint. Each batch mixes both sides:
R runs once on the whole batch; the reconstruction loss averages over the I_X samples, the focal
loss over the I_Y samples, whose reconstructions are detached so that no gradient of the focal loss
reaches R. A batch without samples of one side contributes zero for that term.

``split=False`` is DRAEM's training (the Table 4 baselines): every sample trains R and S, and the
focal loss also back-propagates into R through the undetached reconstruction, as DRAEM's
train_DRAEM.py does.

R's target is the shard's ``normal`` field (the clean image the sample was made from; DRAEM's
``image``), its input the shard's ``image`` (DRAEM's ``augmented_image``).

``rotate_normals`` is DRAEM's rotation augmentation of normal images (data_loader.py: with
probability 0.3, ``torch.rand(1) > 0.7``, rotate by U(-90, 90) degrees, imgaug Affine: bilinear,
fill 0). DRAEM rotates the normal before synthesizing the anomaly; shards are already synthesized,
so here the sample's image, normal and mask are rotated together by one angle (image and normal
bilinear, mask nearest neighbour, fill 0), which gives the same pairs except that DRAEM's anomaly
may also cover the black corners. Samples of the ``draem`` strategy are never rotated again: the
generator's draem strategy already applies this rotation (blend.py), so with ``rotate_normals`` a
mixed build gets DRAEM's rotation exactly once on every sample. Angles are drawn from
numpy's generator seeded by (seed, global step), so they are the same after a resume.

Optimiser and schedule (DRAEM's train_DRAEM.py): one Adam over R and S, lr 1e-4, MultiStepLR with
milestones at 80% and 90% of the epochs (rounded to whole epochs; DRAEM passes epochs * 0.8 as a
float, which never matches a non-integer), gamma 0.2, stepped once per epoch.

Validation (synthetic, for model selection only): every validation sample contributes to both
terms, L2 + SSIM + focal, logged as ``val/loss``; no gradient, R's reconstruction as at test time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..lightning_utils import LR_GAMMA, draem_milestones
from .model import ArchitectureConfig, ReconstructionNetworks, focal_loss, ssim_loss

#: DRAEM's train_DRAEM.py: Adam lr 1e-4 (README command line); schedule: lightning_utils.draem_milestones.
DRAEM_LR = 1e-4
#: DRAEM's data_loader.py: torch.rand(1) > 0.7 -> rotate by iaa.Affine(rotate=(-90, 90)).
ROTATE_PROBABILITY = 0.3
ROTATE_MAX_DEG = 90.0
#: The generator's strategy that already carries DRAEM's rotation in its shards.
DRAEM_STRATEGY = "draem"


@dataclass(frozen=True)
class TrainingConfig:
    """The optimisation choices of one run (the architecture is ArchitectureConfig)."""

    epochs: int
    lr: float = DRAEM_LR
    split: bool = True
    rotate_normals: bool = False
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def in_reconstruction_half(source_numbers: torch.Tensor) -> torch.Tensor:
    """True for samples of I_X (odd 1-based source number), False for I_Y (even): Eq. 3's parity split."""
    return source_numbers % 2 == 1


def rotation_angles(rng: np.random.Generator, strategies: list[str]) -> list[float | None]:
    """DRAEM's per-sample draw: an angle in U(-90, 90) with probability 0.3, else None; never for draem samples."""
    angles: list[float | None] = []
    for strategy in strategies:
        rotate = rng.random() < ROTATE_PROBABILITY
        angle = float(rng.uniform(-ROTATE_MAX_DEG, ROTATE_MAX_DEG))
        angles.append(angle if rotate and strategy != DRAEM_STRATEGY else None)
    return angles


def rotate_samples(batch: dict, angles: list[float | None]) -> dict:
    """Rotate image, normal and mask of each sample with an angle by that angle (fill 0)."""
    if all(a is None for a in angles):
        return batch
    out = dict(batch)
    for key, mode in (("image", InterpolationMode.BILINEAR), ("normal", InterpolationMode.BILINEAR), ("mask", InterpolationMode.NEAREST)):
        rotated = [x if a is None else TF.rotate(x, a, interpolation=mode, fill=0.0) for x, a in zip(batch[key], angles)]
        out[key] = torch.stack(rotated)
    return out


class ReconstructionModule(L.LightningModule):
    """R and S trained jointly on synthetic shards; see the module docstring for the losses."""

    def __init__(self, architecture: dict, training: dict):
        super().__init__()
        self.save_hyperparameters()
        self.architecture = ArchitectureConfig.from_dict(architecture)
        self.training_config = TrainingConfig(**training)
        self.networks = ReconstructionNetworks.initialised(self.architecture, self.training_config.seed)

    # ------------------------------------------------------------------------------- the objective
    def losses(self, batch: dict, split: bool) -> dict[str, torch.Tensor]:
        """The terms of Eq. 3 on one batch: l2 and ssim (reconstruction), focal (segmentation).

        split: I_X samples give the reconstruction terms, I_Y samples the focal term through a
        detached reconstruction. Not split: every sample gives every term, undetached (DRAEM).
        """
        images, normals, masks = batch["image"], batch["normal"], batch["mask"]
        reconstructions = self.networks.reconstructive(images)
        if split:
            for_r = in_reconstruction_half(batch["source_number"])
            for_s = ~for_r
            s_reconstructions = reconstructions[for_s].detach()  # no gradient of S's loss into R
        else:
            for_r = for_s = torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
            s_reconstructions = reconstructions
        zero = images.new_zeros(())
        out = {"l2": zero, "ssim": zero, "focal": zero}
        if for_r.any():
            rec, target = reconstructions[for_r].float(), normals[for_r].float()
            out["l2"] = F.mse_loss(rec, target)
            out["ssim"] = ssim_loss(rec, target)
        if for_s.any():
            s_input = self.networks.discriminator_input(images[for_s], s_reconstructions)
            out["focal"] = focal_loss(self.networks.discriminative(s_input), masks[for_s])
        out["loss"] = out["l2"] + out["ssim"] + out["focal"]
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.training_config.rotate_normals:
            rng = np.random.default_rng([self.training_config.seed, self.global_step])
            batch = rotate_samples(batch, rotation_angles(rng, list(batch["strategy"])))
        terms = self.losses(batch, self.training_config.split)
        self._log_terms("train", terms, batch["image"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        with torch.no_grad():
            terms = self.losses(batch, split=False)
        self._log_terms("val", terms, batch["image"].shape[0])

    def _log_terms(self, stage: str, terms: dict[str, torch.Tensor], batch_size: int) -> None:
        """``stage/l2``, ``stage/ssim``, ``stage/focal`` and ``stage/loss`` (the sum, on the progress bar)."""
        parts = {f"{stage}/{k}": terms[k].detach() for k in ("l2", "ssim", "focal")}
        self.log_dict(parts, on_step=stage == "train", on_epoch=True, batch_size=batch_size)
        self.log(f"{stage}/loss", terms["loss"].detach(), prog_bar=True, on_step=stage == "train", on_epoch=True, batch_size=batch_size)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.networks.parameters(), lr=self.training_config.lr)
        milestones = draem_milestones(self.training_config.epochs)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=LR_GAMMA)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
