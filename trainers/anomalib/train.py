"""``synthgen-train anomalib``: train one of anomalib's models, fed by a synthgen build or by its own synthesis.

A run folder like every trainer's (trainers/base.py): run.json (status, anomalib's version, the model's
constructor arguments, the build's manifest sha256 and strategies or the dataset read, the backbone's
weights file and sha256), model.pt (the module's state dict and how to rebuild it; loaded by
:mod:`.loader` through the safe loader), checkpoints/last.ckpt (``--resume``), logs/ (CSV logs, and
logs/engine/: the workspace anomalib's Engine sets up).

Same budget for ``own`` and ``shards``: ``--epochs`` of ``--batch-size``; an epoch is every training item
once (shards: the build's anomalous samples plus the normal share; own: the train split's normal images),
so compare runs by steps too (run.json ``steps``).
"""

from __future__ import annotations

from pathlib import Path

import click
import lightning as L
import torch

from synthgen.generator.errors import SynthgenError
from synthgen.generator.models.backbones import architecture

from ..base import write_model_file
from ..lightning_utils import fit_select_and_finish, resolve_device, start_run, trainer_arguments
from ..shard_features import build_provenance
from .backbones import resolve_backbone
from .data import DEFAULT_ANOMALOUS_FRACTION, NormalTrainingSet, ShardTrainingSet, training_loader
from .models import METHOD, MODELS, find_dsr_weights, model_class

MODEL_FORMAT = 1
ANOMALIES = ("shards", "own")
#: models that read ImageNet features (SuperSimpleNet and GLASS); DRAEM and DSR have none
BACKBONE_MODELS = ("supersimplenet", "glass")
#: the papers' layers 2 and 3, as synthgen's layer aliases (efficientnet_lite0: blocks.2 and blocks.4)
LAYERS = ("layer2", "layer3")
DEFAULT_IMAGE_SIZE = 256
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 8


def model_arguments(model: str, anomalies: str, image_size: tuple[int, int], backbone: dict | None, textures: Path | None,
                    dsr_weights: Path | None) -> dict:
    """The constructor arguments of the anomalib model (plain data: run.json and model.pt record them)."""
    args: dict = {}
    if backbone is not None:
        arch = architecture(backbone["name"])
        layers = [arch.layers[name].stage for name in LAYERS]
        args.update(backbone=backbone["timm_name"], layers=layers)
        if model == "glass":
            args.update(input_shape=list(image_size), anomaly_source_path=str(textures) if anomalies == "own" and textures else None)
    if model == "draem" and anomalies == "own":
        args["dtd_dir"] = str(textures)
    if model == "dsr":
        args["vq_weights"] = str(dsr_weights)
    return args


def build_module(model: str, anomalies: str, args: dict, image_size: tuple[int, int], backbone_name: str | None):
    """The anomalib module with the pre-processor for ``image_size`` (backbone models: the backbone's own
    input normalisation, e.g. EfficientNet-Lite's 127/128, instead of anomalib's ImageNet default)."""
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    cls = model_class(model, anomalies)
    kwargs = dict(args)
    if model == "glass" and "input_shape" in kwargs:
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    if backbone_name is not None:
        arch = architecture(backbone_name)
        kwargs["pre_processor"] = PreProcessor(transform=Compose([Resize(image_size, antialias=True),
                                                                  Normalize(mean=list(arch.mean), std=list(arch.std))]))
    else:
        kwargs["pre_processor"] = cls.configure_pre_processor(image_size)
    return cls(**kwargs)


def _check(model: str, anomalies: str, shards, dataset, category, textures, epochs: int, batch_size: int) -> None:
    if model not in MODELS:
        raise SynthgenError(f"--model: expected one of {', '.join(MODELS)}, got {model!r}")
    if anomalies not in ANOMALIES:
        raise SynthgenError(f"--anomalies: expected shards or own, got {anomalies!r}")
    if epochs < 1:
        raise SynthgenError(f"--epochs: must be at least 1, got {epochs}")
    if batch_size < 2:
        raise SynthgenError(f"--batch-size: must be at least 2 (batch norm layers), got {batch_size}")
    if anomalies == "shards" and shards is None:
        raise SynthgenError("--shards: required (or --anomalies own with --dataset and --category)")
    if anomalies == "own":
        if shards is not None:
            raise SynthgenError("--anomalies own trains with the model's own synthesis: drop --shards")
        if dataset is None or category is None:
            raise SynthgenError("--anomalies own: --dataset and --category name the normal training images")
        if model == "draem" and textures is None:
            raise SynthgenError("--anomalies own --model draem: --textures DIR is required (DRAEM would download DTD)")
    if textures is not None and not Path(textures).is_dir():
        raise SynthgenError(f"--textures: {textures} is not a folder (anomalib would try to download DTD there)")


