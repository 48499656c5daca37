"""Tests for trainers/ensemble: PCA against numpy's SVD, the two transformation blocks, SimpleNet's loss
and discriminator on a toy case, grid resizing, the output-level calibration, and tiny end-to-end runs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from synthgen.generator.errors import SynthgenError
from synthgen.trainers.base import MODEL_FILE, RUN_FILE, load_model
from synthgen.trainers.ensemble.model import (
    NOISE_STD,
    OutputEnsembleModel,
    calibrate,
    finest_grid,
    gaussian_fakes,
    resize_to_grid,
    truncated_l1_loss,
)
from synthgen.trainers.ensemble.pca import PCA, TransformationBlock, components_for
from synthgen.trainers.epoch_log import EpochLog
from synthgen.trainers.ensemble.options import FeatureEnsembleOptions, OutputEnsembleOptions
from synthgen.trainers.ensemble.train import LOG_FIELDS, _fit_discriminator, default_components, train_feature, train_output
from synthgen.trainers.feature_heads import MLPDiscriminator


def _low_rank_rows(n: int, dim: int, rank: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rank)) @ rng.normal(size=(rank, dim)) + 0.01 * rng.normal(size=(n, dim)) + 5.0


# --- PCA ---------------------------------------------------------------------------------------------------


def test_pca_matches_numpy_svd():
    x = _low_rank_rows(300, 12, 4, seed=0)
    pca = PCA.fit(torch.from_numpy(x).float(), 4)
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    ratios = s**2 / (s**2).sum()
    np.testing.assert_allclose(pca.explained_variance_ratio.numpy(), ratios[:4], rtol=1e-4)
    for ours, reference in zip(pca.components.numpy(), vt[:4]):
        assert abs(float(ours @ reference)) == pytest.approx(1.0, abs=1e-4)  # same axis, up to sign
        assert ours[np.abs(ours).argmax()] > 0  # our sign convention
    projected = pca(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(np.abs(projected), np.abs(centred @ vt[:4].T), rtol=1e-3, atol=1e-3)


def test_variance_fraction_keeps_the_fewest_components_reaching_it():
    ratios = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    assert components_for(0.5, ratios) == 1
    assert components_for(0.79, ratios) == 2
    assert components_for(0.81, ratios) == 3
    assert components_for(3, ratios) == 3
    x = _low_rank_rows(400, 10, 3, seed=1)
    assert PCA.fit(torch.from_numpy(x).float(), 0.99).n_components == 3  # 3 real directions, the rest is 1e-4 noise


@pytest.mark.parametrize("amount, message", [(2.5, "neither"), (20, "only 10 channels"), (-1, "fraction")])
def test_bad_component_amounts_are_user_errors(amount, message):
    with pytest.raises(SynthgenError, match=message):
        PCA.fit(torch.from_numpy(_low_rank_rows(50, 10, 3, seed=2)).float(), amount)


def test_global_block_is_pca_of_the_concatenation_and_individual_the_concatenation_of_pcas():
    a = torch.from_numpy(_low_rank_rows(200, 6, 2, seed=3)).float()
    b = torch.from_numpy(_low_rank_rows(200, 8, 3, seed=4)).float()
    global_block = TransformationBlock.fit("global", [a, b], 4)
    assert global_block.out_dim == 4
    expected = PCA.fit(torch.cat([a, b], 1), 4)(torch.cat([a, b], 1))
    assert torch.allclose(global_block([a, b]), expected / global_block.scale, atol=1e-5)
    individual = TransformationBlock.fit("individual", [a, b], 2)
    assert individual.out_dim == 4
    expected = torch.cat([PCA.fit(a, 2)(a), PCA.fit(b, 2)(b)], dim=1)
    assert torch.allclose(individual([a, b]), expected / individual.scale, atol=1e-5)
    for block in (global_block, individual):  # scaled to unit mean variance on the rows it was fitted on
        assert float(block([a, b]).var(dim=0).mean()) == pytest.approx(1.0, rel=1e-4)


def test_block_refuses_features_that_do_not_vary():
    with pytest.raises(SynthgenError, match="do not vary"):
        TransformationBlock.fit("global", [torch.ones(20, 4), torch.ones(20, 3)], 2)


def test_default_components_follow_the_single_extractor_width():
    assert default_components("global", [384, 256]) == 384
    assert default_components("individual", [384, 256]) == 192


# --- grid ----------------------------------------------------------------------------------------------------


def test_maps_are_resized_bilinearly_to_the_finest_grid():
    coarse = torch.rand(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    fine = torch.rand(1, 3, 8, 8)
    grid = finest_grid([coarse, fine])
    assert grid == (8, 8)
    resized = resize_to_grid([coarse, fine], grid)
    assert resized[1] is fine
    for c in range(2):
        reference = cv2.resize(coarse[0, c].numpy(), (8, 8), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(resized[0][0, c].numpy(), reference, atol=1e-6)


# --- SimpleNet discriminator ------------------------------------------------------------------------------------


def test_truncated_l1_loss_by_hand():
    normal = torch.tensor([1.0, 0.2, -0.4])  # max(0, 0.5 - s): 0, 0.3, 0.9
    fake = torch.tensor([-1.0, 0.0])  # max(0, 0.5 + s): 0, 0.5
    assert float(truncated_l1_loss(normal, fake)) == pytest.approx(0.4 + 0.25)


def test_gaussian_fakes_use_the_default_std():
    fakes = gaussian_fakes(torch.zeros(50000, 4), torch.Generator().manual_seed(0))
    assert float(fakes.std()) == pytest.approx(NOISE_STD, rel=0.02)


def _discriminator_after(ensembled: torch.Tensor, noise_std: float, tmp_path, epochs: int = 40):
    """SimpleNet's discriminator trained on (N, P, K) rows with the given noise std, and its loss log."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SimpleNamespace(discriminator=MLPDiscriminator(ensembled.shape[-1], sigmoid=False), adaptor=torch.nn.Identity())
    training = {"epochs": epochs, "batch_size": 8, "lr": 2e-4, "weight_decay": 1e-5, "noise_std": noise_std, "margin": 0.5}
    log_path = tmp_path / f"noise-{noise_std}.csv"
    _fit_discriminator(model, ensembled, training, seed=0, epoch_log=EpochLog(log_path, LOG_FIELDS))
    return model.discriminator.eval(), np.genfromtxt(log_path, delimiter=",", names=True)


