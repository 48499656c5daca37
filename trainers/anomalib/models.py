"""anomalib's models with their synthetic anomalies taken from a synthgen build (small subclasses, anomalib untouched).

Where each model draws its anomalies (anomalib 2.7) and what replaces it here:

- SuperSimpleNet (``supervised=True``): its training step already takes ``gt_mask``/``gt_label`` from the
  batch; the batches are the build's samples. Its feature-level Perlin noise (``anomaly_generator``) is
  replaced by :class:`NoFeatureNoise`, so the masks it learns are exactly synthgen's.
- DRAEM: ``self.augmenter(normal)`` returns (anomalous image, mask) and the loss reconstructs ``normal``:
  :class:`ShardAnomalies` returns the build's anomalous sample and mask, and the step's ``image`` is that
  sample's own normal (the shards store it), so the reconstruction target is the pair's normal.
- DSR: phases 1-2 (the quantized-feature anomalies of its object-specific decoder) are kept and see the
  normals; phase 3's ``self.perlin_generator`` is :class:`ShardAnomalies` (mask only, no pair needed).
- GLASS: local anomaly synthesis ``self.model.augmentor`` is :class:`ShardAnomalies`; the global
  (gradient-ascent) synthesis is kept. GLASS's augmentor works in [0, 1] pixels and the batch is
  ImageNet-normalised by the pre-processor, so the sample is handed over in pixels.

In every case a batch item is (image = the shard sample, gt_mask, gt_label, normal = its own normal;
for a normal item image = normal). The ``own`` variants are the unmodified classes.

What cannot take shards soundly, and stays the model's own:
- DSR's phases 1-2 make their anomalies in its quantized latent space (``DsrAnomalyGenerator`` swaps
  codebook entries inside a Perlin mask) to train the object-specific decoder to *undo* them; a pixel-space
  anomaly has no such latent target, so only phase 3 (the upsampling module, trained on image + mask) is fed.
- SuperSimpleNet's supervised mode in its paper (JIMS 2025) adds its feature noise on top of real labelled
  defects; with shards that noise would be a second synthesis and the comparison with ``own`` would no
  longer isolate synthgen's anomalies, so it is removed (a choice; run.json says ``anomalies: shards``).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from synthgen.generator.errors import SynthgenError
from synthgen.generator.safe_load import load_state_dict_checked, load_torch_file

#: the method name of these runs (run.json, the synthgen-eval loader registry, the synthgen-train command)
METHOD = "anomalib"

MODELS = ("supersimplenet", "draem", "dsr", "glass")
#: DSR's pretrained discrete (VQ) model, published by anomalib (dsr_vq_model_pretrained.zip); never downloaded here
DSR_VQ_FILE = "vq_model_pretrained_128_4096.pckl"


class ShardAnomalies(nn.Module):
    """Stands where a model's Perlin generator stood: ``forward(normal)`` returns the build's anomalous
    images and masks (B, 1, H, W) of the current batch, handed over with :meth:`feed` by the training step.
    Called without a fed batch, or with images of another shape, it raises: nothing else may be synthesized."""

    def __init__(self) -> None:
        super().__init__()
        self._fed: tuple[torch.Tensor, torch.Tensor] | None = None
        self.calls = 0  # how many batches it handed out (tests read it)

    def feed(self, anomalous: torch.Tensor, masks: torch.Tensor) -> None:
        self._fed = (anomalous, masks.float().reshape(len(masks), 1, *masks.shape[-2:]))

    def forward(self, normal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._fed is None:
            raise RuntimeError("ShardAnomalies: no shard batch was fed for this step")
        anomalous, masks = self._fed
        if anomalous.shape != normal.shape:
            raise RuntimeError(f"ShardAnomalies: fed images {tuple(anomalous.shape)} do not match the step's {tuple(normal.shape)}")
        self._fed = None
        self.calls += 1
        return anomalous, masks


class NoFeatureNoise(nn.Module):
    """SuperSimpleNet's ``anomaly_generator`` without its Perlin feature noise: features, masks and labels
    pass unchanged (the shards' anomalies are the only synthetic ones)."""

    def forward(self, input_features, adapted_features, masks, labels):
        return input_features, adapted_features, masks, labels


def _pair_step(batch, anomalous: torch.Tensor, normal: torch.Tensor, augmenter: ShardAnomalies, step):
    """Feed the shard sample to ``augmenter`` and run the parent's training step on its own normal."""
    augmenter.feed(anomalous, batch.gt_mask)
    return step(replace(batch, image=normal))


@functools.cache
def _classes() -> dict[str, dict[str, type]]:
    """The anomalib classes and their shard-fed subclasses (anomalib imported on first use only)."""
    from anomalib.data.transforms.utils import extract_transforms_by_type
    from anomalib.models import Draem, Dsr, Glass, Supersimplenet
    from torchvision.transforms.v2 import Normalize

    class OfflineDsr(Dsr):
        """DSR whose pretrained discrete model is a local file read through the safe loader
        (anomalib's ``on_train_start`` downloads it and unpickles it itself)."""

        def __init__(self, vq_weights: str | None = None, **kwargs):
            super().__init__(**kwargs)
            self.vq_weights = vq_weights

        def on_train_start(self) -> None:
            if self.pre_processor and extract_transforms_by_type(self.pre_processor.transform, Normalize):
                raise ValueError("Transforms for DSR should not contain Normalize.")
            if self.vq_weights is None:  # a resumed or loaded model carries the weights in its state dict
                return
            state = load_torch_file(self.vq_weights, "DSR discrete model weights")
            load_state_dict_checked(self.model.discrete_latent_model, state, self.vq_weights, "DSR discrete model weights")

    class ShardSupersimplenet(Supersimplenet):
        def __init__(self, **kwargs):
            super().__init__(supervised=True, **kwargs)
            self.model.anomaly_generator = NoFeatureNoise()

    class ShardDraem(Draem):
        def __init__(self, **kwargs):
            # Draem's constructor downloads DTD when dtd_dir does not exist; its augmenter is replaced right
            # away, so an empty folder (no texture is ever read) keeps it from trying
            with tempfile.TemporaryDirectory() as no_textures:
                super().__init__(dtd_dir=no_textures, **kwargs)
            self.augmenter = ShardAnomalies()

        def training_step(self, batch, *args, **kwargs):
            return _pair_step(batch, batch.image, batch.normal, self.augmenter, lambda b: super(ShardDraem, self).training_step(b, *args, **kwargs))

    class ShardDsr(OfflineDsr):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.perlin_generator = ShardAnomalies()

        def training_step(self, batch):
            return _pair_step(batch, batch.image, batch.normal, self.perlin_generator, lambda b: super(ShardDsr, self).training_step(b))

    class ShardGlass(Glass):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.model.augmentor = ShardAnomalies()

        def training_step(self, batch, batch_idx):
            mean, std = self.model._img_mean, self.model._img_std
            pixels = batch.image * std + mean  # the pre-processor normalised the sample; GLASS's augmentor is in pixels
            normal = (batch.normal - mean) / std  # the normal field is not pre-processed: normalise it like image
            return _pair_step(batch, pixels, normal, self.model.augmentor, lambda b: super(ShardGlass, self).training_step(b, batch_idx))

    return {
        "own": {"supersimplenet": Supersimplenet, "draem": Draem, "dsr": OfflineDsr, "glass": Glass},
        "shards": {"supersimplenet": ShardSupersimplenet, "draem": ShardDraem, "dsr": ShardDsr, "glass": ShardGlass},
    }


def find_dsr_weights(weights_dir: str | Path | None) -> Path:
    """DSR's pretrained discrete model file in ``weights_dir`` (or $SYNTHGEN_WEIGHTS); a one-line refusal when absent."""
    from synthgen.generator.models.weights import weights_folder

    folder = weights_folder(weights_dir)
    found = next((p for p in sorted(folder.rglob(DSR_VQ_FILE)) if p.is_file()), None) if folder is not None else None
    if found is None:
        raise SynthgenError(
            f"dsr: its pretrained discrete model {DSR_VQ_FILE} was not found in {folder or '--weights-dir (not given)'}; "
            "get dsr_vq_model_pretrained.zip from anomalib's releases and pass its folder with --weights-dir "
            "(synthgen never downloads, and DSR cannot be trained without it)"
        )
    return found


def model_class(name: str, anomalies: str) -> type:
    """The class to train ``name`` with: ``anomalies`` is "own" (built-in synthesis) or "shards"."""
    if name not in MODELS:
        raise SynthgenError(f"--model: expected one of {', '.join(MODELS)}, got {name!r}")
    return _classes()[anomalies][name]
