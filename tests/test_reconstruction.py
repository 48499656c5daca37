"""The reconstructive framework (trainers/reconstruction/): DRAEM's losses against independent
references, the split training of the framework's Eq. 3 (which samples feed which term, where the
gradients go), DRAEM's rotation of normals, and training on a demo build: loss, run folder, loader,
resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from lightning.pytorch.callbacks import Callback
from scipy import ndimage

import synthgen.trainers.base as base
from synthgen.generator.config import BuildConfig
from synthgen.generator.errors import SynthgenError
from synthgen.generator.pipeline import build
from synthgen.trainers.cli import train_cli
from synthgen.trainers.data import SynthgenDataModule
from synthgen.trainers.lightning_utils import draem_milestones
from synthgen.trainers.reconstruction.model import (
    ArchitectureConfig,
    ReconstructionNetworks,
    check_architecture,
    focal_loss,
    ssim,
)
from synthgen.trainers.reconstruction.module import ReconstructionModule, rotate_samples, rotation_angles
from synthgen.trainers.reconstruction.options import ReconstructionOptions
from synthgen.trainers.reconstruction.train import train
from synthgen.trainers.score_maps import score_kernel

SIZE = 64


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory):
    """20 draem samples of the demo dataset at 64x64."""
    config = BuildConfig(dataset="demo", category="parts_box", root=None, strategies=("draem",), num_samples=20,
                         samples_per_shard=20, batch_size=10, image_size=(SIZE, SIZE), texture_source="perlin", seed=1)
    out = tmp_path_factory.mktemp("build") / "demo"
    build(config, out, progress=False)
    return out


def _train(build_dir, out, callbacks=(), **overrides):
    options = dict(epochs=1, batch_size=4, base_width=4, val_fraction=0.2, workers=0, progress=False, device="cpu")
    return train(ReconstructionOptions(shards=build_dir, out=out, **{**options, **overrides}), callbacks=callbacks)


def _epoch_rows(run) -> list[dict]:
    rows = []
    for path in sorted((run / "logs").glob("version_*/metrics.csv")):
        with open(path, newline="") as f:
            rows += [r for r in csv.DictReader(f) if r.get("train/loss_epoch")]
    return rows


class StopAfterEpochs(Callback):
    """Ends training after ``n`` epochs, like an interruption."""

    def __init__(self, n: int):
        self.n = n

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.n:
            trainer.should_stop = True


# ------------------------------------------------------------------------------------------ losses


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Gaussian-window SSIM (11, sigma 1.5) with zero padding, C1 = 0.01^2, C2 = 0.03^2, per channel."""
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    values = []
    for ca, cb in zip(a, b):
        blur = lambda z: ndimage.correlate(z, w, mode="constant")  # noqa: E731
        mu_a, mu_b = blur(ca), blur(cb)
        var_a, var_b, cov = blur(ca * ca) - mu_a**2, blur(cb * cb) - mu_b**2, blur(ca * cb) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + 1e-4) * (2 * cov + 9e-4)) / ((mu_a**2 + mu_b**2 + 1e-4) * (var_a + var_b + 9e-4))
        values.append(s)
    return float(np.mean(values))


