"""GLASS (trainers/glass) and what it shares with PBAS --anomaly-shards (trainers/shard_features.py):
masks on the feature grid, the checked feature cache, the truncated projection and gradient ascent of
the global synthesis, hard mining, and short real runs on a demo build (loss falls, synthetic anomalies
score above normals, resume, run.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthgen.generator.errors import SynthgenError
from synthgen.generator.shards.reader import ShardDataset
from synthgen.trainers.base import MODEL_FILE, RUN_FILE, load_model
from synthgen.trainers.cli import train_main
from synthgen.trainers.glass.model import (
    GAS_HYPERSPHERE_BAND,
    GAS_MANIFOLD_BAND,
    global_anomalies,
    hardest,
    local_anomalies,
    truncate_to_band,
)
from synthgen.trainers.glass.options import GLASSOptions
from synthgen.trainers.glass.train import steps_per_epoch, train
from synthgen.trainers.metrics import image_auroc
from synthgen.trainers.feature_heads import MLPDiscriminator
from synthgen.trainers.shard_features import mask_to_grid, shard_features

SIZE = 64
#: A few seconds on one core: lite0 at 64 px, 32-dimensional features.
TINY = dict(backbone="efficientnet_lite0", embed_dim=32, hidden=32, image_size=(SIZE, SIZE), batch_size=4, lr=1e-3, device="cpu", progress=False)


@pytest.fixture(scope="module")
def demo_build(draem_demo_build):
    return draem_demo_build  # tests/conftest.py: 24 draem samples of the demo at 64x64


# ----------------------------------------------------------------------------------------- pieces


def test_mask_to_grid_marks_a_cell_with_any_anomalous_pixel():
    mask = torch.zeros(1, 1, 10, 12)
    mask[0, 0, 9, 11] = 1  # one pixel in the last cell
    mask[0, 0, 0, 4] = 1  # a pixel on the border of two cells of a 3-wide grid? 12/3 = 4: cell 1 only
    grid = mask_to_grid(mask, (2, 3))
    assert grid.shape == (1, 6) and grid.tolist() == [[0, 1, 0, 0, 0, 1]]
    # divisible sizes: the same as the official code's max_pool2d by the image-to-grid ratio
    masks = (torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.97).float()
    official = torch.nn.functional.max_pool2d(masks[:, None], (8, 8)).flatten(1)
    assert torch.equal(mask_to_grid(masks, (4, 4)), official)


def test_truncated_projection_holds_points_to_the_band():
    origins = torch.zeros(4, 3)
    points = torch.tensor([[0.1, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 0.0, 5.0], [3.0, 4.0, 0.0]])
    out = truncate_to_band(points, origins, 1.0, 2.0)
    assert torch.allclose(out.norm(dim=1), torch.tensor([1.0, 1.5, 2.0, 2.0]))
    assert torch.allclose(out[3], torch.tensor([1.2, 1.6, 0.0]))  # the direction is kept


@pytest.mark.parametrize("distribution", ["hypersphere", "manifold"])
def test_global_anomalies_end_in_their_band_and_keep_the_gradient_to_u(distribution):
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(64, 16, generator=g).requires_grad_(True)
    centers = torch.zeros(64, 16)
    radius = torch.tensor(4.0)
    disc = MLPDiscriminator(16, hidden=8)
    points = global_anomalies(disc, normal, centers, radius, torch.Generator().manual_seed(1), distribution)
    # 20 steps: the last one is a projection, so every point sits in the band
    if distribution == "hypersphere":
        distances, (low, high) = points.detach().norm(dim=1), (4.0 * GAS_HYPERSPHERE_BAND[0], 4.0 * GAS_HYPERSPHERE_BAND[1])
    else:
        distances, (low, high) = (points - normal).detach().norm(dim=1), GAS_MANIFOLD_BAND
    assert (distances >= low - 1e-4).all() and (distances <= high + 1e-4).all()
    points.sum().backward()
    assert torch.allclose(normal.grad, torch.ones_like(normal))  # g = u + a detached offset


def test_local_anomalies_are_pushed_out_inside_the_mask_only():
    features = torch.ones(4, 2)
    masks = torch.tensor([1.0, 0.0, 1.0, 0.0])
    out = local_anomalies(features, masks, torch.zeros(4, 2), torch.tensor(1.0))
    assert torch.allclose(out[masks > 0].norm(dim=1), torch.full((2,), 2.0))  # sqrt(2) < 2 r_t
    assert torch.equal(out[masks == 0], features[masks == 0])
    assert torch.equal(local_anomalies(features, masks, torch.zeros(4, 2), torch.tensor(1.0), "manifold"), features)


def test_hard_mining_keeps_the_worse_half():
    scores = torch.tensor([0.1, 0.9, 0.4, 0.6])
    targets = torch.tensor([0.0, 0.0, 1.0, 1.0])  # squared errors 0.01, 0.81, 0.36, 0.16
    kept, kept_targets = hardest(scores, targets)
    assert torch.equal(kept, scores[[1, 2]]) and kept_targets.tolist() == [0.0, 1.0]


def test_an_epoch_stops_once_more_than_limit_samples_were_seen():
    assert steps_per_epoch(1000, 8, 392) == 50  # the code: break when sample_num > 392, after 400
    assert steps_per_epoch(30, 8, 392) == 4


# ----------------------------------------------------------------------------------- feature cache


def test_shard_features_are_cached_and_a_damaged_entry_is_recomputed(demo_build, tmp_path, capsys):
    from synthgen.trainers.backbones import Backbone
    from synthgen.trainers.features import PatchFeatureExtractor

    extractor = PatchFeatureExtractor(Backbone("resnet18", ["layer2"], weights="none"), 1, 8)
    params = {"backbone": "resnet18", "layers": ["layer2"], "weights": "none", "patch_size": 1, "embed_dim": 8}
    first = shard_features(demo_build, extractor, params, (SIZE, SIZE), cache_dir=tmp_path)
    data = ShardDataset(demo_build, fields=("mask",))
    labels = [data[i]["label"] for i in range(len(data))]
    assert len(first.anomalous) == sum(labels) > 0 and first.grid == (8, 8)
    assert first.normals.shape == (len({data[i]["source_id"] for i in range(len(data))}), 64, 8)
    first_mask = next(data[i]["mask"] for i in range(len(data)) if labels[i] == 1)
    assert torch.equal(first.masks[0], mask_to_grid(first_mask[None], (8, 8))[0])
    data.close()
    (entry,) = tmp_path.glob("*.feat")

    class Refuse(torch.nn.Module):
        def forward(self, images):
            raise AssertionError("a cached build must not be recomputed")

    again = shard_features(demo_build, Refuse(), params, (SIZE, SIZE), cache_dir=tmp_path)
    assert torch.equal(again.anomalous, first.anomalous) and torch.equal(again.sources, first.sources)

    blob = bytearray(entry.read_bytes())
    blob[-1] ^= 0xFF  # one flipped byte in the payload
    entry.write_bytes(bytes(blob))
    redone = shard_features(demo_build, extractor, params, (SIZE, SIZE), cache_dir=tmp_path)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged" in err and str(entry) in err
    assert torch.equal(redone.anomalous, first.anomalous)
    assert shard_features(demo_build, Refuse(), params, (SIZE, SIZE), cache_dir=tmp_path).normals.shape == first.normals.shape


# -------------------------------------------------------------------------------------- real runs


def _synthetic_auroc(run, build_dir) -> float:
    """Image AUROC of the model on the build's anomalous samples against their normal images."""
    model = load_model(run)
    data = ShardDataset(build_dir, fields=("image", "normal"))
    anomalous = [data[i] for i in range(len(data)) if data[i]["label"] == 1]
    data.close()
    images = torch.stack([s["image"] for s in anomalous] + [s["normal"] for s in anomalous])
    _, scores = model.predict(images)
    return image_auroc(scores.numpy(), np.r_[np.ones(len(anomalous)), np.zeros(len(anomalous))])


