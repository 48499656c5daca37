"""PiDiNet: the pixel-difference ops against their definitions, strict checkpoint loading, the conversion to
plain convolutions, real edge maps of juice_bottle, and the EdgeDetector the pipeline calls."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import read_rgb, resize_rgb
from synthgen.generator.models.edges import MAP_NAMES, EdgeDetector
from synthgen.generator.models.pidinet import (
    MIN_SIDE,
    PixelDifferenceConv,
    Variant,
    build_pidinet,
    convert_to_vanilla,
    load_pidinet,
    read_checkpoint,
)

FILES = {"pidinet": "table5_pidinet.pth", "pidinet-tiny": "table5_pidinet-tiny.pth"}
SIZE_HW = (512, 256)  # juice_bottle is 800 wide x 1600 high; keep its aspect ratio
SMALL_HW = (256, 128)  # for the tests that only compare two computations: a quarter of the work


# ----- the ops, each against a direct computation of its pixel differences --------------------------------

# Clockwise around the centre of a 3x3 window, rows growing downwards.
RING = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
# The 8 radial directions in raster order; the checkpoints keep direction k's weight at flat 3x3 index k+1.
DIRECTIONS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _pairs(op):
    """(weight position in the 3x3 kernel, pixel a, pixel b) for y = sum w (x_a - x_b), and the window size."""
    if op == "cd":
        return [((r, c), (r, c), (1, 1)) for r in range(3) for c in range(3)], 3
    if op == "ad":
        return [(RING[k], RING[k], RING[(k + 1) % 8]) for k in range(8)], 3
    if op == "rd":
        return [
            (divmod(k + 1, 3), (2 + 2 * dy, 2 + 2 * dx), (2 + dy, 2 + dx)) for k, (dy, dx) in enumerate(DIRECTIONS)
        ], 5
    raise ValueError(op)


def reference_pdc(op, x, weight, groups):
    """The op from its definition: zero-padded windows (unfold), pixel differences, weighted sum."""
    pairs, size = _pairs(op)
    b, c, h, w = x.shape
    windows = F.unfold(x, size, padding=size // 2).view(b, c, size, size, h, w)
    diffs = torch.stack([windows[:, :, a[0], a[1]] - windows[:, :, p[0], p[1]] for _, a, p in pairs], dim=2)
    taps = torch.stack([weight[:, :, r, col] for (r, col), _, _ in pairs], dim=2)  # (out, in/groups, pairs)
    if groups == 1:
        return torch.einsum("bckhw,ock->bohw", diffs, taps)
    return torch.einsum("bckhw,ck->bchw", diffs, taps[:, 0])  # depthwise


@pytest.mark.parametrize("op", ["cd", "ad", "rd"])
@pytest.mark.parametrize("groups", ["full", "depthwise"])
def test_pixel_difference_ops_match_their_definition(op, groups):
    gen = torch.Generator().manual_seed(7)
    channels = 4
    x = torch.rand(2, channels, 9, 11, generator=gen, dtype=torch.float64)
    conv = PixelDifferenceConv(op, channels, 6 if groups == "full" else channels, 1 if groups == "full" else channels)
    conv = conv.double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
        expected = reference_pdc(op, x, conv.weight, conv.groups)
        torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)
        vanilla = conv.to_vanilla()
        assert vanilla.kernel_size == ((5, 5) if op == "rd" else (3, 3))
        torch.testing.assert_close(vanilla(x), expected, rtol=0, atol=1e-12)


def test_rd_ignores_the_first_weight_and_ad_the_centre():
    """Facts of the checkpoints' layout: rd reads flat weights 1..8, ad pairs the centre with itself."""
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    for op, position in (("rd", (0, 0)), ("ad", (1, 1))):
        conv = PixelDifferenceConv(op, 3, 3, groups=3).double()
        with torch.no_grad():
            before = conv(x)
            conv.weight[:, :, position[0], position[1]] += 5.0
            torch.testing.assert_close(conv(x), before, rtol=0, atol=1e-12)


# ----- checkpoints ----------------------------------------------------------------------------------------


