"""synthgen-train anomalib (trainers/anomalib): anomalib's own classes on CPU at 64 px for a few steps, no mocks
of anomalib. Perlin generators are made to raise (a test fails if a model still synthesizes its own
anomalies), anomalib's loss functions are wrapped to record what a step trained on, and the network is cut."""

from __future__ import annotations

import json
import shutil
import socket

import h5py
import numpy as np
import pytest
import torch

pytest.importorskip("anomalib")

from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator  # noqa: E402
from anomalib.models.image.draem.loss import DraemLoss  # noqa: E402

from synthgen.generator.errors import SynthgenError  # noqa: E402
from synthgen.generator.shards.reader import ShardDataset  # noqa: E402
from synthgen.trainers.anomalib.data import ShardTrainingSet, training_loader  # noqa: E402
from synthgen.trainers.anomalib.models import ShardAnomalies  # noqa: E402
from synthgen.trainers.anomalib.train import build_module, model_arguments, train  # noqa: E402
from synthgen.trainers.anomalib.backbones import resolve_backbone  # noqa: E402
from synthgen.trainers.base import MODEL_FILE, RUN_FILE, load_model  # noqa: E402
from synthgen.trainers.cli import eval_main, train_main  # noqa: E402

SIZE = 64
TINY = dict(image_size=(SIZE, SIZE), epochs=1, batch_size=4, device="cpu", progress=False)


@pytest.fixture(scope="module")
def demo_build(draem_demo_build):
    return draem_demo_build  # tests/conftest.py: 24 draem samples of the demo at 64x64


@pytest.fixture
def no_perlin(monkeypatch):
    """Every Perlin generator of anomalib raises: DRAEM/DSR/GLASS's PerlinAnomalyGenerator and SuperSimpleNet's feature noise."""
    from anomalib.models.image.supersimplenet import anomaly_generator

    def refuse(*args, **kwargs):
        raise AssertionError("anomalib's Perlin generator was called")

    monkeypatch.setattr(PerlinAnomalyGenerator, "forward", refuse)
    monkeypatch.setattr(anomaly_generator, "generate_perlin_noise", refuse)


@pytest.fixture
def no_network(monkeypatch, offline_weights):
    """A connection attempt fails the test (and is recorded, in case a library swallows the error)."""
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise AssertionError(f"network access to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_training_items_pair_each_anomalous_sample_with_its_own_normal(demo_build):
    data = ShardTrainingSet(demo_build, (SIZE, SIZE), anomalous_fraction=0.25, seed=0)
    shards = ShardDataset(demo_build, fields=("image", "mask", "normal"))
    n_anomalous = sum(shards[i]["label"] for i in range(len(shards)))
    assert data.counts["anomalous"] == n_anomalous and data.counts["normal"] == 3 * n_anomalous
    batch = next(iter(training_loader(data, 4, seed=0)))
    assert type(batch).__name__ == "PairedImageBatch" and batch.gt_mask.shape == (4, SIZE, SIZE)
    for k, (index, use_normal) in enumerate(data.items[:6]):
        item, sample = data[k], shards[index]
        assert torch.equal(item.normal, sample["normal"])
        if use_normal:
            assert torch.equal(item.image, sample["normal"]) and not item.gt_mask.any() and item.gt_label == 0
        else:
            assert torch.equal(item.image, sample["image"]) and torch.equal(item.gt_mask, sample["mask"][0] > 0.5)


def test_draem_reconstructs_the_pairs_own_normal_from_the_shard_sample(demo_build, monkeypatch, no_perlin):
    seen = []
    original = DraemLoss.forward

    def record(self, input_image, reconstruction, anomaly_mask, prediction):
        seen.append((input_image.detach().clone(), anomaly_mask.detach().clone()))
        return original(self, input_image, reconstruction, anomaly_mask, prediction)

    monkeypatch.setattr(DraemLoss, "forward", record)
    module = build_module("draem", "shards", {}, (SIZE, SIZE), None)
    inputs = []
    module.model.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach().clone()))
    data = ShardTrainingSet(demo_build, (SIZE, SIZE), 0.5, seed=0)
    batch = next(iter(training_loader(data, 4, seed=0)))
    module.train()
    module.training_step(batch)
    target, mask = seen[0]
    assert torch.equal(target, batch.normal)  # the reconstruction target: each sample's own normal
    assert torch.equal(inputs[0], batch.image)  # what the network sees: the shard sample
    assert torch.equal(mask[:, 0], batch.gt_mask.float())  # synthgen's masks
    assert batch.gt_label.any() and not torch.equal(batch.normal, batch.image)