def test_scaled_pca_features_learn_with_the_default_noise_and_not_with_simplenets(tmp_path):
    """Why the block scales its output and NOISE_STD is not SimpleNet's 0.015: PCA-reduced features vary in
    every kept direction (here, as for efficientnet_lite0 + PBAS features, component stds from 50 down to
    0.3); noise of std 0.015 hides inside that spread, noise of NOISE_STD after the scaling does not."""
    g = torch.Generator().manual_seed(0)
    dim = 128
    stds = torch.logspace(np.log10(50), np.log10(0.3), dim)
    rotation = torch.linalg.qr(torch.randn(dim, dim, generator=g))[0]
    rows = (torch.randn(48 * 256, dim, generator=g) * stds) @ rotation.T
    block = TransformationBlock.fit("global", [rows], dim)
    ensembled = block([rows]).view(48, 256, dim)

    held_out = block([(torch.randn(400, dim, generator=g) * stds) @ rotation.T])

    def ranking(disc, scale: float, noise_std: float) -> float:
        """P(D(normal) > D(fake)) on held-out rows, fed as during training: 0.5 is chance."""
        normal = held_out * scale
        with torch.no_grad():
            return float((disc(normal)[:, None] > disc(gaussian_fakes(normal, g, noise_std))[None]).float().mean())

    simplenet, log = _discriminator_after(ensembled * block.scale, 0.015, tmp_path)  # unscaled PCA output, SimpleNet's std
    assert log["loss"][-1] > 0.99  # chance is 1.0: nothing learnt
    assert ranking(simplenet, float(block.scale), 0.015) < 0.55
    disc, log = _discriminator_after(ensembled, NOISE_STD, tmp_path)
    assert log["loss"][-1] < 0.85
    assert ranking(disc, 1.0, NOISE_STD) > 0.65


# --- output-level baseline ---------------------------------------------------------------------------------------


class ConstantMember:
    """A stand-in model: map = a * image mean + b per pixel, score = c * image mean + d."""

    image_size = (8, 8)

    def __init__(self, a, b, c, d):
        self.a, self.b, self.c, self.d = a, b, c, d

    def predict(self, images):
        m = images.mean(dim=(1, 2, 3))
        return self.a * images[:, 0] + self.b, self.c * m + self.d

    def to(self, device):
        return self


def test_calibration_is_the_mean_and_std_on_normal_images_and_outputs_are_averaged_z_scores():
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    members = [ConstantMember(2.0, 1.0, 3.0, 0.0), ConstantMember(-1.0, 5.0, 10.0, 2.0)]
    calibrations = [calibrate(m, [images[:4], images[4:]]) for m in members]
    for member, c in zip(members, calibrations):
        maps, scores = member.predict(images)
        assert c.map_mean == pytest.approx(float(maps.double().mean()))
        assert c.map_std == pytest.approx(float(maps.double().std(unbiased=False)), rel=1e-6)
        assert c.score_mean == pytest.approx(float(scores.double().mean()))
        assert c.score_std == pytest.approx(float(scores.double().std(unbiased=False)), rel=1e-6)
    ensemble = OutputEnsembleModel(members, calibrations, (8, 8))
    maps, scores = ensemble.predict(images)
    expected_maps = sum((m.predict(images)[0] - c.map_mean) / c.map_std for m, c in zip(members, calibrations)) / 2
    assert torch.allclose(maps, expected_maps.float(), atol=1e-5)
    # the two members' scores are both increasing in the image mean: so is the ensemble's
    order = torch.argsort(images.mean(dim=(1, 2, 3)))
    assert torch.all(scores[order].diff() > 0)