def test_official_checkpoints_load_with_their_architecture(pidinet_weights):
    for variant, file in FILES.items():
        model = load_pidinet(pidinet_weights / file, converted=False)
        assert model.variant == {"pidinet": Variant(60, 24, True), "pidinet-tiny": Variant(20, 8, True)}[variant]
        assert set(model.state_dict()) == set(read_checkpoint(pidinet_weights / file))


def _saved(tmp_path, state, name="ckpt.pth"):
    path = tmp_path / name
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in state.items()}}, path)
    return path


def test_loading_is_strict_and_names_the_key(tmp_path, pidinet_weights):
    state = read_checkpoint(pidinet_weights / FILES["pidinet-tiny"])

    missing = dict(state)
    del missing["block3_2.conv1.weight"]
    with pytest.raises(SynthgenError, match=r"ckpt\.pth: not a pidinet-tiny checkpoint: key 'block3_2\.conv1\.weight' is missing"):
        load_pidinet(_saved(tmp_path, missing), "pidinet-tiny")

    reshaped = dict(state)
    reshaped["classifier.weight"] = torch.zeros(1, 5, 1, 1)
    with pytest.raises(SynthgenError, match=r"key 'classifier\.weight' has shape \(1, 5, 1, 1\), expected \(1, 4, 1, 1\)"):
        load_pidinet(_saved(tmp_path, reshaped), None)

    extra = dict(state)
    extra["block5_1.conv1.weight"] = torch.zeros(1)
    with pytest.raises(SynthgenError, match=r"unexpected key 'block5_1\.conv1\.weight'"):
        load_pidinet(_saved(tmp_path, extra), "pidinet-tiny")

    # The right file for another variant: refused at its first layer.
    with pytest.raises(SynthgenError, match=r"not a pidinet checkpoint: key 'init_block\.weight' has shape \(20, 3, 3, 3\)"):
        load_pidinet(pidinet_weights / FILES["pidinet-tiny"], "pidinet")