@pytest.fixture(scope="module")
def glass_run(demo_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("glass") / "run"
    train(GLASSOptions(out=out, shards=demo_build, epochs=15, seed=2, **TINY))
    return out


def test_glass_loss_falls_and_synthetic_anomalies_score_above_normals(glass_run, demo_build):
    rows = np.genfromtxt(glass_run / "logs" / "metrics.csv", delimiter=",", names=True)
    assert rows["loss"][-1] < 0.9 * rows["loss"][0]
    assert _synthetic_auroc(glass_run, demo_build) > 0.8
    info = json.loads((glass_run / RUN_FILE).read_text())
    assert info["method"] == "glass" and info["status"] == "complete"
    assert info["data"]["strategies"] == ["draem"] and len(info["data"]["manifest_sha256"]) == 64
    assert info["config"]["noise_std"] == 0.015 and info["config"]["ascent_steps"] == 20


def test_glass_resumes_to_the_same_model(glass_run, demo_build, tmp_path, interrupt_in_epoch):
    import synthgen.trainers.glass.train as glass_train

    out = tmp_path / "run"
    with interrupt_in_epoch(glass_train, 8), pytest.raises(KeyboardInterrupt):
        train(GLASSOptions(out=out, shards=demo_build, epochs=15, seed=2, **TINY))
    train(GLASSOptions(out=out, shards=demo_build, epochs=15, seed=2, resume=True, **TINY))
    first = torch.load(glass_run / MODEL_FILE, weights_only=True)["state_dict"]
    resumed = torch.load(out / MODEL_FILE, weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], resumed[k]) for k in first)


