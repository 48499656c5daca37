"""Tests for trainers/pbas: patch features, score maps, Algorithm 1's centers, Eqs. 6-9, and a tiny run.

References are computed independently: numpy loops for the neighbourhood aggregation and adaptive
pooling, OpenCV for bilinear resizing, scipy.ndimage for the Gaussian smoothing, hand-written
formulas for the losses and the center updates.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from synthgen.generator.errors import SynthgenError
from synthgen.trainers.base import MODEL_FILE, RUN_FILE, load_model
from synthgen.trainers.feature_heads import MLPDiscriminator
from synthgen.trainers.features import PatchFeatureExtractor, load_normal_images, patchify
from synthgen.trainers.pbas.model import (
    ALPHA,
    PBASConfig,
    PBASModel,
    adaptive_anomalies,
    align_and_update,
    boundary_loss,
    center_terms,
    initial_centers,
    noisy_anomalies,
)
from synthgen.trainers.epoch_log import EpochLog
from synthgen.trainers.pbas.options import PBASOptions
from synthgen.trainers.pbas.train import LOG_FIELDS, _fit, train
from synthgen.trainers.score_maps import gaussian_smooth, scores_to_maps


def _adaptive_pool_reference(row: np.ndarray, size: int) -> np.ndarray:
    """PyTorch's adaptive average pooling bins: [floor(i L / n), ceil((i + 1) L / n))."""
    n = len(row)
    return np.array([row[(i * n) // size: -(-((i + 1) * n) // size)].mean() for i in range(size)])


def _neighbourhood(feature: np.ndarray, h: int, w: int, p: int) -> np.ndarray:
    """The p x p neighbourhood of (h, w) of a (C, H, W) map, zero padded, flattened channel-major."""
    c, height, width = feature.shape
    r = p // 2
    out = np.zeros((c, p, p), dtype=feature.dtype)
    for i in range(p):
        for j in range(p):
            y, x = h + i - r, w + j - r
            if 0 <= y < height and 0 <= x < width:
                out[:, i, j] = feature[:, y, x]
    return out.reshape(-1)


class FixedMaps(nn.Module):
    """A stand-in backbone returning given feature maps."""

    def __init__(self, maps: list[torch.Tensor]):
        super().__init__()
        self.maps = maps

    def forward(self, images):
        return OrderedDict((f"layer{i}", m) for i, m in enumerate(self.maps))


# --- patch features -------------------------------------------------------------------------------------


def test_patchify_gives_each_positions_zero_padded_neighbourhood_channel_major():
    rng = np.random.default_rng(0)
    feature = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
    patches = patchify(torch.from_numpy(feature), 3).numpy()
    assert patches.shape == (2, 27, 5, 4)
    for b in range(2):
        for h, w in [(0, 0), (2, 1), (4, 3)]:
            np.testing.assert_array_equal(patches[b, :, h, w], _neighbourhood(feature[b], h, w, 3))


def test_patch_features_match_a_hand_computed_aggregation():
    """Eqs. 2-4 with the official f_agg: neighbourhoods, layer 2 resized to layer 1's grid, pooled per layer, pooled again."""
    rng = np.random.default_rng(1)
    first = rng.normal(size=(1, 4, 6, 6)).astype(np.float32)
    second = rng.normal(size=(1, 8, 3, 3)).astype(np.float32)
    dim = 10
    extractor = PatchFeatureExtractor(FixedMaps([torch.from_numpy(first), torch.from_numpy(second)]), patch_size=3, embed_dim=dim)
    features, grid = extractor(torch.zeros(1, 3, 24, 24))
    assert grid == (6, 6) and features.shape == (1, 36, dim)

    patches2 = np.stack([[_neighbourhood(second[0], h, w, 3) for w in range(3)] for h in range(3)])  # (3, 3, 72)
    resized2 = np.stack([cv2.resize(patches2[..., k], (6, 6), interpolation=cv2.INTER_LINEAR) for k in range(72)], axis=-1)
    for h, w in [(0, 0), (3, 2), (5, 5)]:
        pooled1 = _adaptive_pool_reference(_neighbourhood(first[0], h, w, 3), dim)
        pooled2 = _adaptive_pool_reference(resized2[h, w], dim)
        expected = _adaptive_pool_reference(np.concatenate([pooled1, pooled2]), dim)
        np.testing.assert_allclose(features[0, h * 6 + w].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_even_patch_size_is_refused():
    with pytest.raises(SynthgenError, match="--patch-size"):
        PatchFeatureExtractor(FixedMaps([]), patch_size=2)


# --- score maps (Eqs. 11-12) ----------------------------------------------------------------------------


def test_gaussian_smoothing_equals_scipy():
    x = np.random.default_rng(2).random((2, 40, 36)).astype(np.float64)
    ours = gaussian_smooth(torch.from_numpy(x), 4.0).numpy()
    for i in range(2):
        np.testing.assert_allclose(ours[i], ndimage.gaussian_filter(x[i], sigma=4.0), atol=1e-10)


def test_image_score_is_the_max_patch_score_and_the_map_is_upsampled():
    patch = torch.tensor([[[0.1, 0.9], [0.3, 0.2]]])
    maps, scores = scores_to_maps(patch, (32, 32), sigma=0.0)
    assert scores.tolist() == pytest.approx([0.9])
    assert maps.shape == (1, 32, 32)
    assert maps[0, :16, 16:].mean() > maps[0, 16:, :16].mean()  # the hot patch stays where it was


# --- centers (Algorithm 1, Eq. 5, Table VI) ---------------------------------------------------------------


def test_alignment_update_moves_each_matched_center_by_ema_in_order():
    centers = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    batch_mean = torch.tensor([[2.0, 0.1], [3.0, -0.1], [0.0, 5.0]])  # rows 0, 1 -> center 0; row 2 -> center 1
    updated = align_and_update(centers, batch_mean, beta=0.1)
    c0 = 0.9 * torch.tensor([1.0, 0.0]) + 0.1 * batch_mean[0]
    c0 = 0.9 * c0 + 0.1 * batch_mean[1]
    assert torch.allclose(updated[0], c0)
    assert torch.allclose(updated[1], 0.9 * torch.tensor([0.0, 1.0]) + 0.1 * batch_mean[2])
    assert torch.equal(updated[2], centers[2])  # the set V1: not matched, unchanged
    assert torch.equal(centers[0], torch.tensor([1.0, 0.0]))  # input untouched


def test_center_methods_against_their_definitions():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(10, 3, 4, generator=g)  # 10 images, 3 positions
    batches = [features[0:4].mean(0), features[4:8].mean(0), features[8:10].mean(0)]
    assert torch.allclose(initial_centers(features, 4, "average"), features.mean(0))
    ema = 0.9 * (0.9 * batches[0] + 0.1 * batches[1]) + 0.1 * batches[2]
    assert torch.allclose(initial_centers(features, 4, "iterative"), ema)
    aligned = align_and_update(align_and_update(batches[0], batches[1]), batches[2])
    assert torch.allclose(initial_centers(features, 4, "alignment"), aligned)


def test_clustering_centers_find_separated_clusters():
    g = torch.Generator().manual_seed(0)
    true_centers = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    # 4 batches of 2 images over 3 positions; position k of every image is near true center k
    features = true_centers[None] + 0.1 * torch.randn(8, 3, 2, generator=g)
    found = initial_centers(features, 2, "clustering")
    means = [features[i:i + 2].mean(0) for i in range(0, 8, 2)]
    expected = torch.stack([torch.stack([m[k] for m in means]).mean(0) for k in range(3)])
    assert torch.allclose(found, expected, atol=1e-5)


def test_unknown_center_method_is_a_user_error():
    with pytest.raises(SynthgenError, match="--center"):
        initial_centers(torch.zeros(2, 3, 4), 1, "median")


# --- losses (Eqs. 6-9) -----------------------------------------------------------------------------------


def test_center_loss_is_the_mean_distance_to_the_cosine_nearest_center():
    rng = np.random.default_rng(3)
    u = rng.normal(size=(7, 5))
    c = rng.normal(size=(3, 5))
    cos = (u / np.linalg.norm(u, axis=1, keepdims=True)) @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T
    nearest = c[cos.argmax(1)]
    terms = center_terms(torch.from_numpy(u), torch.from_numpy(c))
    assert float(terms.center_loss) == pytest.approx(np.linalg.norm(u - nearest, axis=1).mean())


def test_adaptive_anomalies_sit_alpha_lc_further_out_along_the_ray():
    g = torch.Generator().manual_seed(4)
    u = torch.randn(9, 6, generator=g, requires_grad=True)
    centers = torch.randn(2, 6, generator=g)
    terms = center_terms(u, centers)
    z = adaptive_anomalies(u, terms, ALPHA)
    step = (z - u).detach()
    assert torch.allclose(step.norm(dim=1), torch.full((9,), ALPHA * terms.center_loss.item()), atol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(step, terms.offsets.detach(), dim=1)
    assert torch.allclose(cosine, torch.ones(9), atol=1e-5)  # along u - c~, away from the center
    z.sum().backward()
    assert torch.equal(u.grad, torch.ones_like(u))  # the offset is detached (official code)


def test_noisy_anomalies_have_the_simplenet_std():
    u = torch.zeros(20000, 8)
    z = noisy_anomalies(u, torch.Generator().manual_seed(0))
    assert float(z.std()) == pytest.approx(0.015, rel=0.02)


def test_boundary_loss_is_bce_against_0_for_normal_and_1_for_anomalies():
    normal = torch.tensor([0.1, 0.4])
    anomalous = torch.tensor([0.8, 0.3])
    ln, la = boundary_loss(normal, anomalous)
    assert float(ln) == pytest.approx(-(np.log(0.9) + np.log(0.6)) / 2, rel=1e-6)
    assert float(la) == pytest.approx(-(np.log(0.8) + np.log(0.3)) / 2, rel=1e-6)


def test_discriminator_has_the_official_widths():
    d = MLPDiscriminator(1536)
    assert d.body[0].weight.shape == (1024, 1536) and d.tail.weight.shape == (1, 1024) and d.tail.bias is None
    out = d.eval()(torch.randn(4, 1536))
    assert ((out > 0) & (out < 1)).all()


# --- training ---------------------------------------------------------------------------------------------


def _toy_model(dim: int, components: str = "full") -> PBASModel:
    config = PBASConfig(embed_dim=dim, components=components)
    return PBASModel.initialised(config, FixedMaps([]), seed=0)


def test_training_contracts_features_and_separates_synthetic_anomalies(tmp_path):
    """On toy features, L_c falls and D scores the synthesised anomalies above the normal features."""
    g = torch.Generator().manual_seed(0)
    features = torch.randn(16, 4, 32, generator=g) + 3.0
    model = _toy_model(32)
    with torch.no_grad():
        projected = model.projector(features.flatten(0, 1)).view(16, 4, 32)
        model.centers = initial_centers(projected, 8, "alignment")
    training = {"epochs": 60, "batch_size": 8, "lr": 1e-3, "discriminator_lr": 2e-3, "gamma": 1e-5, "delta": 1e-2,
                "alpha": ALPHA, "synthesis": "adaptive"}
    _fit(model, features, training, seed=0, epoch_log=EpochLog(tmp_path / "m.csv", LOG_FIELDS))
    rows = np.genfromtxt(tmp_path / "m.csv", delimiter=",", names=True)
    assert rows["center_loss"][-1] < 0.8 * rows["center_loss"][0]
    model.eval()
    with torch.no_grad():
        u = model.projector(features.flatten(0, 1))
        z = adaptive_anomalies(u, center_terms(u, model.centers), ALPHA)
        assert float((model.discriminator(z)[:, None] > model.discriminator(u)[None]).float().mean()) > 0.75  # untrained: about 0.5


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mvtec_ad_root):
    out = tmp_path_factory.mktemp("pbas") / "run"
    train(PBASOptions(out=out, dataset="mvtec_ad", root=mvtec_ad_root, category="bottle", backbone="efficientnet_lite0",
          embed_dim=16, image_size=(64, 64), epochs=2, seed=3, device="cpu", progress=False))
    return out


def test_tiny_run_writes_a_loadable_deterministic_model(tiny_run, tmp_path, mvtec_ad_root):
    info = json.loads((tiny_run / RUN_FILE).read_text())
    assert info["method"] == "pbas" and info["status"] == "complete"
    assert info["backbone"]["sha256"].startswith("57934424")
    assert info["data"]["num_images"] == 20
    model = load_model(tiny_run)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    maps, scores = model.predict(images)
    assert maps.shape == (2, 64, 64) and scores.shape == (2,)
    assert ((scores > 0) & (scores < 1)).all()

    again = tmp_path / "again"
    train(PBASOptions(out=again, dataset="mvtec_ad", root=mvtec_ad_root, category="bottle", backbone="efficientnet_lite0",
          embed_dim=16, image_size=(64, 64), epochs=2, seed=3, device="cpu", progress=False))
    first = torch.load(tiny_run / MODEL_FILE, weights_only=True)["state_dict"]
    second = torch.load(again / MODEL_FILE, weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert (tiny_run / MODEL_FILE).read_bytes() == (again / MODEL_FILE).read_bytes()  # so run.json's sha256 repeats too


def test_an_interrupted_run_resumes_to_the_same_model(tiny_run, tmp_path, mvtec_ad_root, interrupt_in_epoch):
    import synthgen.trainers.pbas.train as pbas_train

    args = dict(dataset="mvtec_ad", root=mvtec_ad_root, category="bottle", backbone="efficientnet_lite0",
                embed_dim=16, image_size=(64, 64), epochs=2, seed=3, device="cpu", progress=False)
    out = tmp_path / "run"
    with interrupt_in_epoch(pbas_train, 1), pytest.raises(KeyboardInterrupt):
        train(PBASOptions(out=out, **args))
    assert not (out / MODEL_FILE).exists() and (out / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(SynthgenError, match="already holds a training run"):
        train(PBASOptions(out=out, **args))
    with pytest.raises(SynthgenError, match="option seed is 4 but the run was started with 3"):
        train(PBASOptions(out=out, **{**args, "seed": 4}, resume=True))
    train(PBASOptions(out=out, **args, resume=True))
    first = torch.load(tiny_run / MODEL_FILE, weights_only=True)["state_dict"]  # the same run, uninterrupted
    resumed = torch.load(out / MODEL_FILE, weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], resumed[k]) for k in first)
    assert (out / "logs" / "metrics.csv").read_text() == (tiny_run / "logs" / "metrics.csv").read_text()
    (out / "checkpoints" / "last.ckpt").write_bytes(b"truncated")
    with pytest.raises(SynthgenError, match="last.ckpt: not a readable training checkpoint"):
        train(PBASOptions(out=out, **args, resume=True))


def test_changed_backbone_weights_are_refused_at_load(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    blob = torch.load(copy / MODEL_FILE, weights_only=True)
    blob["config"]["weights_sha256"] = "0" * 64
    torch.save(blob, copy / MODEL_FILE)
    with pytest.raises(SynthgenError, match="sha256"):
        load_model(copy)


def test_abl_alone_scores_by_distance_to_the_nearest_center():
    model = _toy_model(4, components="abl").eval()
    model.centers = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    rows = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    assert torch.allclose(model.patch_scores(rows), torch.tensor([1.0, (0.25 + 0.25) ** 0.5]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one source"),
        ({"dataset": "mvtec_ad", "shards": "x"}, "exactly one source"),
        ({"dataset": "mvtec_ad", "root": "/nonexistent", "category": "bottle"}, "nonexistent"),
    ],
)
def test_bad_data_options_are_user_errors(kwargs, message):
    with pytest.raises(SynthgenError, match=message):
        load_normal_images((64, 64), **kwargs)


def test_cli_reports_bad_options_in_one_line(tmp_path, capsys):
    from synthgen.trainers.cli import train_main

    with pytest.raises(SystemExit) as exit_info:
        train_main(["pbas", "--out", str(tmp_path / "r"), "--dataset", "mvtec_ad", "--root", str(tmp_path), "--category", "bottle",
                    "--epochs", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--epochs" in err and err.count("\n") == 1