def test_unreadable_checkpoints_are_refused(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(SynthgenError, match="garbage.pth: not a readable PyTorch checkpoint"):
        load_pidinet(garbage)
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(SynthgenError, match="list.pth: not a PiDiNet checkpoint"):
        load_pidinet(listing)
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(SynthgenError, match="other.pth: not a PiDiNet checkpoint: key 'init_block.weight' is missing"):
        load_pidinet(other)
    with pytest.raises(SynthgenError, match="not found"):
        load_pidinet(tmp_path / "absent.pth")


# ----- real images ----------------------------------------------------------------------------------------


def _as_batch(images):
    """uint8 (B, H, W, 3) and the same as a float (B, 3, H, W) tensor in [0, 1]."""
    return images, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def bottle_files(loco_root):
    """The first three juice_bottle training images."""
    return sorted((loco_root / "juice_bottle" / "train" / "good").glob("*.png"))[:3]


@pytest.fixture(scope="module")
def bottles(bottle_files):
    return _as_batch(np.stack([resize_rgb(read_rgb(f), SIZE_HW) for f in bottle_files]))


@pytest.fixture(scope="module")
def small_bottles(bottle_files):
    return _as_batch(np.stack([resize_rgb(read_rgb(f), SMALL_HW) for f in bottle_files[:2]]))


@pytest.mark.parametrize("variant", ["pidinet", "pidinet-tiny"])
def test_converted_model_matches_pixel_difference_form(variant, pidinet_weights, small_bottles):
    _, x = small_bottles
    model = load_pidinet(pidinet_weights / FILES[variant], variant, converted=False)
    converted = convert_to_vanilla(model)
    assert not any(isinstance(m, PixelDifferenceConv) for m in converted.modules())
    assert converted.block1_2.conv1.kernel_size == (5, 5)  # carv4 layer 2 is rd
    with torch.inference_mode():
        reference, folded = model(x), converted(x)
    assert folded.shape == (2, 5, *SMALL_HW)
    assert (folded - reference).abs().max().item() < 1e-4


def _label_region(image):
    """The labels, found from brightness: the object is what Otsu separates from the black background, the
    labels the two largest blobs that a second Otsu split finds brightest on the object. Dilated 4 px so
    that the labels' outlines fall inside. On some images the top blob also takes in the bright juice
    under the bottle's shoulder; the test below therefore compares strong-gradient pixels with flat ones
    inside this area rather than trusting its outline to be the labels' exact border."""
    value = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 2]
    object_level, _ = cv2.threshold(value, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    on_object = value > object_level
    bright_level, _ = cv2.threshold(value[on_object].reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = ndimage.binary_opening(value > bright_level, iterations=2)
    blobs, n = ndimage.label(bright)
    sizes = ndimage.sum(bright, blobs, range(1, n + 1))
    labels = np.isin(blobs, np.argsort(sizes)[::-1][:2] + 1)
    return ndimage.binary_dilation(labels, iterations=4), on_object


def _largest_component(mask):
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(mask, iterations=2))
    parts, n = ndimage.label(mask)
    return parts == 1 + np.argmax(ndimage.sum(mask, parts, range(1, n + 1)))


def test_fused_edges_lie_on_the_labels_and_the_bottle_contour(pidinet_weights, bottles):
    """Edge mass of table5_pidinet concentrates where the image has its label and contour edges.

    Within the label region, "edges" are the strongest 20% of grey-level gradients (1 px band around them)
    and "flat" is what lies 3 px or more away from them; the fused map must be >= 3x stronger on the
    former. The bottle's silhouette (5 px band) must be >= 3x stronger than flat background 12 px or more
    away from the bottle. Measured: label ratio 3.8-23, contour ratio 3.4-8.6 on the first 10 training
    images; a counter-clockwise ad gives label ratios 2.1-2.3, swapped rd rings 1.3-1.8, random weights 1.0.
    """
    images, x = bottles
    model = load_pidinet(pidinet_weights / FILES["pidinet"], "pidinet")
    with torch.inference_mode():
        fused = model(x)[:, 4].numpy()
    for image, edge in zip(images, fused):
        region, on_object = _label_region(image)
        grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
        gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        strong_level = np.percentile(gradient[region], 80)
        strong = (gradient >= strong_level) & region
        label_edges = ndimage.binary_dilation(strong, iterations=1) & region
        label_flat = region & ~ndimage.binary_dilation(strong, iterations=3)
        assert edge[label_edges].mean() >= 3 * edge[label_flat].mean()

        bottle = _largest_component(on_object)
        contour = ndimage.binary_dilation(bottle ^ ndimage.binary_erosion(bottle), iterations=2)
        inner = np.zeros_like(bottle)
        inner[16:-16, 16:-16] = True  # the image border, where zero padding itself makes an edge
        flat_background = (
            inner
            & ~ndimage.binary_dilation(bottle, iterations=12)
            & ~ndimage.binary_dilation(gradient >= strong_level, iterations=3)
        )
        assert edge[contour].mean() >= 3 * edge[flat_background].mean()


# ----- shapes and sizes -----------------------------------------------------------------------------------


def test_any_size_batched_equals_one_by_one():
    torch.manual_seed(0)
    model = convert_to_vanilla(build_pidinet("pidinet-tiny").eval())
    x = torch.rand(3, 3, 37, 53)
    with torch.inference_mode():
        batched = model(x)
        singles = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert batched.shape == (3, 5, 37, 53)
    assert ((batched >= 0) & (batched <= 1)).all()
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-5)


def test_too_small_images_are_refused():
    model = build_pidinet("pidinet-tiny-l").eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, MIN_SIDE, MIN_SIDE)).shape == (1, 5, MIN_SIDE, MIN_SIDE)
        with pytest.raises(SynthgenError, match="too small for PiDiNet"):
            model(torch.rand(1, 3, MIN_SIDE - 1, 64))


@pytest.mark.parametrize("variant", ["pidinet", "pidinet-small", "pidinet-tiny", "pidinet-l", "pidinet-small-l", "pidinet-tiny-l"])
def test_every_variant_converts_exactly(variant):
    torch.manual_seed(1)
    model = build_pidinet(variant).eval()
    x = torch.rand(1, 3, 24, 40)
    with torch.inference_mode():
        assert (convert_to_vanilla(model)(x) - model(x)).abs().max().item() < 1e-5