def test_ssim_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    a = ndimage.uniform_filter(rng.uniform(0, 1, (3, 30, 41)), (1, 3, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ours = ssim(torch.tensor(a[None]), torch.tensor(b[None])).item()
    assert ours == pytest.approx(_reference_ssim(a, b), abs=1e-9)
    assert ssim(torch.tensor(a[None]), torch.tensor(a[None])).item() == pytest.approx(1.0, abs=1e-9)


def test_focal_loss_is_draems():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2, 4, 5, generator=g) * 4
    masks = (torch.rand(2, 1, 4, 5, generator=g) > 0.5).float()
    p = torch.softmax(logits.double(), dim=1).numpy()
    y = masks.numpy()[:, 0]
    # DRAEM's FocalLoss(gamma=2, smooth=1e-5): one-hot clamped to [1e-5, 1 - 1e-5], p_t + 1e-5
    p_t = np.clip(1 - y, 1e-5, 1 - 1e-5) * p[:, 0] + np.clip(y, 1e-5, 1 - 1e-5) * p[:, 1] + 1e-5
    expected = np.mean(-((1 - p_t) ** 2) * np.log(p_t))
    assert focal_loss(logits, masks).item() == pytest.approx(expected, rel=1e-6)


def test_schedule_and_score_kernel():
    assert draem_milestones(700) == [560, 630]  # DRAEM: epochs * 0.8, epochs * 0.9
    assert draem_milestones(12) == [10, 11] and draem_milestones(1) == [1]
    assert score_kernel((256, 256)) == 21 and score_kernel((128, 256)) == 11 and score_kernel((64, 64)) == 5


def test_networks_shapes_and_size_check():
    nets = ReconstructionNetworks.initialised(ArchitectureConfig(base_width=4, image_size=(64, 96)), seed=0)
    reconstructions, logits = nets(torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0)))
    assert reconstructions.shape == (2, 3, 64, 96) and logits.shape == (2, 2, 64, 96)
    # DRAEM's widths at base width 128: R's deepest block 8w = 1024 channels, S's 8v = 512 with v = w / 2
    with torch.device("meta"):
        full = ReconstructionNetworks(ArchitectureConfig())
    assert full.reconstructive.encoder[-1][-3].out_channels == 1024
    assert full.discriminative.encoder[-1][-3].out_channels == 512
    with pytest.raises(SynthgenError, match="--image-size: 64x80 must be multiples of 32"):
        check_architecture(ArchitectureConfig(base_width=4, image_size=(64, 80)))


# ------------------------------------------------------------------------------- split training


def _batch() -> dict:
    g = torch.Generator().manual_seed(7)
    masks = torch.zeros(4, 1, SIZE, SIZE)
    masks[:, :, 10:30, 20:40] = 1
    return {
        "image": torch.rand(4, 3, SIZE, SIZE, generator=g),
        "normal": torch.rand(4, 3, SIZE, SIZE, generator=g),
        "mask": masks,
        "source_number": torch.tensor([1, 2, 3, 4]),
    }


def _module(split: bool) -> ReconstructionModule:
    arch = ArchitectureConfig(base_width=4, image_size=(SIZE, SIZE))
    return ReconstructionModule(arch.to_dict(), {"epochs": 1, "split": split, "seed": 0})


def test_split_feeds_odd_sources_to_r_and_even_sources_to_s():
    """Eq. 3: I_X (odd 1-based source numbers) gives L2 + SSIM, I_Y (even) the focal loss."""
    module, batch = _module(split=True), _batch()
    terms = module.losses(batch, split=True)
    with torch.no_grad():
        rec = module.networks.reconstructive(batch["image"])  # train-mode BN: batch statistics, as in losses()
        odd, even = [0, 2], [1, 3]
        l2 = torch.mean((rec[odd] - batch["normal"][odd]) ** 2)
        s_logits = module.networks.discriminative(torch.cat((batch["image"][even], rec[even]), dim=1))
        focal = focal_loss(s_logits, batch["mask"][even])
    assert terms["l2"].item() == pytest.approx(l2.item(), rel=1e-5)
    assert terms["focal"].item() == pytest.approx(focal.item(), rel=1e-5)

    # no gradient of the focal loss reaches R; the reconstruction terms never reach S
    terms["focal"].backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in module.networks.reconstructive.parameters())
    module.zero_grad(set_to_none=True)
    (terms["l2"] + terms["ssim"]).backward()
    assert all(p.grad is None for p in module.networks.discriminative.parameters())
    assert any(p.grad is not None and p.grad.any() for p in module.networks.reconstructive.parameters())


def test_without_split_every_sample_trains_both_and_focal_reaches_r():
    """DRAEM's training (Table 4 baseline): all samples in every term, the focal loss back-propagates into R."""
    module, batch = _module(split=False), _batch()
    terms = module.losses(batch, split=False)
    with torch.no_grad():
        rec = module.networks.reconstructive(batch["image"])
    assert terms["l2"].item() == pytest.approx(torch.mean((rec - batch["normal"]) ** 2).item(), rel=1e-5)
    terms["focal"].backward()
    assert any(p.grad is not None and p.grad.any() for p in module.networks.reconstructive.parameters())


