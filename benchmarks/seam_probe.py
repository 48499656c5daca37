"""Seam probe: can a linear classifier on frozen ImageNet features tell the inpaint renderer's seam?

The inpaint renderer pastes generated pixels into the real photo with a feathered border. If that
border (the seam) leaves a trace a network can see, a detector trained on the shards can learn
"this patch was re-rendered" instead of "this part breaks a rule". The seam guard stores identity
inpaints (the region re-rendered from its own, unedited edges) as normals; this probe measures how
visible the seam is in the first place.

Data: the identity samples of a build (make one with ``--set <strategy>.identity_fraction=1``). For
each, the seam band is, for the inpaint renderer, the part of the re-rendered hole where the blend
weight is strictly between 0 and 1, plus the hole's outermost 2 px; for the real renderer, every
pixel the generator painted (its whole band around the region's outline, SEAM_BAND px either side:
that band is the only place where its pixels differ from the photo). ``--band painted`` probes every
painted pixel for both renderers (the inpaint renderer's whole hole), so the two compare on equal terms. Patches: EfficientNet-Lite0 ImageNet features (blocks.1 at
stride 4 and blocks.2 upsampled to it, 64 channels), at the stride-4 positions whose centre lies in
the seam band. Positives: those positions in the identity sample; negatives: the same positions in
the sample's real normal photo (so location cannot give the answer, only the pixels). A logistic
regression (scikit-learn, standardised features) is trained on the samples of half of the source
images and scored on the other half: held-out AUROC. 0.5 = the seam is invisible to the probe.

    python benchmarks/seam_probe.py BUILD [--seed 0] [--band seam|painted]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from logical_mask_iou import edited_region, logical_samples  # noqa: E402

from synthgen.generator.models.backbones import Backbone  # noqa: E402
from synthgen.generator.models.inpaint import HOLE_DILATION, dilate, holes_and_weights  # noqa: E402
from synthgen.generator.models.real_pixels import SEAM_BAND, outline  # noqa: E402

STRIDE = 4
LAYERS = ("blocks.1", "blocks.2")


def seam_band(region: np.ndarray, renderer: str = "inpaint", painted: bool = False) -> np.ndarray:
    """Bool (H, W): blend weight strictly inside (0, 1), or the hole's outermost 2 px (inpaint); the
    whole painted band (real); with ``painted``, every pixel the renderer painted."""
    if renderer == "real":
        return dilate(outline(torch.from_numpy(region)[None].float()), SEAM_BAND)[0].numpy() > 0
    hole, weight = holes_and_weights(torch.from_numpy(region)[None].float(), HOLE_DILATION)
    if painted:
        return (weight > 0)[0].numpy()
    rim = hole * dilate(1 - hole, 2)  # hole pixels within 2 px of the outside
    return (((weight > 0) & (weight < 1)) | (rim > 0))[0].numpy()


def patch_features(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """(B, 64, H/4, W/4) features: blocks.1 with blocks.2 upsampled to its grid."""
    with torch.no_grad():
        maps = backbone(images)
    fine = maps["blocks.1"]
    coarse = F.interpolate(maps["blocks.2"], size=fine.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([fine, coarse], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="which half of the source images trains the probe")
    parser.add_argument("--band", choices=("seam", "painted"), default="seam", help="where to probe (see above)")
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    samples, regions, config = logical_samples(args.build, identity=True)
    backbone = Backbone("efficientnet_lite0", LAYERS)
    rows: dict[str, list] = {"x": [], "y": [], "source": []}
    for s in samples:
        band = seam_band(edited_region(s, regions), config.renderer, painted=args.band == "painted")
        h, w = band.shape
        centres = band[STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE][: h // STRIDE, : w // STRIDE]
        if not centres.any():
            continue
        features = patch_features(backbone, torch.stack([s["image"], s["normal"]]))
        features = features[:, :, : centres.shape[0], : centres.shape[1]].permute(0, 2, 3, 1).numpy()
        for label, feature in ((1, features[0]), (0, features[1])):
            picked = feature[centres]
            rows["x"].append(picked)
            rows["y"].append(np.full(len(picked), label))
            rows["source"].append(np.full(len(picked), s["source_id"], dtype=object))
    x, y, source = (np.concatenate(rows[k]) for k in ("x", "y", "source"))
    ids = np.array(sorted(set(source)), dtype=object)
    train_ids = set(np.random.default_rng(args.seed).permutation(ids)[: len(ids) // 2])
    train = np.array([s in train_ids for s in source])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    probe.fit(x[train], y[train])
    auroc = roc_auc_score(y[~train], probe.predict_proba(x[~train])[:, 1])
    train_auroc = roc_auc_score(y[train], probe.predict_proba(x[train])[:, 1])
    print(json.dumps({"build": str(args.build), "identity_samples": len(samples), "sources": len(ids),
                      "patches_train": int(train.sum()), "patches_test": int((~train).sum()),
                      "train_auroc": round(float(train_auroc), 3), "heldout_auroc": round(float(auroc), 3)}))


if __name__ == "__main__":
    main()