# ----- EdgeDetector ---------------------------------------------------------------------------------------


def test_edge_detector_uint8_maps(pidinet_weights, small_bottles):
    images, x = small_bottles
    detector = EdgeDetector("pidinet-tiny", weights_dir=pidinet_weights)
    maps = detector(images)
    assert maps.dtype == np.uint8 and maps.shape == (2, len(MAP_NAMES), *SMALL_HW)
    with torch.inference_mode():
        probabilities = load_pidinet(pidinet_weights / FILES["pidinet-tiny"], converted=False)(x).numpy()
    assert np.abs(maps.astype(np.float32) - 255 * probabilities).max() <= 0.5 + 255e-4
    # Float tensor input, one image per forward pass: the same maps, up to a rounding tie (the convolution
    # library picks its algorithm by batch size, which moves the last float bits).
    one_by_one = EdgeDetector("pidinet-tiny", weights_dir=pidinet_weights, max_batch_pixels=SMALL_HW[0] * SMALL_HW[1])
    difference = np.abs(one_by_one(x).astype(int) - maps)
    assert difference.max() <= 1 and difference.mean() < 1e-4


def test_edge_detector_cache_params_and_paths(tmp_path, pidinet_weights):
    by_name = EdgeDetector("pidinet-tiny", weights_dir=pidinet_weights)
    by_path = EdgeDetector(pidinet_weights / FILES["pidinet-tiny"])
    params = by_name.cache_params()
    assert params == by_path.cache_params()
    assert params["weights_sha256"] == "e32b23fff6c1cb9bd4385a1d615023346fc2e3f2f3a8db7f78cc4ce95a14730c"
    assert EdgeDetector("pidinet-tiny", converted=False, weights_dir=pidinet_weights).cache_params() != params
    # A registered file name with the wrong content is refused, even given as a path.
    impostor = tmp_path / FILES["pidinet-tiny"]
    impostor.write_bytes((pidinet_weights / FILES["pidinet"]).read_bytes())
    with pytest.raises(SynthgenError, match="does not match pidinet-tiny"):
        EdgeDetector(impostor)
    with pytest.raises(SynthgenError, match="neither a PiDiNet weights name"):
        EdgeDetector("pidinet-huge")


def test_edge_detector_refuses_bad_input(pidinet_weights):
    detector = EdgeDetector("pidinet-tiny", weights_dir=pidinet_weights)
    for bad in (
        np.zeros((2, 32, 32, 3), np.float32),
        np.zeros((32, 32, 3), np.uint8),
        torch.zeros(1, 32, 32, 3),
        torch.full((1, 3, 32, 32), 2.0),
        [np.zeros((32, 32, 3), np.uint8)],
    ):
        with pytest.raises(SynthgenError, match="edge detector input"):
            detector(bad)
    with pytest.raises(SynthgenError, match="too small"):
        detector(np.zeros((1, 4, 64, 3), np.uint8))
    with pytest.raises(SynthgenError, match="precision"):
        EdgeDetector("pidinet-tiny", weights_dir=pidinet_weights, precision="int8")


def test_an_images_edge_map_does_not_depend_on_the_images_sharing_its_pass(pidinet_weights, small_bottles):
    """Every forward pass runs the same number of images (a short last pass is padded), so an image's map is
    the same bytes alone, in a full pass or in a short one: what the cache holds, the worker count and the
    order never change a sample (without the padding, 1-level differences appeared in a few pixels)."""
    images, _ = small_bottles
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(5, *SMALL_HW, 3), dtype=np.uint8)
    batch = np.concatenate([images, noise])  # 7 images
    detector = EdgeDetector("pidinet-tiny", weights_dir=pidinet_weights, max_batch_pixels=4 * SMALL_HW[0] * SMALL_HW[1])
    together = detector(batch)  # passes of 4 + 3 (padded)
    alone = np.concatenate([detector(batch[i : i + 1]) for i in range(len(batch))])
    reversed_order = detector(np.ascontiguousarray(batch[::-1]))[::-1]
    assert np.array_equal(together, alone) and np.array_equal(together, reversed_order)
