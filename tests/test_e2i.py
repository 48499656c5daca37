"""Edge-to-image generator (generator/models/e2i.py) and its training (generator/training/).

Architecture checks run on the meta device (no compute); training smoke tests use the tiny
configuration on 64x64 synthetic (Canny edge, photo) pairs, on the CPU, with fixed seeds; the
``synthgen train-e2i`` test trains the tiny configuration on the demo dataset's PiDiNet edges.
"""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import synthgen.generator.models.e2i as e2i
import synthgen.generator.training.e2i as e2i_training
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import sha256_file
from synthgen.generator.models.e2i import (
    GeneratorConfig,
    GlobalGenerator,
    count_flops,
    count_params,
    generate,
    load_generator,
    save_generator,
)
from synthgen.generator.training.e2i import (
    E2ITrainingModule,
    EdgeImagePairs,
    TrainConfig,
    lr_factor,
    small_config,
    tiny_config,
    train_e2i,
)
from synthgen.generator.training.gan import (
    MultiscaleDiscriminator,
    VGGPerceptualLoss,
    feature_matching_loss,
    load_vgg19_features,
    lsgan_loss,
    resolve_vgg19_weights,
)


def make_pairs(n: int, size: int = 64, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Discs of random colours on an orange background, with their Canny edge maps (0/255)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        image = np.full((size, size, 3), (200, 80, 40), np.uint8)
        for _ in range(3):
            centre = tuple(int(v) for v in rng.integers(size // 8, size - size // 8, 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            cv2.circle(image, centre, int(rng.integers(size // 16, size // 5)), colour, -1)
        pairs.append((cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 50, 150), image))
    return pairs


def mean_l1(generator: GlobalGenerator, pairs) -> float:
    fake = generate(generator, np.stack([e for e, _ in pairs]), batch_size=4)
    real = np.stack([im for _, im in pairs])
    return float(np.abs(fake.astype(np.float64) - real).mean() / 255)


def init_generator(config: TrainConfig, seed: int) -> GlobalGenerator:
    return E2ITrainingModule(config.to_dict(), seed=seed, epochs=1).generator


# ---------------------------------------------------------------------------------------------
# Architecture


def _expected_generator_params(ngf=64, n_down=4, n_blocks=9, c_in=1, c_out=3) -> int:
    """Parameter count of pix2pixHD's global generator, from its layer list (weights + biases)."""
    conv = lambda a, b, k: a * b * k * k + b  # noqa: E731
    total = conv(c_in, ngf, 7) + conv(ngf, c_out, 7)
    for i in range(n_down):
        w = ngf * 2**i
        total += conv(w, 2 * w, 3) + conv(2 * w, w, 3)  # down conv, and its transposed-conv twin
    return total + n_blocks * 2 * conv(ngf * 2**n_down, ngf * 2**n_down, 3)


def test_full_generator_shapes_params_and_flops():
    with torch.device("meta"):
        generator = GlobalGenerator()
        edges = torch.zeros(2, 1, 256, 256)
        out = generator(edges)
    assert out.shape == (2, 3, 256, 256)
    assert count_params(generator) == _expected_generator_params() == 182_436_995
    # DESIGN.md sec. 5: pix2pixHD's global generator costs ~108 GFLOPs per 256x256 image.
    flops = count_flops(generator, edges[:1])
    assert 100e9 < flops < 116e9, flops


def test_full_discriminator_feature_shapes():
    with torch.device("meta"):
        discriminator = MultiscaleDiscriminator()
        outputs = discriminator(torch.zeros(1, 1, 256, 256), torch.zeros(1, 3, 256, 256))
    assert len(outputs) == 2  # num_d scales, finest first
    widths = (64, 128, 256, 512, 1)
    for scale, side in zip(outputs, (256, 128)):
        expected = []
        for width, stride in zip(widths, (2, 2, 2, 1, 1)):
            side = side // 2 + 1 if stride == 2 else side + 1  # 4x4 conv, padding 2
            expected.append((1, width, side, side))
        assert [tuple(f.shape) for f in scale] == expected
    conv4 = lambda a, b: a * b * 16 + b  # noqa: E731
    per_scale = conv4(4, 64) + conv4(64, 128) + conv4(128, 256) + conv4(256, 512) + conv4(512, 1)
    assert count_params(discriminator) == 2 * per_scale


def test_small_config_sits_between_tiny_and_full():
    with torch.device("meta"):
        sizes = [count_params(init_generator(c, seed=0)) for c in (tiny_config(), small_config(), TrainConfig())]
    assert sizes[0] < sizes[1] < sizes[2] / 8
    assert small_config().generator.size_multiple == 8  # 256x128 (juice_bottle's aspect) fits
    assert set(e2i_training.NETWORKS) == {"full", "small", "tiny"}


def test_tiny_config_forward():
    config = tiny_config()
    generator = init_generator(config, seed=0)
    discriminator = MultiscaleDiscriminator(config.discriminator)
    edges = torch.from_numpy(np.stack([e for e, _ in make_pairs(2)])).float().div(255)[:, None]
    images = generator(edges)
    assert images.shape == (2, 3, 64, 64)
    assert images.min() >= 0 and images.max() <= 1
    outputs = discriminator(edges, images)
    assert len(outputs) == 2 and all(len(scale) == config.discriminator.n_layers + 2 for scale in outputs)
    assert outputs[1][0].shape[-1] == 32 // 2 + 1  # second scale sees the 2x pooled input


def test_loss_functions_reference_values():
    real = [[torch.ones(1, 4, 5, 5), torch.ones(1, 1, 3, 3)], [torch.ones(1, 4, 3, 3), torch.ones(1, 1, 2, 2)]]
    assert lsgan_loss(real, real=True).item() == 0
    assert lsgan_loss(real, real=False).item() == pytest.approx(2.0)  # (1 - 0)^2 on each of 2 scales
    assert feature_matching_loss(real, real).item() == 0
    fake = [[f + 0.5 for f in scale] for scale in real]
    # One intermediate layer per scale, weight 4/(n_layers+1) = 4/2, times 1/num_d, L1 = 0.5.
    assert feature_matching_loss(fake, real).item() == pytest.approx(2 * (4 / 2) * (1 / 2) * 0.5)


def _random_vgg19_features(narrow: bool = False) -> torch.nn.Sequential:
    """torchvision's VGG19 conv layers with seeded random weights (no ImageNet weights here);
    ``narrow`` divides every width by 16, keeping the layer layout."""
    from torchvision.models.vgg import cfgs, make_layers

    layout = [v if v == "M" or not narrow else v // 16 for v in cfgs["E"]]
    with torch.random.fork_rng():  # torchvision initialises from the global RNG; keep it untouched
        torch.manual_seed(0)
        return make_layers(layout)


def test_vgg_perceptual_loss_uses_the_five_relu_outputs():
    loss = VGGPerceptualLoss(_random_vgg19_features())
    assert [type(s[-1]).__name__ for s in loss.slices] == ["ReLU"] * 5
    assert [s[-2].out_channels for s in loss.slices] == [64, 128, 256, 512, 512]
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x).item() == 0
    assert loss(x, x.flip(-1)).item() > 0


def test_bad_vgg_weights_file_is_a_user_error(tmp_path):
    bad = tmp_path / "vgg19.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SynthgenError, match="vgg19.pth"):
        load_vgg19_features(bad)
    with pytest.raises(SynthgenError, match="not found"):
        resolve_vgg19_weights(tmp_path / "missing.pth")


def test_configs_validate():
    with pytest.raises(SynthgenError, match="ngf"):
        GeneratorConfig(ngf=0)
    with pytest.raises(SynthgenError, match="beta1"):
        TrainConfig(beta1=1.5)
    with pytest.raises(SynthgenError, match="unknown"):
        TrainConfig.from_dict({"generator": {"ngf": 8, "width": 3}})
    assert TrainConfig.from_dict(tiny_config().to_dict()) == tiny_config()


def test_lr_schedule_follows_pix2pixhd():
    # --niter 100 --niter_decay 100: epochs 1..101 (1-based) at lr, then down by lr/100 per epoch.
    assert [lr_factor(e, 200, 0.5) for e in (0, 99, 100)] == [1.0, 1.0, 1.0]
    assert lr_factor(101, 200, 0.5) == pytest.approx(0.99)
    assert lr_factor(199, 200, 0.5) == pytest.approx(0.01)
    assert lr_factor(0, 1, 0.5) == 1.0


# ---------------------------------------------------------------------------------------------
# Data, inference and generator files


def test_pairs_are_validated():
    edge, image = make_pairs(1)[0]
    with pytest.raises(SynthgenError, match=r"pairs\[0\].*not binary"):
        EdgeImagePairs([(cv2.GaussianBlur(edge, (3, 3), 1), image)], (64, 64), binary_edges=True)
    with pytest.raises(SynthgenError, match=r"pairs\[1\].*differ"):
        EdgeImagePairs([(edge, image), (edge[:32], image)], (64, 64), binary_edges=True)
    with pytest.raises(SynthgenError, match="no"):
        EdgeImagePairs([], (64, 64), binary_edges=True)
    sample = EdgeImagePairs([(edge, image)], (32, 32), binary_edges=True)[0]
    assert sample["edge"].shape == (1, 32, 32) and sample["image"].shape == (3, 32, 32)
    assert set(torch.unique(sample["edge"]).tolist()) <= {0.0, 1.0}


def test_generate_accepts_uint8_and_float_and_is_batch_invariant():
    generator = init_generator(tiny_config(), seed=1)
    edges = np.stack([e for e, _ in make_pairs(3)])
    from_uint8 = generate(generator, edges, batch_size=3)
    assert from_uint8.shape == (3, 64, 64, 3) and from_uint8.dtype == np.uint8
    assert np.array_equal(from_uint8, generate(generator, edges.astype(np.float32) / 255, batch_size=3))
    one_by_one = generate(generator, torch.from_numpy(edges)[:, None], batch_size=1)
    assert np.abs(one_by_one.astype(int) - from_uint8).max() <= 1  # float rounding at most
    with pytest.raises(SynthgenError, match="multiple of 4"):
        generate(generator, edges[:, :62, :62])
    with pytest.raises(SynthgenError, match=r"\[0, 1\]"):
        generate(generator, edges.astype(np.float32))


def test_generator_file_round_trip_is_bit_exact(tmp_path):
    generator = init_generator(tiny_config(), seed=2)
    path = tmp_path / "g.pt"
    save_generator(generator, path, training={"perceptual_loss": "none"})
    loaded = load_generator(path)
    assert loaded.config == generator.config
    original, restored = generator.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    edges = np.stack([e for e, _ in make_pairs(2)])
    assert np.array_equal(generate(generator, edges), generate(loaded, edges))
    # The same generator gives the same file, so a manifest can pin it by sha256.
    save_generator(generator, tmp_path / "again.pt", training={"perceptual_loss": "none"})
    assert sha256_file(path) == sha256_file(tmp_path / "again.pt")
    assert e2i.read_generator_file(path)["training"] == {"perceptual_loss": "none"}


def test_bad_generator_files_are_user_errors(tmp_path):
    with pytest.raises(SynthgenError, match="missing.pt.*not found"):
        load_generator(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(SynthgenError, match="garbage.pt"):
        load_generator(garbage)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(SynthgenError, match="other.pt.*not a synthgen"):
        load_generator(other)
    # Weights that do not fit the recorded config (e.g. an edited or mixed-up file).
    mixed = tmp_path / "mixed.pt"
    save_generator(init_generator(tiny_config(), seed=0), mixed)
    payload = torch.load(mixed, weights_only=True)
    payload["config"]["ngf"] = 16
    torch.save(payload, mixed)
    with pytest.raises(SynthgenError, match="mixed.pt.*do not match"):
        load_generator(mixed)


# ---------------------------------------------------------------------------------------------
# Training


def _train(tmp_path, name, **kwargs):
    args = dict(config=tiny_config(), epochs=3, batch_size=4, image_size=64, seed=0, device="cpu")
    args.update(kwargs)
    return train_e2i(make_pairs(8), tmp_path / name, **args)


def test_training_smoke_improves_l1_and_records_everything(tmp_path):
    pairs = make_pairs(8)
    before = mean_l1(init_generator(tiny_config(), seed=0), pairs)
    out = _train(tmp_path, "run", epochs=4)  # 4 epochs x 2 steps: L1 0.277 -> 0.229 here
    after = mean_l1(load_generator(out), pairs)
    assert after < 0.9 * before, (before, after)

    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    record = json.loads((run / "e2i_generator.json").read_text())
    assert record["perceptual_loss"] == "none" and "feature matching only" in record["perceptual_loss_note"]
    assert record["sha256"] == sha256_file(out)
    assert e2i.read_generator_file(out)["training"]["perceptual_loss"] == "none"

    log_dir = run / "logs" / "version_0"
    with open(log_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"loss_d_step", "loss_g_gan_step", "loss_g_feat_step", "l1_step", "lr"} <= set(rows[0])
    assert "loss_g_vgg_step" not in rows[0]
    for epoch in range(4):
        grid = Image.open(log_dir / "samples" / f"epoch_{epoch:04d}.png")
        assert grid.size == (3 * 64, 4 * 64) and grid.mode == "RGB"  # 4 rows of edge | fake | real


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    straight = _train(tmp_path, "straight", epochs=2, image_size=32)

    original_step = E2ITrainingModule.training_step

    def crash_in_second_epoch(self, batch, batch_idx):
        if self.current_epoch == 1:
            raise RuntimeError("simulated crash")
        return original_step(self, batch, batch_idx)

    monkeypatch.setattr(E2ITrainingModule, "training_step", crash_in_second_epoch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(tmp_path, "resumed", epochs=2, image_size=32)
    monkeypatch.setattr(E2ITrainingModule, "training_step", original_step)
    resumed = _train(tmp_path, "resumed", epochs=2, image_size=32)

    a, b = load_generator(straight).state_dict(), load_generator(resumed).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SynthgenError, match="last.ckpt.*seed"):
        _train(tmp_path, "resumed", epochs=2, image_size=32, seed=1)


def test_training_with_vgg_weights_adds_the_perceptual_loss(tmp_path, monkeypatch):
    """The VGG branch, with a narrow stand-in for VGG19's conv layers (same layer layout, so the same
    relu1_1..relu5_1 slices) in place of real weights: this checks the wiring, cheaply."""
    weights = tmp_path / "vgg19-test.pth"
    weights.write_bytes(b"stand-in")
    monkeypatch.setattr(e2i_training, "load_vgg19_features", lambda path: _random_vgg19_features(narrow=True))
    _train(tmp_path, "vgg", config=tiny_config(vgg19_weights=str(weights)), epochs=1, image_size=32)
    record = json.loads((tmp_path / "vgg" / "e2i_generator.json").read_text())
    assert record["perceptual_loss"] == "vgg19"
    assert record["vgg19_weights_sha256"] == sha256_file(weights)
    with open(tmp_path / "vgg" / "logs" / "version_0" / "metrics.csv") as f:
        assert "loss_g_vgg_step" in next(csv.DictReader(f))


def test_training_refuses_bad_options(tmp_path):
    with pytest.raises(SynthgenError, match="image_size"):
        _train(tmp_path, "bad", image_size=62)
    with pytest.raises(SynthgenError, match="epochs"):
        _train(tmp_path, "bad", epochs=0)
    with pytest.raises(SynthgenError, match="device"):
        _train(tmp_path, "bad", device="tpu")


# ---------------------------------------------------------------------------------------------
# synthgen train-e2i


def test_train_e2i_command_trains_on_the_demo_and_says_how_to_use_it(tmp_path, pidinet_weights, capsys):
    from synthgen.generator.cli import main

    out = tmp_path / "run"
    main(["train-e2i", "--renderer", "full", "--image-size", "64", "--epochs", "1", "--batch-size", "8", "--network", "tiny", "--device", "cpu",
          "--weights-dir", str(pidinet_weights.parent), "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert f"generator: {out / 'e2i_generator.pt'}" in printed and f"--e2i {out / 'e2i_generator.pt'}" in printed
    record = json.loads((out / "e2i_generator.json").read_text())
    assert record["num_pairs"] == 24 and record["image_size"] == [64, 64]  # the demo's 24 training images
    assert record["config"]["binary_edges"] is False  # PiDiNet probabilities, as the build's maps are
    model = e2i.load_e2i_model(out / "e2i_generator.pt")
    assert model.binary_edges is False and model.sha256 == record["sha256"]


def test_train_e2i_command_refuses_bad_input(tmp_path, capsys):
    from synthgen.generator.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train-e2i", "--dataset", "mvtec_loco", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "--category: required" in capsys.readouterr().err