def test_steps_budget_cuts_the_last_epoch_and_is_recorded(demo_build, tmp_path):
    """--steps is the same budget for every build: 7 steps with 3 per epoch = 2 whole epochs + 1 step."""
    from synthgen.trainers.epoch_log import epoch_plan

    assert epoch_plan(3, 5, None) == [3] * 5 and epoch_plan(3, 5, 7) == [3, 3, 1] and epoch_plan(3, 5, 6) == [3, 3]
    with pytest.raises(SynthgenError, match="--steps: must be at least 1"):
        epoch_plan(3, 5, 0)
    out = tmp_path / "steps"
    train(GLASSOptions(out=out, shards=demo_build, steps=5, seed=2, **TINY))
    info = json.loads((out / RUN_FILE).read_text())
    assert info["config"]["steps"] == 5 and info["config"]["epochs"] is None
    assert info["optimizer_steps"] == 5
    per_epoch = info["steps_per_epoch"]
    rows = np.genfromtxt(out / "logs" / "metrics.csv", delimiter=",", names=True)
    assert len(np.atleast_1d(rows["epoch"])) == -(-5 // per_epoch) == info["epochs_trained"]


def test_cpu_preset_fills_only_the_options_left_at_their_defaults(demo_build, tmp_path):
    import click

    from synthgen.trainers.presets import PRESETS, preset_values

    defaults = {"backbone": "wide_resnet50_2", "embed_dim": 1536, "hidden": 1024, "ascent_steps": 20}
    assert preset_values("cpu", defaults) == {**defaults, **PRESETS["cpu"]}
    assert preset_values("paper", defaults) == defaults
    command = click.Command("t", params=[click.Option(["--backbone"], default="wide_resnet50_2"), click.Option(["--embed-dim"], default=1536)])
    ctx = command.make_context("t", ["--backbone", "resnet18"])
    chosen = preset_values("cpu", {"backbone": "resnet18", "embed_dim": 1536}, ctx)
    assert chosen == {"backbone": "resnet18", "embed_dim": PRESETS["cpu"]["embed_dim"]}  # the typed --backbone wins
    train_main(["glass", "--out", str(tmp_path / "cpu"), "--shards", str(demo_build), "--preset", "cpu", "--steps", "2",
                "--image-size", str(SIZE), "--batch-size", "4", "--device", "cpu", "--quiet"])
    config = json.loads((tmp_path / "cpu" / RUN_FILE).read_text())["config"]
    assert (config["backbone"], config["embed_dim"], config["hidden"], config["ascent_steps"]) == ("efficientnet_lite0", 256, 256, 5)


def test_pbas_with_anomaly_shards_learns_them(demo_build, tmp_path):
    from synthgen.trainers.pbas.options import PBASOptions
    from synthgen.trainers.pbas.train import train as train_pbas

    out = tmp_path / "pbas"
    train_pbas(PBASOptions(out=out, shards=demo_build, anomaly_shards=demo_build, backbone="efficientnet_lite0", embed_dim=32,
               image_size=(SIZE, SIZE), epochs=20, batch_size=4, lr=1e-3, seed=0, device="cpu", progress=False))
    rows = np.genfromtxt(out / "logs" / "metrics.csv", delimiter=",", names=True)
    assert rows["shard_bce"][-1] < 0.9 * rows["shard_bce"][0]
    # patch level: D scores the anomalous patches (inside the masks) above the patches of the normal images
    model = load_model(out)
    data = ShardDataset(demo_build, fields=("image", "mask", "normal"))
    anomalous = [data[i] for i in range(len(data)) if data[i]["label"] == 1]
    data.close()
    with torch.no_grad():
        rows_a, grid = model.projected(torch.stack([s["image"] for s in anomalous]))
        rows_n, _ = model.projected(torch.stack([s["normal"] for s in anomalous]))
        inside = mask_to_grid(torch.stack([s["mask"] for s in anomalous]), grid).flatten() > 0
        scores = torch.cat((model.patch_scores(rows_a)[inside], model.patch_scores(rows_n)))
    labels = np.r_[np.ones(int(inside.sum())), np.zeros(len(rows_n))]
    assert image_auroc(scores.numpy(), labels) > 0.65  # chance is 0.5; 0.71 after these 20 short epochs
    info = json.loads((out / RUN_FILE).read_text())
    assert info["config"]["anomaly_shards"] is True and info["anomaly_shards"]["strategies"] == ["draem"]


def test_bad_options_are_one_line_errors(demo_build, tmp_path, capsys):
    for args, message in ((["--shards", str(tmp_path / "nope")], "no manifest"),
                          (["--shards", str(demo_build), "--epochs", "0"], "--epochs: must be at least 1")):
        with pytest.raises(SystemExit) as exit_info:
            train_main(["glass", "--out", str(tmp_path / "run"), *args])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    with pytest.raises(SynthgenError, match="needs the discriminator"):
        from synthgen.trainers.pbas.options import PBASOptions
        from synthgen.trainers.pbas.train import train as train_pbas
        train_pbas(PBASOptions(out=tmp_path / "abl", shards=demo_build, anomaly_shards=demo_build, components="abl", backbone="efficientnet_lite0",
                   embed_dim=8, image_size=(SIZE, SIZE), epochs=1, device="cpu", progress=False))


@pytest.mark.gpu
def test_glass_trains_and_predicts_on_cuda(demo_build, tmp_path):
    out = tmp_path / "cuda"
    train(GLASSOptions(out=out, shards=demo_build, epochs=2, seed=2, **{**TINY, "device": "cuda"}))
    model = load_model(out, "cuda")
    maps, scores = model.predict(torch.rand(2, 3, SIZE, SIZE, device="cuda"))
    assert maps.shape == (2, SIZE, SIZE) and scores.device.type == "cuda" and torch.isfinite(maps).all()