def train(
    out: str | Path,
    *,
    model: str,
    anomalies: str = "shards",
    shards: str | Path | None = None,
    dataset: str | None = None,
    root: str | Path | None = None,
    category: str | None = None,
    textures: str | Path | None = None,
    backbone: str = "efficientnet_lite0",
    weights_dir: str | Path | None = None,
    image_size: tuple[int, int] = (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE),
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    anomalous_fraction: float = DEFAULT_ANOMALOUS_FRACTION,
    seed: int = 0,
    device: str = "auto",
    workers: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train ``model`` into the run folder ``out`` (or continue it with ``resume``) with anomalib's Engine;
    returns ``out``."""
    import anomalib
    from anomalib.callbacks.checkpoint import ModelCheckpoint as AnomalibCheckpoint
    from anomalib.engine import Engine

    out = Path(out)
    textures = Path(textures) if textures is not None else None
    _check(model, anomalies, shards, dataset, category, textures, epochs, batch_size)
    device = resolve_device(device)
    image_size = tuple(int(v) for v in image_size)
    backbone_info = resolve_backbone(backbone, weights_dir) if model in BACKBONE_MODELS else None
    dsr_weights = find_dsr_weights(weights_dir) if model == "dsr" else None
    click.echo(backbone_info["summary"] if backbone_info else
               f"{model}: no ImageNet backbone" + (f"; discrete model {dsr_weights}" if dsr_weights else ""), err=True)

    if anomalies == "shards":
        data_provenance = build_provenance(shards)
        train_set = ShardTrainingSet(shards, image_size, anomalous_fraction, seed)
    else:
        train_set = NormalTrainingSet(dataset, root, category, image_size)
        data_provenance = {"dataset": dataset, "root": str(root) if root is not None else None, "category": category,
                           "split": "train (normal)", "textures": str(textures) if textures else None}
    args = model_arguments(model, anomalies, image_size, backbone_info, textures, dsr_weights)
    config = {
        "model": model, "anomalies": anomalies, "model_arguments": args, "image_size": list(image_size), "epochs": epochs,
        "batch_size": batch_size, "anomalous_fraction": anomalous_fraction if anomalies == "shards" else None,
        "backbone": backbone_info["name"] if backbone_info else None, "seed": seed, "device": device, "workers": workers,
    }
    provenance = {
        "seed": seed, "data": data_provenance, "training_items": train_set.counts, "anomalib_version": anomalib.__version__,
        "backbone": {k: backbone_info[k] for k in ("name", "weights", "sha256")} if backbone_info else None,
    }
    last = start_run(out, METHOD, config, provenance, resume=resume)

    L.seed_everything(seed, workers=True, verbose=False)
    module = build_module(model, anomalies, args, image_size, backbone_info["name"] if backbone_info else None)
    loader = training_loader(train_set, batch_size, seed, workers)
    arguments, checkpoint = trainer_arguments(out, epochs=epochs, device=device, monitor=None, steps_per_epoch=len(loader),
                                              progress=progress, checkpoint_class=AnomalibCheckpoint)
    # anomalib's Engine builds the Trainer from these arguments plus the model's own (SuperSimpleNet's
    # gradient clipping, no sanity validation) and its callbacks; its default_root_dir gets a versioned
    # folder per model, kept under the run's logs/ (our checkpoints and CSV logs have their own paths)
    arguments["default_root_dir"] = out / "logs" / "engine"
    engine = Engine(**arguments)

    def fit(module, loader, resume_from):  # training batches only: real images never take part in training
        engine.fit(module, train_dataloaders=loader, ckpt_path=resume_from)
        return engine.trainer

    def save(trained) -> Path:
        blob = {"model": model, "anomalies": anomalies, "arguments": args, "image_size": list(image_size),
                "backbone": backbone_info["name"] if backbone_info else None, "state_dict": trained.state_dict()}
        return write_model_file(out, METHOD, MODEL_FORMAT, blob)

    fit_select_and_finish(out, None, checkpoint, module, loader, resume_from=last, select="last", epochs=epochs,
                          save_model=save, fit=fit)
    return out
