"""LogicAL strategies (generator/strategies/logical.py) and their ground truth (ssim_mask.py).

Most tests render through the pipeline's own ``render_specs`` on demo scenes at 64x64, whose object
regions are known exactly (tests/logical_demo.py). The renderer is a stand-in for the trained
generator with known behaviour: a fixed Gaussian blur of the edge map (local, so an edit changes the
image only near the edited edges). The real pix2pixHD network is exercised in one test with
untrained tiny weights, and end to end through ``synthgen build`` when the PiDiNet weights exist.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
from skimage.metrics import structural_similarity

from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import sha256_file
from synthgen.generator.models.e2i import E2IModel, save_generator
from synthgen.generator.pipeline import build
from synthgen.generator.render import render_specs
from synthgen.generator.plan import SampleSpec, plan_build
from synthgen.generator.training.e2i import E2ITrainingModule, tiny_config
from synthgen.generator.config import BuildConfig
from synthgen.generator.shards.reader import read_manifest
from synthgen.generator.strategies import get_strategy
from synthgen.generator.strategies.logical import (
    MAX_EDGE_PORTION,
    augment_edges,
    draw_arbitrary_shapes,
    edge_portion,
    edit_edges,
    rasterize_shapes,
    semantic_candidates,
    semantic_region,
)
from synthgen.generator.strategies.ssim_mask import jnd_map, ssim_map
from logical_demo import demo_context, demo_images, demo_maps, iou

SIZE = 64
STRATEGIES = ("semantic-remove", "semantic-replace", "semantic-merge",
              "arbitrary-remove", "arbitrary-replace", "arbitrary-merge", "logical")


class BlurRenderer(nn.Module):
    """Stand-in generator: the edge map blurred by a fixed 7x7 Gaussian, inverted, as grey RGB."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 7, padding=3, padding_mode="reflect", bias=False)
        g = cv2.getGaussianKernel(7, 1.5)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(g @ g.T).float().view(1, 1, 7, 7))

    def forward(self, edges):
        return (1 - 2 * self.conv(edges)).clamp(0, 1).expand(-1, 3, -1, -1)


class ShiftRenderer(nn.Module):
    """A collapsing stand-in: a fixed texture rolled by an amount that depends on the total edge mass,
    so any edit changes every pixel (the global collapse of supp. Fig. 7)."""

    def __init__(self):
        super().__init__()
        self.texture = nn.Parameter(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)))

    def forward(self, edges):
        shifts = (edges.flatten(1).sum(1) * 7).long() % SIZE
        return torch.cat([torch.roll(self.texture, int(s), dims=3) for s in shifts])


def stand_in(module: nn.Module) -> E2IModel:
    return E2IModel(module.eval(), binary_edges=False, path=Path("stand-in"), sha256="0" * 64)


@pytest.fixture(scope="module")
def demo():
    images, regions = demo_images(8, SIZE)
    return images, regions, demo_maps(images, regions)