@pytest.mark.parametrize("model", ["supersimplenet", "glass", "draem"])
def test_training_uses_synthgen_masks_never_perlin_and_no_network(demo_build, tmp_path, model, no_perlin, no_network, monkeypatch):
    handed = []
    original = ShardAnomalies.forward

    def count(self, normal):
        out = original(self, normal)
        handed.append(out[1])
        return out

    monkeypatch.setattr(ShardAnomalies, "forward", count)
    run = train(tmp_path / "run", model=model, shards=demo_build, seed=1, **TINY)
    info = json.loads((run / RUN_FILE).read_text())
    assert info["status"] == "complete" and info["anomalib_version"]
    assert info["data"]["manifest_sha256"] and info["data"]["strategies"] == ["draem"]
    assert (run / "logs" / "engine").is_dir()  # trained through anomalib's Engine (the workspace it sets up)
    if model != "supersimplenet":  # SuperSimpleNet reads gt_mask from the batch itself (no generator to replace)
        assert handed and all(set(m.unique().tolist()) <= {0.0, 1.0} for m in handed)
        assert any(m.any() for m in handed)
    maps, scores = load_model(run).predict(torch.rand(2, 3, SIZE, SIZE))
    assert maps.shape == (2, SIZE, SIZE) and scores.shape == (2,)
    assert not no_network


def test_supersimplenet_step_receives_the_shard_masks(demo_build, no_perlin):
    backbone = resolve_backbone("efficientnet_lite0")
    args = model_arguments("supersimplenet", "shards", (SIZE, SIZE), backbone, None, None)
    module = build_module("supersimplenet", "shards", args, (SIZE, SIZE), "efficientnet_lite0")
    module.train()
    batch = next(iter(training_loader(ShardTrainingSet(demo_build, (SIZE, SIZE), 0.5, seed=0), 4, seed=0)))
    batch.image = module.pre_processor.transform(batch.image)
    _, _, masks, labels = module.model(images=batch.image, masks=batch.gt_mask, labels=batch.gt_label)
    expected = module.model.downsample_mask(batch.gt_mask, *masks.shape[-2:])
    assert torch.equal(masks, expected) and torch.equal(labels, batch.gt_label.float())  # no Perlin region added
    assert len(masks) == len(batch.image)  # not doubled with noised copies


def test_evaluation_reads_the_real_test_split_only(demo_build, tmp_path, capsys):
    run = train(tmp_path / "run", model="supersimplenet", shards=demo_build, seed=0, **TINY)
    eval_main([str(run), "--dataset", "demo", "--category", "parts_box", "--eval-size", "64", "--sheet-count", "0"])
    report = json.loads((run / "eval" / "demo-parts_box" / "report.json").read_text())
    from synthgen.generator.datasets import load_dataset

    test = load_dataset("demo", None, "parts_box").split("test")
    assert report["timing"]["images"] == len(test)
    shards = ShardDataset(demo_build, fields=("image",))
    shard_pixels = {shards[i]["image"].numpy().tobytes() for i in range(len(shards))}
    from synthgen.trainers.data import RealTestImages

    real = RealTestImages(test, (SIZE, SIZE), gray=False)
    assert not any(real[i]["image"].numpy().tobytes() in shard_pixels for i in range(len(real)))
    assert all(demo_build.resolve() not in item.path.resolve().parents for item in test)


def test_resume_finishes_the_run(demo_build, tmp_path):
    out = tmp_path / "run"
    train(out, model="supersimplenet", shards=demo_build, seed=0, **{**TINY, "epochs": 1})
    (out / MODEL_FILE).unlink()
    info = json.loads((out / RUN_FILE).read_text())
    info["config"]["epochs"] = 2  # as if started with --epochs 2 and interrupted after the first
    (out / RUN_FILE).write_text(json.dumps(info))
    train(out, model="supersimplenet", shards=demo_build, seed=0, resume=True, **{**TINY, "epochs": 2})
    assert json.loads((out / RUN_FILE).read_text())["epochs_trained"] == 2
    load_model(out)


