"""``synthgen-eval`` for anomalib runs: rebuild the module from model.pt (read by the safe loader) and predict.

Inference needs no synthesis, so every run is rebuilt with the shard-fed class (its generators hold no
weights, and it neither reads textures nor downloads anything); the weights come from the state dict.
Maps and scores are the model's own (before anomalib's post-processor, whose normalisation is monotonic
and does not change the metrics).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from synthgen.generator.safe_load import load_state_dict_checked

from ..base import MODEL_FILE, read_model_file
from .models import METHOD
from .train import MODEL_FORMAT, build_module

#: constructor arguments that only feed training-time synthesis or pretrained parts already in the state dict
_TRAINING_ONLY = {"dtd_dir": None, "anomaly_source_path": None, "vq_weights": None}


class AnomalibRun:
    """A trained anomalib module as trainers.base.AnomalyModel: [0, 1] images in, maps and scores out."""

    def __init__(self, module, image_size: tuple[int, int]):
        self.module = module.eval()
        self.image_size = tuple(image_size)

    def to(self, device):
        self.module.to(device)
        return self

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prepared = self.module.pre_processor(images) if self.module.pre_processor else images
        out = self.module.model(prepared)
        maps = out.anomaly_map
        if maps.dim() == 4:
            maps = maps[:, 0]
        if maps.shape[-2:] != images.shape[-2:]:
            maps = F.interpolate(maps[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return maps.float(), out.pred_score.reshape(len(images)).float()


def load(run_dir: Path, device: torch.device) -> AnomalibRun:
    from .backbones import resolve_backbone

    blob = read_model_file(run_dir, METHOD, MODEL_FORMAT)
    args = {k: (_TRAINING_ONLY[k] if k in _TRAINING_ONLY else v) for k, v in blob["arguments"].items() if k != "dtd_dir"}
    if blob["backbone"] is not None:
        resolve_backbone(blob["backbone"])  # the architecture is built from the same offline weights, then overwritten
    image_size = tuple(blob["image_size"])
    module = build_module(blob["model"], "shards", args, image_size, blob["backbone"])
    load_state_dict_checked(module, blob["state_dict"], Path(run_dir) / MODEL_FILE, "anomalib model")
    return AnomalibRun(module, image_size).to(device)