def test_a_constant_member_cannot_be_calibrated():
    with pytest.raises(SynthgenError, match="constant"):
        calibrate(ConstantMember(0.0, 1.0, 0.0, 1.0), [torch.rand(2, 3, 8, 8)])


# --- tiny end-to-end runs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, mvtec_ad_root):
    folder = tmp_path_factory.mktemp("ensemble")
    common = dict(dataset="mvtec_ad", root=mvtec_ad_root, category="bottle", embed_dim=16, image_size=(64, 64),
                  epochs=2, device="cpu", progress=False)
    runs = {
        "global": train_feature(FeatureEnsembleOptions(out=folder / "global", extractors=("efficientnet_lite0:layer2+layer3", "efficientnet_lite0:layer3+layer4"),
                                block="global", **common)),
        "individual": train_feature(FeatureEnsembleOptions(out=folder / "individual", extractors=("efficientnet_lite0:layer2+layer3", "efficientnet_lite0:layer3+layer4"),
                                    block="individual", components=0.9, adaptor=True, **common)),
        "single": train_feature(FeatureEnsembleOptions(out=folder / "single", extractors=("efficientnet_lite0:layer3+layer4",), **common)),
    }
    runs["output"] = train_output(OutputEnsembleOptions(out=folder / "output", members=(runs["global"], runs["single"]), dataset="mvtec_ad",
                                  root=mvtec_ad_root, category="bottle", device="cpu"))
    return runs


def test_feature_ensemble_runs_record_their_blocks_and_reload(tiny_runs):
    info = json.loads((tiny_runs["global"] / RUN_FILE).read_text())
    assert info["method"] == "ensemble" and info["status"] == "complete"
    assert info["config"]["grid"] == [8, 8]  # layer2 of a 64 px image, stride 8
    assert info["config"]["pca_sizes"] == [16]  # default: the width of one extractor
    individual = json.loads((tiny_runs["individual"] / RUN_FILE).read_text())
    assert len(individual["config"]["pca_sizes"]) == 2
    assert all(v >= 0.9 for v in individual["explained_variance"])
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for name in ("global", "individual", "output"):
        model = load_model(tiny_runs[name])
        maps, scores = model.predict(images)
        assert maps.shape == (2, 64, 64) and scores.shape == (2,) and torch.isfinite(maps).all(), name
        again = load_model(tiny_runs[name]).predict(images)
        assert torch.equal(maps, again[0]) and torch.equal(scores, again[1]), name


def test_an_interrupted_feature_ensemble_resumes_to_the_same_model(tiny_runs, tmp_path, mvtec_ad_root, interrupt_in_epoch):
    import synthgen.trainers.ensemble.train as ensemble_train

    args = dict(extractors=("efficientnet_lite0:layer3+layer4",), dataset="mvtec_ad", root=mvtec_ad_root, category="bottle",
                embed_dim=16, image_size=(64, 64), epochs=2, device="cpu", progress=False)  # = tiny_runs["single"]
    out = tmp_path / "run"
    with interrupt_in_epoch(ensemble_train, 1), pytest.raises(KeyboardInterrupt):
        train_feature(FeatureEnsembleOptions(out=out, **args))
    assert not (out / MODEL_FILE).exists()
    with pytest.raises(SynthgenError, match="option noise_std is 0.3 but the run was started with 0.5"):
        train_feature(FeatureEnsembleOptions(out=out, **args, noise_std=0.3, resume=True))
    train_feature(FeatureEnsembleOptions(out=out, **args, resume=True))
    first = torch.load(tiny_runs["single"] / MODEL_FILE, weights_only=True)["state_dict"]
    resumed = torch.load(out / MODEL_FILE, weights_only=True)["state_dict"]
    assert first.keys() == resumed.keys() and all(torch.equal(first[k], resumed[k]) for k in first)
    assert (out / "logs" / "metrics.csv").read_text() == (tiny_runs["single"] / "logs" / "metrics.csv").read_text()


def test_output_ensemble_refuses_a_changed_member(tiny_runs, tmp_path):
    import shutil

    member = tmp_path / "member"
    shutil.copytree(tiny_runs["single"], member)
    ensemble = tmp_path / "ensemble"
    shutil.copytree(tiny_runs["output"], ensemble)
    blob = torch.load(ensemble / MODEL_FILE, weights_only=True)
    blob["members"][1]["run"] = str(member)
    torch.save(blob, ensemble / MODEL_FILE)
    load_model(ensemble)  # an identical copy is accepted
    state = torch.load(member / MODEL_FILE, weights_only=True)
    state["state_dict"]["discriminator.tail.weight"] += 1.0
    torch.save(state, member / MODEL_FILE)
    with pytest.raises(SynthgenError, match="changed"):
        load_model(ensemble)


def test_output_ensemble_needs_two_members(tmp_path, tiny_runs):
    with pytest.raises(SynthgenError, match="at least two"):
        train_output(OutputEnsembleOptions(out=tmp_path / "o", members=(tiny_runs["single"],), dataset="mvtec_ad", root="x", category="bottle"))
