"""Segment Anything's automatic masks, as LogicAL uses them for "rough semantic regions" (sec. 3.1).

The model is built with segment-anything's ``sam_model_registry`` and filled from an official
checkpoint (vit_b, vit_l or vit_h). Loading is lazy: a build whose region maps are all cached never
loads SAM. No SAM weights are obtainable offline, so :func:`build_random_sam` assembles a small
randomly initialised model from segment-anything's own classes; tests and benchmarks use it to run
the real ``SamAutomaticMaskGenerator`` code path end to end.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import SynthgenError
from ..safe_load import load_torch_file
from ..models.weights import REGISTRY, file_sha256, verify_file

SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")


@dataclass(frozen=True)
class SamParams:
    """``SamAutomaticMaskGenerator``'s parameters; defaults are segment-anything's own (ViT-H tuned).

    points_per_side: the prompt grid is points_per_side**2 points over the image.
    points_per_batch: prompts run through the mask decoder at once (memory/speed only).
    pred_iou_thresh: keep masks whose predicted IoU exceeds this.
    stability_score_thresh: keep masks whose IoU between the masks binarised at logit
        +-stability_score_offset is at least this.
    stability_score_offset: the logit shift used for the stability score.
    box_nms_thresh: box IoU above which two masks of one crop are duplicates.
    crop_n_layers: if > 0, also run on 2**i x 2**i crops for i in 1..crop_n_layers.
    crop_nms_thresh: box IoU for duplicates between crops.
    crop_overlap_ratio: overlap of neighbouring crops, as a fraction of the image side.
    crop_n_points_downscale_factor: points_per_side is divided by this**i in crop layer i.
    min_mask_region_area: if > 0, remove islands and holes smaller than this many pixels.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0

    def __post_init__(self):
        positive = ("points_per_side", "points_per_batch", "crop_n_points_downscale_factor")
        for name in positive:
            if getattr(self, name) < 1:
                raise SynthgenError(f"regions.sam.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("crop_n_layers", "min_mask_region_area"):
            if getattr(self, name) < 0:
                raise SynthgenError(f"regions.sam.{name}: must be >= 0, got {getattr(self, name)}")
        unit = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh",
                "crop_overlap_ratio")
        for name in unit:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SynthgenError(f"regions.sam.{name}: must be in [0, 1], got {getattr(self, name)}")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when present, else the CPU; an unusable choice is the user's error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SynthgenError(f"--device: '{device}' is not a device (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SynthgenError(f"--device: '{device}' requested but no CUDA device is available")
    return dev


def load_sam(model_type: str, checkpoint: str | Path, device: torch.device) -> torch.nn.Module:
    """Build ``model_type`` with segment-anything's registry and load an official checkpoint.

    The registry's own loader calls ``torch.load`` without ``map_location``, which fails on a
    CPU-only machine for checkpoints saved with CUDA tensors (fine-tuned SAMs; SAM-HQ issue 24), and
    it raises bare tracebacks. So the state dict is loaded here: onto the CPU, ``weights_only`` (a
    checkpoint is data, never code), compared with the architecture before loading.
    """
    from segment_anything import sam_model_registry

    path = _checked_checkpoint(model_type, checkpoint)
    state = load_torch_file(path, "PyTorch checkpoint")
    if not isinstance(state, dict):
        raise SynthgenError(f"{path}: not a Segment Anything checkpoint (holds {type(state).__name__})")
    sam = sam_model_registry[model_type]()
    problem = _state_dict_mismatch(sam.state_dict(), state)
    if problem:
        raise SynthgenError(f"{path}: not a SAM {model_type} checkpoint ({problem}); is --sam-model right?")
    sam.load_state_dict(state, strict=True)
    return sam.eval().to(device)


def _checked_checkpoint(model_type: str, checkpoint: str | Path) -> Path:
    if model_type not in SAM_MODEL_TYPES:
        raise SynthgenError(f"--sam-model: unknown type '{model_type}'; choose {', '.join(SAM_MODEL_TYPES)}")
    path = Path(checkpoint)
    if not path.is_file():
        raise SynthgenError(f"{path}: SAM checkpoint not found")
    return path


