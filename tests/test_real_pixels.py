"""The real-pixel renderer (generator/models/real_pixels.py, ``--renderer real``) as the LogicAL
strategies use it: real pixels inside the edit, the inpainting generator on the seam band only.

The generator is the tiny 4-step one of tests/test_inpaint.py: the tests check the contracts (which
pixels come from where, determinism, batch independence), not image quality, which
benchmarks/bench_logical.py measures.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthgen.generator.models.inpaint import dilate, load_inpainter
from synthgen.generator.models.real_pixels import SEAM_BAND, RealPixelModel, outline, texture_fill
from synthgen.generator.render import render_specs
from synthgen.generator.plan import SampleSpec
from synthgen.generator.strategies.logical import augment_edges, augment_photo
from synthgen.generator.training import inpaint as training
from logical_demo import demo_context, demo_images, demo_maps
from test_inpaint import TINY, render_region

#: large enough that the demo's objects have an interior beyond the seam band
SIZE = 128

#: the repaint caps off: these tests check where pixels come from (the caps have their own test)
NO_CAP = {"visible_ratio": 0, "max_repaint_image": 1, "max_repaint_object": 100}
STRATEGIES = ("semantic-remove", "semantic-replace", "semantic-merge", "arbitrary-remove", "arbitrary-replace",
              "arbitrary-merge", "logical")


@pytest.fixture(scope="module")
def demo():
    images, regions = demo_images(6, SIZE)
    return images, regions, demo_maps(images, regions)


@pytest.fixture(scope="module")
def model(demo, tmp_path_factory):
    images, _, maps = demo
    path = training.train_inpainter(images, lambda i: maps[i], tmp_path_factory.mktemp("real"), config=TINY, seed=0,
                                    progress=False)
    return RealPixelModel(load_inpainter(path, image_size=(SIZE, SIZE)))


def band_of(footprint: np.ndarray) -> np.ndarray:
    """Bool (H, W): every pixel the generator may have painted for this footprint."""
    return dilate(outline(torch.from_numpy(footprint)[None].float()), SEAM_BAND)[0].numpy() > 0


def render(ctx, name: str, n: int, seed: int = 0):
    specs = [SampleSpec(i, i % 6, i // 6, name, seed + i) for i in range(n)]
    return specs, render_specs(specs, ctx, max_attempts=8)


def footprint_of(sample, spec, ctx, images, maps) -> tuple[np.ndarray, np.ndarray]:
    """(footprint, the pixels that belong there) of a rendered replace or merge, from its params."""
    region = render_region(sample, maps[spec.source_index])
    p = sample.params
    other = next(k for k, s in enumerate(ctx.sources) if s.id == p["candidate_source"])
    pasted = augment_photo(images[other], p["augmentation"])
    if p["edit"] == "merge":
        region = region & (augment_edges((maps[other]["regions"] > 0).astype(np.uint8) * 255, p["augmentation"]) >= 128)
    return region, pasted


@pytest.mark.parametrize("name", ["semantic-replace", "arbitrary-replace", "semantic-merge", "arbitrary-merge"])
def test_replace_and_merge_show_the_other_images_real_pixels_and_the_photo_outside(demo, model, name):
    images, _, maps = demo
    ctx = demo_context(images, maps, model, options={name: NO_CAP})
    # a merge's footprint is the region where the other image has an object: at 128 px most are thinner
    # than the seam band, so merges need more samples before one has an interior to check
    specs, samples = render(ctx, name, 6 if name.endswith("replace") else 16)
    checked = 0
    for spec, s in zip(specs, samples):
        if s.exhausted:
            continue
        assert s.params["renderer"] == "real"
        footprint, pasted = footprint_of(s, spec, ctx, images, maps)
        band = band_of(footprint)
        photo = images[spec.source_index]
        assert (s.image[~band & ~footprint] == photo[~band & ~footprint]).all()  # the photo, exactly
        interior = footprint & ~band
        assert (s.image[interior] == pasted[interior]).all()  # the source's real pixels, exactly
        assert not s.mask[dilate(torch.from_numpy(render_region(s, maps[spec.source_index]))[None].float(), 1)[0].numpy() == 0].any()
        checked += interior.sum()
    assert checked > 0  # some sample had an interior to check


def test_remove_fills_with_the_photos_own_texture(demo, model):
    images, _, maps = demo
    ctx = demo_context(images, maps, model, options={"semantic-remove": NO_CAP})
    specs, samples = render(ctx, "semantic-remove", 6)
    kept = [(spec, s) for spec, s in zip(specs, samples) if not s.exhausted]
    assert kept
    for spec, s in kept:
        region = render_region(s, maps[spec.source_index])
        photo = images[spec.source_index]
        band = band_of(region)
        assert (s.image[~band & ~region] == photo[~band & ~region]).all()
        dy, dx = s.params["fill"]["offset"]
        ys, xs = np.nonzero(region & ~band)
        assert (s.image[ys, xs] == photo[ys + dy, xs + dx]).all()  # copied from the photo itself ...
        assert not region[ys + dy, xs + dx].any()  # ... from outside the removed object


def test_texture_fill_copies_the_matching_edge_free_surface():
    """A square stamped on stripes: the fill continues the stripes (the ring matches) from a place
    without the square's edges, so the result equals the unstamped image."""
    h, w = 48, 64
    stripes = np.zeros((h, w, 3), np.uint8)
    stripes[:, :, 0] = ((np.arange(w) // 4) % 2 * 200)[None]
    photo = stripes.copy()
    region = np.zeros((h, w), bool)
    region[18:30, 20:32] = True
    photo[region] = (0, 255, 0)
    edges = np.zeros((h, w), np.uint8)
    edges[17:31, 19:33] = 255
    edges[18:30, 20:32] = 0  # the stamp's outline as edges
    filled, offset = texture_fill(photo, region, edges, np.zeros((h, w), np.uint8))
    assert offset is not None and offset[1] % 8 == 0  # a shift by whole stripe periods
    assert (filled == stripes).all()


def test_texture_fill_falls_back_to_telea_when_no_copy_fits():
    photo = np.full((16, 16, 3), 100, np.uint8)
    region = np.zeros((16, 16), bool)
    region[2:14, 2:14] = True
    filled, offset = texture_fill(photo, region, np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8))
    assert offset is None and filled.shape == photo.shape
    # a draw that found no region fills nothing
    filled, offset = texture_fill(photo, region & False, np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8))
    assert offset is None and (filled == photo).all()