def test_a_batch_from_one_side_only_gives_zero_for_the_other_term():
    module, batch = _module(split=True), _batch()
    batch["source_number"] = torch.tensor([1, 3, 5, 7])
    terms = module.losses(batch, split=True)
    assert terms["focal"].item() == 0.0 and terms["l2"].item() > 0


def test_rotation_of_normals_is_draems_and_skips_draem_samples():
    rng = np.random.default_rng(0)
    angles = rotation_angles(rng, ["cutpaste"] * 4000)
    rotated = [a for a in angles if a is not None]
    assert abs(len(rotated) / 4000 - 0.3) < 0.03  # DRAEM: torch.rand(1) > 0.7
    assert all(-90 <= a <= 90 for a in rotated) and min(rotated) < -80 and max(rotated) > 80
    assert all(a is None for a in rotation_angles(rng, ["draem"] * 200))

    batch = _batch()
    out = rotate_samples(batch, [90.0, None, None, None])
    for key in ("image", "normal", "mask"):  # one angle for image, normal and mask alike
        assert torch.allclose(out[key][0], torch.rot90(batch[key][0], 1, dims=(-2, -1)), atol=1e-5)
        assert torch.equal(out[key][1:], batch[key][1:])


# ------------------------------------------------------------------------------------------ training


def test_training_lowers_the_loss_and_the_model_loads(demo_build, tmp_path):
    """5 epochs of 4 steps at lr 1e-3 (a CPU-sized stand-in for DRAEM's 1e-4 over 700 epochs)."""
    run = _train(demo_build, tmp_path / "run", epochs=5, lr=1e-3)
    rows = _epoch_rows(run)
    assert len(rows) == 5
    for term in ("l2", "focal"):
        assert float(rows[-1][f"train/{term}_epoch"]) < 0.7 * float(rows[0][f"train/{term}_epoch"]), term

    info = json.loads((run / "run.json").read_text())
    assert info["method"] == "reconstruction" and info["status"] == "complete"
    assert info["config"]["split"] is True and info["model"]["selected"] == "last" and info["model"]["epochs"] == 5
    assert info["split"]["train_samples"] == 16 and info["split"]["val_samples"] == 4

    model = base.load_model(run, "cpu")
    data = SynthgenDataModule(demo_build, val_fraction=0.0)
    data.setup("fit")
    images = torch.stack([data.shard_dataset[i]["image"] for i in range(3)])
    maps, scores = model.predict(images)
    assert maps.shape == (3, SIZE, SIZE) and 0 <= maps.min() and maps.max() <= 1
    expected = [ndimage.uniform_filter(m.double().numpy(), score_kernel((SIZE, SIZE)), mode="constant").max() for m in maps]
    assert scores.numpy() == pytest.approx(expected, rel=1e-5)


def test_resume_continues_exactly_and_guards_the_run_folder(demo_build, tmp_path):
    straight = _train(demo_build, tmp_path / "straight", epochs=2)
    first = _train(demo_build, tmp_path / "resumed", epochs=2, callbacks=[StopAfterEpochs(1)])
    assert json.loads((first / "run.json").read_text())["status"] == "stopped"
    with pytest.raises(SynthgenError, match="option epochs is 3 but the run was started with 2"):
        _train(demo_build, first, epochs=3, resume=True)
    resumed = _train(demo_build, first, epochs=2, resume=True)
    a = torch.load(straight / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((resumed / "run.json").read_text())["status"] == "complete"
    with pytest.raises(SynthgenError, match="already holds a training run"):
        _train(demo_build, straight, epochs=2)
    with pytest.raises(SynthgenError, match="--select val: needs synthetic validation"):
        _train(demo_build, tmp_path / "noval", val_fraction=0.0, select="val")


def test_cli_runs_the_draem_baseline_and_selects_on_validation(demo_build, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(train_cli, [
        "reconstruction", "--shards", str(demo_build), "--out", str(run), "--epochs", "2", "--batch-size", "4",
        "--base-width", "4", "--no-split", "--rotate-normals", "--select", "val", "--workers", "0", "--quiet",
        "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    info = json.loads((run / "run.json").read_text())
    assert info["config"]["split"] is False and info["config"]["rotate_normals"] is True
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert info["model"]["selected"] == "val" and info["model"]["epochs"] == int(best["epoch"]) + 1
    saved = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], best["state_dict"][f"networks.{k}"]) for k in saved)
