"""What LogicAL reads from a synthgen build, checked before training, and how a sample is prepared.

Field contract (per sample, on top of the core fields of ``generator/shards/format.py``):

=========  ===============  ======================  ===================================================
field      shape            dtype                   meaning
=========  ===============  ======================  ===================================================
image      (H, W, 3)        uint8                   the synthetic anomaly image (network input)
mask       (H, W)           uint8 0/255             ground truth of the localization sub-network
normal     (H, W, 3)        uint8                   the clean image to reconstruct (L_img target)
edge       (1, H, W)        uint8 = round(255 p)    PiDiNet's first-scale edge probability p of the
                                                    *normal* image (LogicAL Sec. 4.2: the first scale
                                                    "contains more detail edges"), the L_edge target
jnd        (1, H, W)        float16 / float32, or   normalised JND map of the *normal* image in [0, 1]
                            uint8 (value / 255)     (LogicAL Sec. 3.2), the L_jnd target
has_edge   ()               uint8                   1 where the sample's strategy wrote ``edge``
has_jnd    ()               uint8                   1 where the sample's strategy wrote ``jnd``
=========  ===============  ======================  ===================================================

``has_<extra>`` is written by the shard writer for every extra field; rows with 0 are left out of the
corresponding loss term (see losses.py). The build is read through trainers.data.SynthgenDataModule
with :data:`EXTRA_FIELDS` and :func:`prepare_sample`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthgen.generator.errors import SynthgenError
from synthgen.generator.shards.untrusted import check_shard, existing_shard_paths, open_shard, read_manifest

EXTRA_FIELDS = ("edge", "jnd", "has_edge", "has_jnd")
JND_DTYPES = ("uint8", "float16", "float32")


def check_build(build_dir: Path) -> None:
    """One-line error unless every shard of the build carries LogicAL's fields, shaped as the contract says."""
    manifest = read_manifest(build_dir)
    for entry, path in zip(manifest["shards"], existing_shard_paths(build_dir, manifest)):
        with open_shard(path) as f:
            missing = [name for name in EXTRA_FIELDS if name not in f]
            if missing:
                raise SynthgenError(
                    f"{path}: shard has no {missing[0]!r} field; LogicAL trains on builds whose strategy stores "
                    f"the normal image's edge and JND maps (the logical strategies)"
                )
            check_shard(f, path, ("image", *EXTRA_FIELDS), entry["num_samples"], manifest["config"]["image_size"])
            h, w = f["image"].shape[1:3]
            if f["edge"].shape[1:] != (1, h, w) or f["edge"].dtype != np.uint8:
                raise SynthgenError(f"{path}: 'edge' must be uint8 (N, 1, {h}, {w}), got {f['edge'].dtype} {f['edge'].shape}")
            if f["jnd"].shape[1:] != (1, h, w) or f["jnd"].dtype.name not in JND_DTYPES:
                raise SynthgenError(
                    f"{path}: 'jnd' must be (N, 1, {h}, {w}) of {'/'.join(JND_DTYPES)}, got {f['jnd'].dtype} {f['jnd'].shape}"
                )


def prepare_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Edge and JND maps as float (1, H, W) in [0, 1], ``has_*`` as booleans (what losses.py takes)."""
    jnd = sample["jnd"]
    sample["jnd"] = jnd.float() / 255.0 if jnd.dtype == torch.uint8 else jnd.float()
    sample["edge"] = sample["edge"].float() / 255.0
    sample["has_edge"] = sample["has_edge"].bool()
    sample["has_jnd"] = sample["has_jnd"].bool()
    return sample
