"""A trained LogicAL network at inference, and its ``model.pt`` (the method's registered loader).

Inference (what ``synthgen-eval`` calls): the anomaly map is the softmax probability of the mask's
anomalous channel at the input resolution; the image score is DRAEM's (official ``test_DRAEM.py``):
the maximum of the map after a mean filter (21x21 at 256x256, scaled with the image size exactly as
the reconstruction method does, trainers/score_maps.py ``score_kernel``), which keeps a
few isolated bright pixels from deciding the image label.

``model.pt``: ``{"format": 1, "method": "logical", "net": NetConfig dict, "image_size": [H, W],
"state_dict": ...}``, loadable with ``torch.load(weights_only=True)``, without Lightning.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from synthgen.generator.safe_load import load_state_dict_checked

from ..base import MODEL_FILE, read_model_file, register_loader, write_model_file
from ..score_maps import score_kernel
from .model import LogicALNet, NetConfig

METHOD = "logical"
MODEL_FORMAT = 1


class LogicALDetector(nn.Module):
    """A trained LogicAL network as a :class:`trainers.base.AnomalyModel`."""

    def __init__(self, net: LogicALNet, image_size: tuple[int, int]):
        super().__init__()
        self.net = net.eval()
        self.image_size = tuple(image_size)
        self.kernel = score_kernel(self.image_size)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [0, 1] -> (anomaly maps (B, H, W) in [0, 1], image scores (B,))."""
        self.net.eval()
        maps = torch.softmax(self.net(images).mask_logits.float(), dim=1)[:, 1]
        smoothed = F.avg_pool2d(maps[:, None], self.kernel, stride=1, padding=self.kernel // 2)
        return maps, smoothed.flatten(1).amax(dim=1)


def save_model(run_dir: Path, net: LogicALNet, image_size: tuple[int, int]) -> Path:
    """Write ``run_dir/model.pt`` atomically."""
    blob = {
        "net": net.config.to_dict(),
        "image_size": list(image_size),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    return write_model_file(run_dir, METHOD, MODEL_FORMAT, blob)


@register_loader(METHOD)
def load(run_dir: Path, device: torch.device) -> LogicALDetector:
    """The trained detector of a LogicAL run folder, in eval mode on ``device``."""
    payload = read_model_file(run_dir, METHOD, MODEL_FORMAT)
    net = LogicALNet(NetConfig.from_dict(payload["net"]))
    load_state_dict_checked(net, payload["state_dict"], Path(run_dir) / MODEL_FILE, "model file")
    return LogicALDetector(net, tuple(payload["image_size"])).to(device)