def test_identity_samples_are_normals_with_the_same_seam_band(demo, model):
    images, _, maps = demo
    ctx = demo_context(images, maps, model, options={"logical": {**NO_CAP, "identity_fraction": 1.0}})
    specs, samples = render(ctx, "logical", 6)
    for spec, s in zip(specs, samples):
        assert s.params["edit"] == "identity" and not s.mask.any()
        region = render_region(s, maps[spec.source_index])
        band = band_of(region)
        photo = images[spec.source_index]
        assert (s.image[~band] == photo[~band]).all()  # only the band is re-rendered
        assert (s.image[band] != photo[band]).any()


def laplacian_energy(images: torch.Tensor, where: torch.Tensor) -> float:
    """RMS of the 3x3 Laplacian of the channel mean over ``where`` (B, H, W) bool."""
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    laplacian = torch.nn.functional.conv2d(images.mean(1, keepdim=True), kernel, padding=1)[:, 0]
    return float(laplacian[where].pow(2).mean().sqrt())


def test_the_seam_band_keeps_the_real_detail_and_takes_only_a_smooth_correction(demo, model):
    """Re-rendered from its own edges, a grainy photo keeps its fine detail in the band (the tiny
    generator's own output smears it), and what the network changed has no detail of its own."""
    from synthgen.generator.models.inpaint import holes_and_weights, inpaint_tensor
    from synthgen.generator.models.real_pixels import render_seam_band

    images, regions, maps = demo
    grain = torch.from_numpy(np.random.default_rng(0).normal(0, 0.08, (1, 1, SIZE, SIZE)).astype(np.float32))
    photo = (torch.from_numpy(images[:1]).permute(0, 3, 1, 2).float() / 255 + grain).clamp(0, 1)
    edges = torch.from_numpy(maps[0]["edges"][0])[None, None].float() / 255
    footprint = torch.from_numpy(regions[0] == regions[0].max())[None].float()
    band = torch.from_numpy(band_of(footprint[0].numpy().astype(bool)))[None]
    sample, _ = render_seam_band(model, photo, edges, footprint)
    raw, _ = inpaint_tensor(model.inpainter, photo, edges, outline(footprint), dilation=SEAM_BAND)
    real = laplacian_energy(photo, band)
    assert laplacian_energy(raw, band) < 0.6 * real  # the network alone smears the grain ...
    assert laplacian_energy(sample, band) > 0.9 * real  # ... the band keeps it
    change = sample - photo
    assert change.abs().amax() > 0.01  # the network did change the band
    # the change is smooth: a fraction of the fine detail of the network's own change
    assert laplacian_energy(change, band) < 0.25 * laplacian_energy(raw - photo, band)
    # and it adds no colour cast: its blend-weighted mean over the band is 0 (up to clamping at 0 and 1)
    _, weight = holes_and_weights(outline(footprint), SEAM_BAND)
    cast = (weight[:, None] * change).sum((2, 3)) / weight.sum()
    raw_cast = (weight[:, None] * (raw - photo)).sum((2, 3)) / weight.sum()
    assert cast.abs().max() < 0.005 and raw_cast.abs().max() > 0.05  # the tiny generator's own cast is large