def _damaged_copy(build_dir, tmp_path, edit):
    copy = tmp_path / "build"
    shutil.copytree(build_dir, copy)
    shard = next(copy.glob("*.h5"))
    with h5py.File(shard, "r+") as f:
        edit(f)
    return copy, shard


def _one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as done:
        train_main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("synthgen-train: error: ")
    return err[-1]


def test_a_build_without_anomalous_samples_is_a_one_line_error(demo_build, tmp_path, capsys):
    copy, _ = _damaged_copy(demo_build, tmp_path, lambda f: f["label"].write_direct(np.zeros(f["label"].shape, f["label"].dtype)))
    line = _one_line_error(capsys, ["anomalib", "--model", "draem", "--shards", str(copy), "--out", str(tmp_path / "run"), "--image-size", "64", "--quiet"])
    assert "no anomalous samples" in line and str(copy) in line
    assert not (tmp_path / "run" / MODEL_FILE).exists()


def test_masks_of_another_size_are_a_one_line_error(demo_build, tmp_path, capsys):
    def shrink(f):
        masks = f["mask"][...]
        del f["mask"]
        f.create_dataset("mask", data=masks[:, :32, :32], chunks=(1, 32, 32))

    copy, shard = _damaged_copy(demo_build, tmp_path, shrink)
    line = _one_line_error(capsys, ["anomalib", "--model", "draem", "--shards", str(copy), "--out", str(tmp_path / "run"), "--image-size", "64", "--quiet"])
    assert str(shard.name) in line and "mask" in line


def test_missing_weights_and_unknown_backbones_are_refused_not_downloaded(demo_build, tmp_path, capsys, no_network):
    line = _one_line_error(capsys, ["anomalib", "--model", "dsr", "--shards", str(demo_build), "--out", str(tmp_path / "a"), "--quiet"])
    assert "vq_model_pretrained_128_4096.pckl" in line
    line = _one_line_error(capsys, ["anomalib", "--model", "glass", "--shards", str(demo_build), "--out", str(tmp_path / "b"), "--backbone", "wide_resnet50_2", "--quiet"])
    assert "wide_resnet50_2" in line and "not found" in line
    line = _one_line_error(capsys, ["anomalib", "--model", "supersimplenet", "--shards", str(demo_build), "--out", str(tmp_path / "c"), "--backbone", "vit_base_patch16_224", "--quiet"])
    assert "no offline weights" in line
    line = _one_line_error(capsys, ["anomalib", "--model", "draem", "--anomalies", "own", "--dataset", "demo", "--category", "parts_box", "--out", str(tmp_path / "d"), "--quiet"])
    assert "--textures" in line
    assert not no_network


@pytest.mark.slow
def test_dsr_phase_three_takes_the_shards(demo_build, tmp_path, no_perlin, monkeypatch):
    """DSR needs anomalib's pretrained discrete model; here a stand-in file (an untrained one, written by
    the test) so that the plumbing can be checked offline. 3 epochs: phase 3 is the last (0.7 of the epochs)."""
    from anomalib.models import Dsr

    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(Dsr().model.discrete_latent_model.state_dict(), weights / "vq_model_pretrained_128_4096.pckl")
    handed = []
    original = ShardAnomalies.forward
    monkeypatch.setattr(ShardAnomalies, "forward", lambda self, normal: handed.append(1) or original(self, normal))
    train(tmp_path / "run", model="dsr", shards=demo_build, weights_dir=weights, seed=0, **{**TINY, "epochs": 3})
    assert handed  # phase 3 ran on shard batches, and no Perlin generator was called
    assert load_model(tmp_path / "run").predict(torch.rand(2, 3, SIZE, SIZE))[0].shape == (2, SIZE, SIZE)


def test_the_command_line_does_not_import_anomalib():
    """anomalib is an optional extra: synthgen-train and synthgen-eval start without it."""
    import subprocess
    import sys

    code = "import sys, synthgen.trainers.cli; print('anomalib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