def _verify_if_official(path: Path) -> None:
    """A file named like an official SAM checkpoint must be that file (sha256); other names are the
    user's own (fine-tuned) checkpoints, which the architecture check in :func:`load_sam` covers."""
    for spec in REGISTRY.values():
        if spec.name.startswith("sam_") and spec.file_name == path.name:
            verify_file(path, spec)


def _state_dict_mismatch(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> str:
    """A one-line summary of how ``found`` differs from the model's state dict; '' if it fits."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    misshaped = sorted(
        k for k in expected.keys() & found.keys()
        if not isinstance(found[k], torch.Tensor) or found[k].shape != expected[k].shape
    )
    if not (missing or unexpected or misshaped):
        return ""
    example = (missing or unexpected or misshaped)[0]
    return (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(misshaped)} mis-shaped tensors, "
            f"e.g. '{example}'")


def build_random_sam(seed: int = 0, img_size: int = 256) -> torch.nn.Module:
    """A tiny randomly initialised SAM, built from segment-anything's classes, for tests.

    Same architecture family as the real models (windowed ViT encoder with relative positions and
    a global-attention block, prompt encoder, two-way-transformer mask decoder with 3 multimask
    outputs) at a fraction of the width and depth. ``img_size`` is the encoder's input side
    (1024 in the real models). Seeding uses a forked RNG, so the global torch RNG is untouched.
    """
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    patch = 16  # the real models' patch size; embedding grid is img_size / 16
    prompt_dim = 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(
                img_size=img_size,
                patch_size=patch,
                embed_dim=32,
                depth=2,
                num_heads=2,
                mlp_ratio=2.0,
                out_chans=prompt_dim,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=4,
                global_attn_indexes=(1,),
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=prompt_dim,
                image_embedding_size=(img_size // patch, img_size // patch),
                input_image_size=(img_size, img_size),
                mask_in_chans=4,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=1, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2),
                transformer_dim=prompt_dim,
                iou_head_depth=3,
                iou_head_hidden_dim=32,
            ),
        )
    return sam.eval()


class SamSegmenter:
    """SAM automatic masks for one image at a time, with the model loaded on first use.

    ``identity`` names the model for manifests and cache keys (model name, checkpoint sha256 or
    the random model's seed); build instances with :meth:`from_checkpoint` or :meth:`random`.
    """

    def __init__(
        self,
        load: Callable[[], torch.nn.Module],
        params: SamParams,
        identity: dict[str, Any],
        checkpoint: Path | None = None,
    ):
        self._load = load
        self._generator = None
        self.params = params
        self.identity = identity
        self.checkpoint = checkpoint  # the weights file, for the manifest; None for in-memory models

    @classmethod
    def from_checkpoint(
        cls, model_type: str, checkpoint: str | Path, params: SamParams, device: torch.device
    ) -> "SamSegmenter":
        path = _checked_checkpoint(model_type, checkpoint)
        _verify_if_official(path)
        identity = {"model": f"sam_{model_type}", "model_type": model_type, "checkpoint_sha256": file_sha256(path)}
        return cls(lambda: load_sam(model_type, path, device), params, identity, checkpoint=path)

    @classmethod
    def random(cls, params: SamParams, seed: int = 0, img_size: int = 256) -> "SamSegmenter":
        """The tiny random-weight model of :func:`build_random_sam`, on the CPU."""
        identity = {"model": "sam_random_tiny", "model_type": None, "checkpoint_sha256": None,
                    "seed": seed, "img_size": img_size}
        return cls(lambda: build_random_sam(seed, img_size), params, identity)

    def masks(self, image: np.ndarray) -> list[np.ndarray]:
        """SAM's masks for an (H, W, 3) uint8 RGB image, each (H, W) bool, overlapping, unsorted."""
        if self._generator is None:
            from segment_anything import SamAutomaticMaskGenerator

            self._generator = SamAutomaticMaskGenerator(self._load(), **asdict(self.params))
        records = self._generator.generate(image)
        return [r["segmentation"] for r in records]