def render(ctx, name: str, n: int, seed: int = 0, max_attempts: int = 8):
    specs = [SampleSpec(i, i % len(ctx.sources), i // len(ctx.sources), name, seed + i) for i in range(n)]
    return specs, render_specs(specs, ctx, max_attempts)


def edited_region(sample, regions: np.ndarray) -> np.ndarray:
    p = sample.params
    if p["region_mode"] == "semantic":
        return semantic_region(regions, p["region"])
    return rasterize_shapes(p["region"], regions.shape)


# --------------------------------------------------------------------------------------------------
# Eq. 1 and the region shapes


def test_edge_edits_follow_eq1_in_the_papers_inverted_convention():
    rng = np.random.default_rng(0)
    e_j, a_e_i = (rng.integers(0, 256, (16, 16)).astype(np.uint8) for _ in range(2))
    m = np.zeros((16, 16), bool)
    m[4:10, 3:12] = True
    # The paper's maps are 1 - p (white background); Eq. 1 there, converted back to probabilities.
    E_j, A, M = 1 - e_j / 255, 1 - a_e_i / 255, m.astype(float)
    paper = {
        "remove": M + (1 - M) * E_j,
        "replace": M * A + (1 - M) * E_j,
        "merge": M * np.clip(A + E_j - 1, 0, 1) + (1 - M) * E_j,
    }
    for edit, expected in paper.items():
        ours = edit_edges(e_j, m, edit, a_e_i)
        assert np.abs(ours / 255 - (1 - expected)).max() < 1e-9, edit
        assert np.array_equal(ours[~m], e_j[~m])  # outside M the normal edges stay


def test_augmentation_flips_and_resizes_about_the_centre():
    edge = np.zeros((32, 32), np.uint8)
    edge[8:12, 4:20] = 255
    assert np.array_equal(augment_edges(edge, {"op": "flip", "axis": "horizontal"}), edge[:, ::-1])
    assert np.array_equal(augment_edges(edge, {"op": "flip", "axis": "vertical"}), edge[::-1])
    assert np.array_equal(augment_edges(edge, {"op": "resize", "scale": 1.0}), edge)
    half = augment_edges(edge, {"op": "resize", "scale": 0.5})
    assert half.sum() == pytest.approx(edge.sum() / 4, rel=0.1)  # area scales by s^2
    ys, xs = np.nonzero(half > 127)
    assert 9.5 <= ys.mean() <= 13 and 7.5 <= xs.mean() <= 15  # pulled towards the centre (15.5, 15.5)


def test_arbitrary_regions_are_three_shapes_centred_on_edges():
    edge = np.zeros((128, 128), np.uint8)
    edge[40:44, 20:100] = 255
    rng = np.random.default_rng(3)
    for _ in range(20):
        shapes = draw_arbitrary_shapes(rng, edge)
        assert [s["kind"] for s in shapes] == ["rectangle", "ellipse", "polygon"]
        for s in shapes:
            x, y = s["centre"]
            assert edge[int(y), int(x)] == 255
            assert 128 / 16 <= s["size"][0] <= 128 / 4
            assert 1 / 3 <= s["size"][1] / s["size"][0] <= 3
        area = rasterize_shapes(shapes, edge.shape).mean()
        assert 0 < area < 3 * (128 / 4) ** 2 * 3 / 128**2  # at most three maximal boxes


# --------------------------------------------------------------------------------------------------
# SSIM and JND


def test_ssim_map_matches_skimage_gaussian_ssim():
    rng = np.random.default_rng(1)
    a = rng.random((48, 48, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    _, reference = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1.0, full=True)
    ours = ssim_map(torch.from_numpy(a).permute(2, 0, 1)[None].float(), torch.from_numpy(b).permute(2, 0, 1)[None].float())[0]
    inner = np.s_[6:-6, 6:-6]  # away from the border, where the two pad differently
    assert np.abs(ours.numpy()[inner] - reference.mean(2)[inner]).max() < 1e-4
    assert torch.allclose(ssim_map(ours[None, None].expand(1, 3, -1, -1), ours[None, None].expand(1, 3, -1, -1)), torch.ones(1))


def test_jnd_is_highest_in_the_dark_and_on_texture_and_normalised():
    image = np.full((64, 96), 127.0)
    image[:, :32] = 0  # dark: luminance adaptation 17 + 3 = 20 grey levels
    rng = np.random.default_rng(0)
    image[:, 64:] = np.clip(127 + rng.normal(0, 40, (64, 32)), 0, 255)  # texture: contrast masking
    rgb = torch.from_numpy(np.repeat(image[None, None] / 255, 3, axis=1)).float()
    jnd = jnd_map(rgb)[0].numpy()
    dark, grey, texture = jnd[8:-8, 4:28].mean(), jnd[8:-8, 36:60].mean(), jnd[8:-8, 68:92].mean()
    assert jnd.min() == 0 and jnd.max() == pytest.approx(1)
    # NAMM on flat mid-grey: LA = 3 (Chou & Li at bg = 127), CM = 0 -> the lowest threshold.
    assert grey == pytest.approx(0, abs=1e-6)
    assert dark > 0.4 and texture > grey
    assert jnd_map(torch.full((1, 3, 16, 16), 0.5)).abs().max() == 0  # constant image: all zero


# --------------------------------------------------------------------------------------------------
# The strategies through the pipeline's render path


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_masks_mark_the_edited_objects(demo, name):
    images, regions, maps = demo
    ctx = demo_context(images, maps, stand_in(BlurRenderer()))
    specs, samples = render(ctx, name, 8)
    accepted = [(spec, s) for spec, s in zip(specs, samples) if not s.exhausted]
    assert len(accepted) >= 6, [s.params for s in samples]
    for spec, s in accepted:
        assert s.image.shape == (SIZE, SIZE, 3) and s.image.dtype == np.uint8
        assert np.array_equal(s.normal, images[spec.source_index])  # the real photo is the target
        region = edited_region(s, regions[spec.source_index])
        mask = s.mask > 0
        assert mask.any()
        # The blur renderer changes pixels within its 3 px radius of an edited edge; SSIM's window adds 5.
        near = cv2.dilate(region.astype(np.uint8), np.ones((17, 17), np.uint8)) > 0
        assert (mask & ~near).sum() == 0, s.params
        assert 0 < s.params["edge_portion"] <= MAX_EDGE_PORTION
        assert s.params["mask_area"] == pytest.approx(mask.mean())
        assert s.extras["edge"].shape == (1, SIZE, SIZE) and s.extras["edge"].dtype == np.uint8
        assert np.array_equal(s.extras["edge"][0], maps[spec.source_index]["edges"][0])
        assert s.extras["jnd"].shape == (1, SIZE, SIZE) and s.extras["jnd"].dtype == np.float16
        assert 0 <= s.extras["jnd"].min() and s.extras["jnd"].max() <= 1


def test_semantic_remove_masks_overlap_the_removed_object(demo):
    images, regions, maps = demo
    ctx = demo_context(images, maps, stand_in(BlurRenderer()))
    specs, samples = render(ctx, "semantic-remove", 8)
    ious = [iou(s.mask > 0, edited_region(s, regions[spec.source_index])) for spec, s in zip(specs, samples)]
    assert np.mean(ious) > 0.3, ious  # the blur renderer marks an object's outline band, not its inside


def test_logical_mixes_regions_and_edits(demo):
    images, regions, maps = demo
    ctx = demo_context(images, maps, stand_in(BlurRenderer()))
    _, samples = render(ctx, "logical", 24)
    assert {s.params["region_mode"] for s in samples} == {"semantic", "arbitrary"}
    assert {s.params["edit"] for s in samples} == {"remove", "replace", "merge"}


def test_rendering_is_deterministic_and_batch_invariant(demo):
    images, regions, maps = demo
    module = E2ITrainingModule(tiny_config().to_dict(), seed=0, epochs=1).generator  # the real network, untrained
    ctx = demo_context(images, maps, stand_in(module))
    strategy = get_strategy("logical")
    recipes = [strategy.draw(np.random.default_rng(s), ctx, s % 8) for s in range(4)]
    again = [strategy.draw(np.random.default_rng(s), ctx, s % 8) for s in range(4)]
    assert [r.params for r in recipes] == [r.params for r in again]
    batch = torch.stack([ctx.normal_image(s % 8) for s in range(4)])
    together = strategy.render(batch, recipes, ctx)
    for k in range(4):
        alone = strategy.render(batch[k : k + 1], recipes[k : k + 1], ctx)
        assert torch.allclose(alone.images[0], together.images[k], atol=1e-5)
        assert torch.equal(alone.masks[0], together.masks[k])


def test_collapsed_generations_are_rejected_and_counted(demo):
    images, regions, maps = demo
    ctx = demo_context(images, maps, stand_in(ShiftRenderer()))
    _, samples = render(ctx, "semantic-remove", 4, max_attempts=3)
    for s in samples:  # every attempt shifts the whole texture: mask ~ whole image, normal SSIM ~ 0
        assert s.exhausted and s.redraws == 2 and not s.mask.any() and s.params["fallback"] == "normal"


def test_edit_portion_is_capped():
    size = 32
    edges = np.zeros((4, size, size), np.uint8)
    edges[0, 2:30, 2:6] = 255  # region 1 holds most of the edge mass
    edges[0, 20:22, 20:24] = 255  # region 2 a little
    labels = np.zeros((size, size), np.int32)
    labels[:, :10], labels[18:24, 18:26] = 1, 2
    maps = [{"edges": edges, "edges_fused": edges.max(0), "regions": labels}]
    image = np.zeros((1, size, size, 3), np.uint8)
    ctx = demo_context(image, maps, stand_in(BlurRenderer()))
    for seed in range(10):
        recipe = get_strategy("semantic-remove").draw(np.random.default_rng(seed), ctx, 0)
        assert recipe.params["region"] == 2
        assert recipe.params["edge_portion"] == pytest.approx(edge_portion(edges[0], recipe.arrays["anomaly_edge"]))


def test_semantic_region_takes_the_parts_nested_inside_it():
    regions = np.zeros((40, 40), np.int32)
    regions[5:25, 5:25] = 1  # a label ...
    regions[10:15, 10:15] = 2  # ... with an icon on it
    regions[18:22, 18:30] = 3  # a region that only reaches into the label
    regions[28:38, 28:38] = 4  # a ring ...
    regions[31:35, 31:35] = 0  # ... around background
    label = semantic_region(regions, 1)
    assert np.array_equal(label, np.isin(regions, [1, 2]))  # the icon joins, region 3 does not
    assert np.array_equal(semantic_region(regions, 2), regions == 2)  # a part alone is just itself
    assert np.array_equal(semantic_region(regions, 4), regions == 4)  # the ring's hole stays out


def test_semantic_region_matches_its_definition_on_random_maps():
    """The windowed implementation against the definition written out over the whole image."""
    from scipy import ndimage

    def by_definition(regions, label):
        selected = regions == label
        outline = ndimage.binary_fill_holes(selected)
        parts = [p for p in np.unique(regions[outline & ~selected]) if p > 0 and not ((regions == p) & ~outline).any()]
        return selected | np.isin(regions, parts)

    rng = np.random.default_rng(0)
    yy, xx = np.ogrid[:48, :48]
    nested = 0
    for _ in range(80):
        regions = np.zeros((48, 48), np.int32)
        for k in range(1, int(rng.integers(2, 12))):
            y, x, h, w = (int(v) for v in rng.integers(0, 40, 2).tolist() + rng.integers(2, 30, 2).tolist())
            if rng.random() < 0.5:
                regions[y : y + h, x : x + w] = k
            else:
                regions[(yy - y) ** 2 + (xx - x) ** 2 < h * h / 2] = k
        for label in semantic_candidates(regions):
            expected = by_definition(regions, label)
            assert np.array_equal(semantic_region(regions, label), expected)
            nested += not np.array_equal(expected, regions == label)
    assert nested > 0  # the maps did exercise nesting


def test_semantic_remove_of_a_label_removes_its_icon_too():
    size = 32
    edges = np.zeros((4, size, size), np.uint8)
    edges[0, 4, 4:28] = edges[0, 27, 4:28] = 255  # a label's top and bottom border
    edges[0, 14:18, 14:18] = 255  # its icon
    edges[0, 30, :] = 255  # a shelf line that keeps the edit under the portion cap
    edges[0, :, 1] = edges[0, :, 30] = 255
    labels = np.zeros((size, size), np.int32)
    labels[4:28, 4:28], labels[13:19, 13:19] = 1, 2
    maps = [{"edges": edges, "edges_fused": edges.max(0), "regions": labels}]
    ctx = demo_context(np.zeros((1, size, size, 3), np.uint8), maps, stand_in(BlurRenderer()))
    chosen = set()
    for seed in range(8):
        recipe = get_strategy("semantic-remove").draw(np.random.default_rng(seed), ctx, 0)
        anomaly = recipe.arrays["anomaly_edge"]
        chosen.add(recipe.params["region"])
        if recipe.params["region"] == 1:
            assert not anomaly[4:28, 4:28].any() and anomaly[30].all()
        else:
            assert not anomaly[13:19, 13:19].any() and anomaly[4, 4:28].all()
    assert chosen == {1, 2}


def test_tps_option_warps_photo_maps_and_mask_together(demo):
    images, regions, maps = demo
    ctx = demo_context(images, maps, stand_in(BlurRenderer()), options={"semantic-remove": {"tps": True}})
    specs, samples = render(ctx, "semantic-remove", 4)
    for spec, s in zip(specs, samples):
        assert len(s.params["tps"]) == 3
        assert not np.array_equal(s.normal, images[spec.source_index])  # the warped photo is the target
    bad = demo_context(images, maps, stand_in(BlurRenderer()), options={"semantic-remove": {"tps": "yes"}})
    with pytest.raises(SynthgenError, match="semantic-remove.tps"):
        render(bad, "semantic-remove", 1)


def test_ssim_threshold_option_grows_the_mask(demo):
    images, regions, maps = demo
    areas = {}
    for t in (0.5, 0.9):
        ctx = demo_context(images, maps, stand_in(BlurRenderer()), options={"semantic-remove": {"ssim_threshold": t}})
        _, samples = render(ctx, "semantic-remove", 4)
        areas[t] = [s.mask.mean() for s in samples]
    assert all(a < b for a, b in zip(areas[0.5], areas[0.9]))  # same draws: SSIM < 0.9 contains SSIM < 0.5
    bad = demo_context(images, maps, stand_in(BlurRenderer()), options={"semantic-remove": {"ssim_threshold": 2}})
    with pytest.raises(SynthgenError, match="semantic-remove.ssim_threshold"):
        render(bad, "semantic-remove", 1)


def test_missing_generator_or_maps_are_user_errors(demo):
    images, regions, maps = demo
    with pytest.raises(SynthgenError, match="train-e2i"):
        render(demo_context(images, maps, None), "semantic-remove", 1)
    no_regions = [{**m, "regions": m["regions"].astype(np.uint8)} for m in maps]
    with pytest.raises(SynthgenError, match="'regions' must be int32"):
        render(demo_context(images, no_regions, stand_in(BlurRenderer())), "semantic-remove", 1)


# --------------------------------------------------------------------------------------------------
# synthgen build, end to end


def test_build_without_a_generator_file_says_how_to_train_one(tmp_path):
    config = BuildConfig(dataset="demo", category="parts_box", strategies=("semantic-remove",), image_size=(64, 64),
                         e2i=str(tmp_path / "missing.pt"), renderer="full")
    with pytest.raises(SynthgenError, match="missing.pt.*synthgen train-e2i"):
        build(config, tmp_path / "out", progress=False)


def test_build_warns_when_the_generator_was_trained_at_another_size(tmp_path, pidinet_weights):
    e2i = tmp_path / "e2i.pt"
    generator = E2ITrainingModule(tiny_config().to_dict(), seed=0, epochs=1).generator
    save_generator(generator, e2i, training={"image_size": [32, 32]})
    config = BuildConfig(dataset="demo", category="parts_box", strategies=("semantic-remove",), image_size=(64, 64),
                         regions="classical", weights_dir=str(pidinet_weights.parent), e2i=str(e2i), renderer="full")
    with pytest.warns(UserWarning, match="trained at 32x32, this build renders at 64x64"):
        plan_build(config, progress=False)
    save_generator(generator, e2i, training={"image_size": [64, 64]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_build(config, progress=False)


def test_build_stores_what_the_logical_trainer_reads(tmp_path, pidinet_weights):
    from synthgen.trainers.logical.data import check_build

    generator = E2ITrainingModule(tiny_config().to_dict(), seed=0, epochs=1).generator
    e2i = tmp_path / "e2i.pt"
    save_generator(generator, e2i, training={"config": tiny_config(binary_edges=False).to_dict()})
    config = BuildConfig(dataset="demo", category="parts_box", strategies=("semantic-remove", "arbitrary-replace"),
                         num_samples=8, samples_per_shard=8, batch_size=4, image_size=(64, 64), regions="classical",
                         weights_dir=str(pidinet_weights.parent), e2i=str(e2i), renderer="full",
                         options={name: {"identity_fraction": 0.0} for name in ("semantic-remove", "arbitrary-replace")})
    out = tmp_path / "build"
    report = build(config, out, progress=False)
    assert report.manifest_written
    manifest = read_manifest(out)
    role = "edge-to-image generator (full image), --renderer full"
    assert {"name": "e2i", "file": str(e2i), "sha256": sha256_file(e2i), "role": role} in manifest["artifacts"]
    shard = out / manifest["shards"][0]["file"]
    check_build(out)  # the LogicAL trainer's own check of its field contract
    with h5py.File(shard, "r") as f:
        kept = f["has_edge"][:].astype(bool)
        assert (f["has_jnd"][:] == f["has_edge"][:]).all()
        assert (f["label"][:][kept] == 1).all()  # accepted LogicAL samples are anomalies
    # Another generator file is another dataset: the config hash changes, the folder refuses it.
    save_generator(E2ITrainingModule(tiny_config().to_dict(), seed=1, epochs=1).generator, e2i)
    with pytest.raises(SynthgenError, match="different build"):
        build(config, out, progress=False)