def test_rendering_is_deterministic_and_batch_independent(demo, model):
    images, _, maps = demo
    ctx = demo_context(images, maps, model, options={name: NO_CAP for name in STRATEGIES})
    mixed = [SampleSpec(i, i % 6, i // 6, STRATEGIES[i % len(STRATEGIES)], 40 + i) for i in range(8)]
    together = render_specs(mixed, ctx, max_attempts=8)
    again = render_specs(mixed, ctx, max_attempts=8)
    for a, b in zip(together, again):
        assert (a.image == b.image).all() and (a.mask == b.mask).all() and a.params == b.params
    for spec, a in zip(mixed[:4], together[:4]):  # each sample alone equals its row in the mixed batch
        alone = render_specs([spec], ctx, max_attempts=8)[0]
        assert (alone.image == a.image).all() and (alone.mask == a.mask).all()


def test_a_build_with_the_real_renderer_records_it_in_the_manifest_and_every_sample(demo, model, tmp_path, pidinet_weights):
    from synthgen.generator.config import BuildConfig
    from synthgen.generator.pipeline import build
    from synthgen.generator.shards.reader import ShardDataset, read_manifest

    config = BuildConfig(dataset="demo", category="parts_box", strategies=("logical",), image_size=(SIZE, SIZE),
                         num_samples=4, regions="classical", weights_dir=str(pidinet_weights.parent),
                         e2i=str(model.inpainter.path), renderer="real", options={"logical": NO_CAP})
    build(config, tmp_path / "out", progress=False)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["config"]["renderer"] == "real"
    row = next(a for a in manifest["artifacts"] if a["name"] == "e2i")
    assert row["sha256"] == model.sha256 and row["role"].endswith("--renderer real")
    samples = ShardDataset(tmp_path / "out", with_params=True)
    assert all(samples[i]["params"].get("renderer") == "real" or samples[i]["params"].get("fallback") for i in range(len(samples)))


@pytest.mark.parametrize("renderer", ["inpaint", "real"])
def test_repaints_over_the_caps_are_refused_and_counted(demo, model, renderer):
    """What the network repaints (the inpaint hole, or the real renderer's seam band) may cover at
    most max_repaint_image of the image and max_repaint_object of the object's extent; larger
    repaints, identity samples' too, are rejected with their reason and redrawn."""
    from synthgen.generator.strategies.logical import object_extent

    images, _, maps = demo
    chosen = model if renderer == "real" else model.inpainter
    refuse_all = {"visible_ratio": 0, "identity_fraction": 0.5, "max_repaint_image": 0}
    specs, samples = render(demo_context(images, maps, chosen, options={"logical": refuse_all}), "logical", 6)
    for s in samples:
        # (an empty merge repaints nothing: it fails later, as "empty mask" or "edit shows nothing")
        assert s.exhausted and "network repaints too much of the image" in s.rejections
        assert sum(s.rejections.values()) == s.redraws + 1
    caps = {"visible_ratio": 0, "identity_fraction": 0.5, "max_repaint_image": 0.2, "max_repaint_object": 0.3}
    specs, samples = render(demo_context(images, maps, chosen, options={"logical": caps}), "logical", 12)
    kept = [(spec, s) for spec, s in zip(specs, samples) if not s.exhausted]
    assert kept
    for spec, s in kept:
        extent = object_extent(maps[spec.source_index]["regions"])
        assert s.params["object_area"] == extent
        assert s.params["repaint_area"] <= 0.2 and s.params["repaint_area"] <= 0.3 * extent
    assert any(reason.startswith("network repaints") for s in samples for reason in s.rejections)


def test_whole_part_swaps_take_the_same_part_of_another_image_in_place(demo, model):
    from synthgen.generator.strategies.logical import part_swap_region

    images, regions, maps = demo
    options = {"semantic-replace": {**NO_CAP, "part_swap": 1.0}}
    ctx = demo_context(images, maps, model, options=options)
    specs, samples = render(ctx, "semantic-replace", 6)
    kept = [(spec, s) for spec, s in zip(specs, samples) if not s.exhausted]
    assert kept
    for spec, s in kept:
        p = s.params
        assert p["part_swap"] and p["edit"] == "replace"
        other = next(k for k, source in enumerate(ctx.sources) if source.id == p["candidate_source"])
        region = part_swap_region(regions[spec.source_index], regions[other], p)
        band = band_of(region)
        assert (s.image[region & ~band] == images[other][region & ~band]).all()  # in place, real pixels
        assert (s.image[~region & ~band] == images[spec.source_index][~region & ~band]).all()
        assert s.mask.any() and not s.mask[dilate(torch.from_numpy(region)[None].float(), 1)[0].numpy() == 0].any()
    # real pixels only: another renderer, or a strategy without semantic replaces, is a user error
    from synthgen.generator.errors import SynthgenError

    with pytest.raises(SynthgenError, match="part_swap: whole-part swaps paste real pixels; use --renderer real"):
        render(demo_context(images, maps, model.inpainter, options=options), "semantic-replace", 1)
    with pytest.raises(SynthgenError, match="arbitrary-replace draws no semantic replace"):
        render(demo_context(images, maps, model, options={"arbitrary-replace": {"part_swap": 1.0}}), "arbitrary-replace", 1)


def test_executors_ship_the_real_renderer_to_their_device(model):
    from synthgen.generator.executors.shipped import ShippedInputs

    shipped = ShippedInputs(np.zeros((1, 8, 8, 3), np.uint8), None, None, {"e2i": model})
    moved = shipped.models_on(torch.device("cpu"))["e2i"]
    assert isinstance(moved, RealPixelModel) and moved.sha256 == model.sha256


def test_a_whole_part_swap_never_swaps_the_whole_object(demo, model):
    """A "part" over PART_MAX_OBJECT of the object's extent is the object: swapping it for another
    normal one would make a normal image labelled anomalous."""
    from synthgen.generator.strategies.logical import PART_MAX_OBJECT, object_extent, part_swap_region

    images, regions, maps = demo
    def object_only(labels: np.ndarray) -> np.ndarray:  # one region: the whole object, its bounding box
        rows, cols = np.flatnonzero((labels > 0).any(1)), np.flatnonzero((labels > 0).any(0))
        out = np.zeros_like(labels)
        out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = 1
        return out

    whole = [{**m, "regions": object_only(m["regions"])} for m in maps]
    ctx = demo_context(images, whole, model, options={"semantic-replace": {**NO_CAP, "part_swap": 1.0}})
    specs, samples = render(ctx, "semantic-replace", 6)
    assert all(s.exhausted and s.rejections == {"no edge changed": 8} for s in samples)
    ctx = demo_context(images, maps, model, options={"semantic-replace": {**NO_CAP, "part_swap": 1.0}})
    for spec, s in zip(*render(ctx, "semantic-replace", 6)):
        if not s.exhausted:
            other = next(k for k, source in enumerate(ctx.sources) if source.id == s.params["candidate_source"])
            region = part_swap_region(regions[spec.source_index], regions[other], s.params)
            assert region.mean() <= PART_MAX_OBJECT * object_extent(regions[spec.source_index])
