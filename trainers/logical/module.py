"""Lightning wrapper that trains :class:`LogicALNet` with the loss of Eq. 2-7.

Optimisation (LogicAL Sec. 4.2): Adam, initial learning rate 1e-4, "decreases the learning rate with
multi-step schedule". The milestones are not given; DRAEM's are used (80% and 90% of the epochs,
gamma 0.2, trainers.lightning_utils.draem_milestones), because LogicAL's network, losses, optimiser
and learning rate are those of the DRAEM -> JNLD -> OmniAL line, which trains with that schedule.
The scheduler steps once per epoch.

Validation (synthetic samples held out of the build, for model selection only): the same loss,
logged as ``val/loss``.
"""

from __future__ import annotations

import lightning as L
import torch

from ..lightning_utils import LR_GAMMA, draem_milestones
from .losses import EDGE_BALANCE, EDGE_THRESHOLD, logical_loss
from .model import NetConfig, build_net

LR = 1e-4  # LogicAL Sec. 4.2


class LogicALModule(L.LightningModule):
    """Trains :class:`LogicALNet`; logs every loss term under ``train/`` and ``val/``."""

    def __init__(
        self,
        net: dict,
        seed: int,
        epochs: int,
        lr: float = LR,
        edge_threshold: float = EDGE_THRESHOLD,
        edge_balance: float = EDGE_BALANCE,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_net(NetConfig.from_dict(net), seed)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        hp = self.hparams
        terms = logical_loss(self.net(batch["image"]), batch, hp.edge_threshold, hp.edge_balance)
        for name, value in terms.items():
            self.log(
                f"{stage}/{name}",
                value.detach(),
                on_step=stage == "train",
                on_epoch=True,
                prog_bar=name == "loss",
                batch_size=batch["image"].shape[0],
            )
        return terms["loss"]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.Adam(self.net.parameters(), lr=hp.lr)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=draem_milestones(hp.epochs), gamma=LR_GAMMA)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
