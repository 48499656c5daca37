"""The edge-guided inpainting renderer (generator/models/inpaint.py), its training
(generator/training/inpaint.py), the LogicAL strategies rendering with it, and the automatic cached
generator of a build without --e2i (generator/training/auto.py).

Networks here are tiny (ngf 4, a few steps at 64x64): the tests check the contracts (pixels outside
the hole untouched, identity samples stored as normals, files refused for the wrong renderer or size,
resume after Ctrl-C equal to an uninterrupted run, cache reuse and repair), not image quality, which
benchmarks/bench_logical.py measures.
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import sha256_file
from synthgen.generator.models.e2i import GlobalGenerator, GeneratorConfig, save_generator
from synthgen.generator.models.inpaint import (
    HOLE_DILATION,
    InpaintConfig,
    InpaintGenerator,
    dilate,
    holes_and_weights,
    inpaint_tensor,
    load_inpainter,
    masked_input,
    render_window,
    save_inpainter,
)
from synthgen.generator.models.renderers import check_generator_file
from synthgen.generator.render import render_specs
from synthgen.generator.plan import SampleSpec
from synthgen.generator.strategies.logical import MASK_MARGIN
from synthgen.generator.training import inpaint as training
from synthgen.generator.training.gan import DiscriminatorConfig
from logical_demo import demo_context, demo_images, demo_maps

SIZE = 64
TINY = training.InpaintTrainConfig(
    network=InpaintConfig(ngf=4, n_blocks=1),
    discriminator=DiscriminatorConfig(ndf=4, n_layers=2, num_d=1, in_channels=3),
    steps=4, batch_size=2, crop=32, checkpoint_every=1, paste_fraction=0.5,
)


@pytest.fixture(scope="module")
def demo():
    images, regions = demo_images(6, SIZE)
    return images, regions, demo_maps(images, regions)


@pytest.fixture(scope="module")
def tiny_file(demo, tmp_path_factory):
    images, _, maps = demo
    out = tmp_path_factory.mktemp("inpaint")
    return training.train_inpainter(images, lambda i: maps[i], out, config=TINY, seed=0, progress=False)


def test_composite_keeps_every_pixel_outside_the_hole():
    regions = torch.zeros(2, SIZE, SIZE)
    regions[0, 20:30, 10:40] = 1
    regions[1, 0:5, 60:64] = 1  # touching the border
    hole, weight = holes_and_weights(regions)
    assert torch.equal(hole, dilate(regions, HOLE_DILATION))
    assert (weight[regions > 0] == 1).all()  # the region itself is fully generated
    assert (weight[hole == 0] == 0).all()  # nothing outside the hole is touched
    inner = (weight > 0) & (weight < 1)
    assert inner.any() and (hole[inner] == 1).all()  # a feathered band inside the hole
    model = load_inpainter_from(InpaintGenerator(InpaintConfig(ngf=4, n_blocks=1)))
    images = torch.rand(2, 3, SIZE, SIZE)
    composite, returned_hole = inpaint_tensor(model, images, torch.rand(2, 1, SIZE, SIZE), regions)
    outside = (returned_hole == 0)[:, None].expand_as(images)
    assert torch.equal(composite[outside], images[outside])


@pytest.mark.parametrize("box", [(20, 30, 10, 40), (0, 5, 60, 64), (2, 62, 30, 34), (0, 64, 0, 64)])
def test_render_window_is_the_training_crop_around_the_hole_and_holds_all_of_it(box):
    hole = torch.zeros(SIZE, SIZE)
    y0, y1, x0, x1 = box
    hole[y0:y1, x0:x1] = 1
    top, left, h, w = render_window(hole, 32, 4)
    assert (h, w) == (max(32, -(-(y1 - y0) // 4) * 4), max(32, -(-(x1 - x0) // 4) * 4))  # the crop, or the hole's extent
    assert 0 <= top <= y0 and y1 <= top + h <= SIZE and 0 <= left <= x0 and x1 <= left + w <= SIZE
    assert hole[top:top + h, left:left + w].sum() == hole.sum()


def test_a_crop_trained_generator_renders_a_crop_sized_window_whatever_the_batch():
    generator = InpaintGenerator(InpaintConfig(ngf=4, n_blocks=1)).eval()
    model = load_inpainter_from(generator, training={"config": {"crop": 32}})
    assert model.window == 32 and load_inpainter_from(generator).window == 0
    for record in ({"config": "abc"}, {"config": {"crop": "32"}}, {"config": {"crop": True}}, {"config": {"crop": 30}}, []):
        assert load_inpainter_from(generator, training=record).window == 0  # a malformed record renders whole images
    regions = torch.zeros(3, SIZE, SIZE)
    regions[0, 20:30, 10:20] = 1  # a small hole: a 32 x 32 window
    regions[1, 4:60, 8:12] = 1  # a tall one: a 64 x 32 window
    regions[2, 40:44, 50:62] = 1
    images, edges = torch.rand(3, 3, SIZE, SIZE), torch.rand(3, 1, SIZE, SIZE)
    composite, hole = inpaint_tensor(model, images, edges, regions)
    # sample 0 is the generator's output on its own window, composited
    top, left, h, w = render_window(hole[0], 32, 4)
    window = (slice(None), slice(top, top + h), slice(left, left + w))
    with torch.no_grad():
        alone = generator(masked_input(images[:1], hole[:1])[(0, *window)][None], edges[(0, *window)][None],
                          hole[0][window[1:]][None, None])[0]
    _, weight = holes_and_weights(regions[:1])
    expected = images[0].clone()
    expected[window] = alone * weight[0][window[1:]] + images[0][window] * (1 - weight[0][window[1:]])
    torch.testing.assert_close(composite[0], expected)
    # each sample's pixels are its own: rendered alone, in another batch, they are the same
    for b in range(3):
        single, _ = inpaint_tensor(model, images[b:b + 1], edges[b:b + 1], regions[b:b + 1])
        torch.testing.assert_close(single[0], composite[b])


def load_inpainter_from(generator, training=None):
    from pathlib import Path

    from synthgen.generator.models.inpaint import InpaintModel

    return InpaintModel(generator.eval(), (SIZE, SIZE), HOLE_DILATION, Path("stand-in"), "0" * 64, training or {})


def test_the_renderer_table_covers_every_generator_file_and_training_preset():
    """One entry per renderer: its file tag, its train-e2i presets (the training modules' tables) and
    the name a config refuses when it is not in the table."""
    from synthgen.generator.config import BuildConfig
    from synthgen.generator.models.generator_file import FORMATS
    from synthgen.generator.models.renderers import RENDERERS
    from synthgen.generator.training import e2i as e2i_training

    # every generator file format is one renderer's own generator; real runs inpaint's files
    assert sorted(r.file_format for r in RENDERERS.values() if r.generator == r.name) == sorted(FORMATS)
    assert RENDERERS["real"].generator == "inpaint" and RENDERERS["real"].file_format == RENDERERS["inpaint"].file_format
    assert set(RENDERERS["inpaint"].network_presets) == set(training.NETWORKS)
    assert set(RENDERERS["full"].network_presets) == set(e2i_training.NETWORKS)
    with pytest.raises(SynthgenError, match="^--renderer: must be one of real, inpaint, full, got 'oracle'$"):
        BuildConfig(dataset="demo", category="parts_box", strategies=("semantic-remove",), renderer="oracle")


def test_generator_file_round_trip_and_wrong_renderer_or_size(tmp_path, tiny_file):
    model = load_inpainter(tiny_file, image_size=(SIZE, SIZE))
    record = json.loads(tiny_file.with_suffix(".json").read_text())
    assert record["sha256"] == sha256_file(tiny_file) == model.sha256
    assert set(record["loss_terms"]) == {"l1", "adversarial_lsgan_patchgan", "feature_matching", "perceptual"}
    assert "efficientnet_lite0" in record["loss_terms"]["perceptual"]["networks"]
    assert check_generator_file(tiny_file, "inpaint", (SIZE, SIZE)) == model.sha256
    with pytest.raises(SynthgenError, match=r"trained at 64x64, this build renders at 128x128"):
        check_generator_file(tiny_file, "inpaint", (128, 128))
    with pytest.raises(SynthgenError, match="generator for --renderer inpaint, but this build uses --renderer full"):
        check_generator_file(tiny_file, "full", (SIZE, SIZE))
    full = tmp_path / "full.pt"
    save_generator(GlobalGenerator(GeneratorConfig(ngf=4, n_downsampling=2, n_blocks=1)), full)
    with pytest.raises(SynthgenError, match="generator for --renderer full, but this build uses --renderer inpaint"):
        check_generator_file(full, "inpaint", (SIZE, SIZE))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_file.read_bytes()[:1000])
    with pytest.raises(SynthgenError, match="not a readable generator file"):
        check_generator_file(truncated, "inpaint", (SIZE, SIZE))


def test_paste_items_show_another_image_and_its_edges_inside_the_region_only(demo, monkeypatch):
    """A paste item is LogicAL's replace edit with a known answer: inside the region the target photo
    and the edge map are one other training image's under one augmentation; outside, the real photo's."""
    from synthgen.generator.strategies import logical

    images, _, maps = demo
    flip = {"op": "flip", "axis": "vertical"}
    monkeypatch.setattr(logical, "draw_augmentation", lambda rng: flip)
    config = dataclasses.replace(TINY, paste_fraction=1.0, crop=0, batch_size=8)
    batch = training.draw_batch(0, 0, images, lambda i: maps[i], config)
    as_uint8 = lambda t: (t.numpy() * 255).round().astype(np.uint8)  # noqa: E731
    for k in range(config.batch_size):
        inside = batch["region"][k].bool().numpy()
        target, real = as_uint8(batch["target"][k].permute(1, 2, 0)), as_uint8(batch["real"][k].permute(1, 2, 0))
        edge = as_uint8(batch["edge"][k, 0])
        assert np.array_equal(target[~inside], real[~inside])
        source = next(i for i in range(len(images)) if np.array_equal(images[i], real))
        shown = [j for j in range(len(images))
                 if np.array_equal(target[inside], logical.augment_photo(images[j], flip)[inside])
                 and np.array_equal(edge[inside], logical.augment_edges(maps[j]["edges"][0], flip)[inside])
                 and np.array_equal(edge[~inside], maps[source]["edges"][0][~inside])]
        assert shown and source not in shown, (k, source, shown)
    # no paste items: the target is the real photo
    identity = training.draw_batch(0, 0, images, lambda i: maps[i], dataclasses.replace(config, paste_fraction=0.0))
    assert torch.equal(identity["target"], identity["real"])


def test_resume_after_ctrl_c_equals_an_uninterrupted_run(demo, tmp_path, monkeypatch, tiny_file):
    images, _, maps = demo
    real_step = training.train_step
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.train_inpainter(images, lambda i: maps[i], tmp_path, config=TINY, seed=0, progress=False)
    assert torch.load(tmp_path / training.CHECKPOINT_FILE, weights_only=True)["step"] == 2
    monkeypatch.setattr(training, "train_step", real_step)
    resumed = training.train_inpainter(images, lambda i: maps[i], tmp_path, config=TINY, seed=0, progress=False)
    assert sha256_file(resumed) == sha256_file(tiny_file)
    assert not (tmp_path / training.CHECKPOINT_FILE).exists()


def test_strategies_render_inside_the_hole_and_store_identity_samples_as_normals(demo, tiny_file):
    images, _, maps = demo
    model = load_inpainter(tiny_file, image_size=(SIZE, SIZE))
    # visible_ratio 0: a generator trained 4 steps re-renders with more error than any edit shows, so
    # the visibility test (tested below) would reject every edit
    ctx = demo_context(images, maps, model, options={"logical": {"identity_fraction": 0.5, "visible_ratio": 0}})
    specs = [SampleSpec(i, i % len(images), i // len(images), "logical", 100 + i) for i in range(12)]
    samples = render_specs(specs, ctx, max_attempts=8)
    identity = [s for s in samples if s.params["edit"] == "identity"]
    edited = [s for s in samples if s.params["edit"] != "identity" and not s.exhausted]
    assert identity and edited
    for spec, s in zip(specs, samples):
        if s.exhausted:
            continue
        region = torch.from_numpy(render_region(s, ctx.maps(spec.source_index)))[None].float()
        hole = dilate(region, HOLE_DILATION)[0].numpy() > 0
        source = images[spec.source_index]
        assert (s.image[~hole] == source[~hole]).all()  # the real photo outside the hole, exactly
        assert not (s.mask[~hole]).any()  # ground truth only inside the re-rendered hole
        assert not s.mask[dilate(region, MASK_MARGIN)[0].numpy() == 0].any()  # ... there, on the region's pixels
        if s.params["edit"] == "identity":
            assert not s.mask.any() and "edge" in s.extras  # a normal (label 0) with its maps
        else:
            assert s.mask.any()


def test_an_edit_is_kept_only_when_it_shows_more_than_re_rendering_alone(demo, tiny_file):
    """An edit's change (SSIM of the edited and an unedited re-render) must cover at least
    visible_ratio times as much of its region as re-rendering alone changes the photo."""
    from synthgen.generator.strategies import get_strategy

    images, _, maps = demo
    model = load_inpainter(tiny_file, image_size=(SIZE, SIZE))
    strategy = get_strategy("semantic-remove")
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    accepted = {}
    for ratio in (0, 1, 100):
        ctx = demo_context(images, maps, model, options={"semantic-remove": {"visible_ratio": ratio}})
        recipes = [strategy.draw(np.random.default_rng(i), ctx, i) for i in range(len(images))]
        out = strategy.render(batch, recipes, ctx)
        accepted[ratio] = out.accepted.tolist()
        for ok, note, mask in zip(accepted[ratio], out.notes, out.masks):
            if ok:
                assert note["edit_change"] > 0 and note["edit_change"] >= ratio * note["rerender_change"]
                assert mask.any()
    # the rule decides: fewer edits pass as the ratio grows, and the tiny generator's noise rejects some
    assert sum(accepted[0]) >= sum(accepted[1]) >= sum(accepted[100])
    assert sum(accepted[0]) > sum(accepted[100])


def test_rejected_edits_are_redrawn_as_the_same_kind_so_the_mix_holds(demo, tiny_file):
    """Each sample's kind (identity or edit, region selection, edit) is its first draw's: a redraw
    after a rejection draws only a new region and candidate."""
    from synthgen.generator.seeding import rng_for
    from synthgen.generator.strategies import get_strategy

    images, _, maps = demo
    ctx = demo_context(images, maps, load_inpainter(tiny_file),
                       options={"logical": {"identity_fraction": 0.5, "visible_ratio": 100}})
    specs = [SampleSpec(i, i % len(images), i // len(images), "logical", 300 + i) for i in range(16)]
    samples = render_specs(specs, ctx, max_attempts=3)
    assert sum(s.redraws for s in samples) > 0  # the ratio of 100 rejects edits
    # every rejected attempt is counted with the reason render gave: the redraws, and a fallback's last try
    reasons = {"no edge changed", "edit changes over half of the edges", "empty mask", "mask over half of the image",
               "edit shows nothing", "edit shows less than re-rendering alone",
               "network repaints too much of the image", "network repaints too much of the object"}
    for sample in samples:
        assert sum(sample.rejections.values()) == sample.redraws + sample.exhausted
        assert set(sample.rejections) <= reasons
    assert any("re-rendering alone" in reason or "nothing" in reason for s in samples for reason in s.rejections)
    kind = lambda p: (p["edit"], p["region_mode"])  # noqa: E731
    for spec, sample in zip(specs, samples):
        first = get_strategy("logical").draw(rng_for(spec.seed), ctx, spec.source_index)
        assert kind(sample.params) == kind(first.params)
        if sample.redraws and not sample.exhausted:
            assert sample.params["region"] != first.params["region"]  # the region was drawn again
        assert sample.params["edit"] == "identity" or sample.exhausted or sample.mask.any()


def render_region(sample, maps) -> np.ndarray:
    from synthgen.generator.strategies.logical import rasterize_shapes, semantic_region

    p = sample.params
    if p["region_mode"] == "semantic":
        return semantic_region(maps["regions"], p["region"])
    return rasterize_shapes(p["region"], maps["regions"].shape)


@pytest.mark.parametrize("option, value", [("identity_fraction", 2), ("visible_ratio", -1), ("visible_ratio", "high")])
def test_identity_fraction_and_visible_ratio_options_are_validated(demo, tiny_file, option, value):
    images, _, maps = demo
    ctx = demo_context(images, maps, load_inpainter(tiny_file), options={"semantic-remove": {option: value}})
    with pytest.raises(SynthgenError, match=f"option semantic-remove.{option}: must be a number"):
        render_specs([SampleSpec(0, 0, 0, "semantic-remove", 1)], ctx, max_attempts=2)


def test_build_without_e2i_trains_caches_reuses_and_repairs_its_generator(tmp_path, pidinet_weights, monkeypatch, capsys):
    from synthgen.generator.config import BuildConfig
    from synthgen.generator.pipeline import build
    from synthgen.generator.shards.reader import read_manifest
    from synthgen.generator.training import auto

    monkeypatch.setitem(training.NETWORKS, auto.DEMO_NETWORK, dataclasses.replace(TINY, crop=0))
    config = BuildConfig(dataset="demo", category="parts_box", strategies=("semantic-remove",), image_size=(SIZE, SIZE),
                         num_samples=4, regions="classical", weights_dir=str(pidinet_weights.parent))
    with_file = auto.with_generator(config, progress=False)
    assert "training an inpainting generator" in capsys.readouterr().err
    path = with_file.e2i
    build(with_file, tmp_path / "out", progress=False)
    manifest = read_manifest(tmp_path / "out")
    totals = manifest["totals"]  # rejections by reason add up to the redraws and fallbacks
    for strategy in totals["strategies"]:
        rejected = sum(totals["rejections"].get(strategy, {}).values())
        assert rejected == totals["redraws"].get(strategy, 0) + totals["fallback_normal"].get(strategy, 0)
    row = next(a for a in manifest["artifacts"] if a["name"] == "e2i")
    assert row["file"] == path and row["sha256"] == sha256_file(path) and "--renderer real" in row["role"]  # the default renderer
    assert manifest["config"]["generator_seed"] == 0  # the generator's own training seed, recorded

    def no_training(*args, **kwargs):
        raise AssertionError("the cached generator should have been reused")

    monkeypatch.setattr(auto, "train_inpainter", no_training)
    assert auto.with_generator(config, progress=False).e2i == path  # reused
    # other samples (--seed) of the same category reuse its generator; another generator seed trains anew
    assert auto.with_generator(dataclasses.replace(config, seed=7), progress=False).e2i == path
    with pytest.raises(AssertionError, match="should have been reused"):
        auto.with_generator(dataclasses.replace(config, generator_seed=1), progress=False)
    monkeypatch.undo()
    monkeypatch.setitem(training.NETWORKS, auto.DEMO_NETWORK, dataclasses.replace(TINY, crop=0))
    good = open(path, "rb").read()
    open(path, "wb").write(good[: len(good) // 2])  # a truncated entry
    with pytest.warns(UserWarning, match="damaged"):
        assert auto.with_generator(config, progress=False).e2i == path
    assert open(path, "rb").read() == good  # retrained to the same bytes


def test_train_e2i_command_trains_an_inpainter_and_refuses_presets_of_the_other_renderer(tmp_path, pidinet_weights, capsys):
    from synthgen.generator.cli import main

    out = tmp_path / "run"
    main(["train-e2i", "--image-size", "64", "--steps", "2", "--batch-size", "2", "--network", "demo", "--regions", "classical",
          "--weights-dir", str(pidinet_weights.parent), "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert f"--renderer real --e2i {out / training.GENERATOR_FILE}" in printed  # the default renderer runs it
    record = json.loads((out / training.GENERATOR_FILE).with_suffix(".json").read_text())
    assert record["num_images"] == 24 and record["config"]["steps"] == 2 and record["image_size"] == [64, 64]
    with pytest.raises(SystemExit) as exit_info:
        main(["train-e2i", "--network", "tiny", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "--network tiny: not a preset of --renderer real" in capsys.readouterr().err
    # a build whose every edit is refused says so: every sample fell back (the real renderer's edits
    # show whatever the generator, so the refusal here is the repaint cap's)
    main(["build", "--dataset", "demo", "--image-size", "64", "--strategy", "semantic-remove", "--num-samples", "3",
          "--set", "semantic-remove.identity_fraction=0", "--set", "semantic-remove.max_repaint_image=0",
          "--e2i", str(out / training.GENERATOR_FILE), "--regions", "classical",
          "--weights-dir", str(pidinet_weights.parent), "--out", str(tmp_path / "build"), "--quiet"])
    warning = capsys.readouterr().err
    assert "synthgen: warning: semantic-remove: 3 of 3 samples were rejected 8 times and stored as normals" in warning
    assert re.search(r"most often: [a-z -]+ \(\d+ of 24 rejections\)", warning)  # and why: 3 samples x 8 attempts


@pytest.mark.gpu
def test_training_and_rendering_run_on_cuda(demo, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    images, _, maps = demo
    path = training.train_inpainter(images, lambda i: maps[i], tmp_path, config=TINY, seed=0, device="cuda", progress=False)
    model = load_inpainter(path, "cuda", image_size=(SIZE, SIZE))
    real = torch.from_numpy(images[:2]).permute(0, 3, 1, 2).float() / 255
    regions = torch.zeros(2, SIZE, SIZE)
    regions[:, 20:40, 20:40] = 1
    composite, hole = inpaint_tensor(model, real, torch.zeros(2, 1, SIZE, SIZE), regions)
    outside = (hole.cpu() == 0)[:, None].expand_as(real)
    assert composite.is_cuda and torch.equal(composite.cpu()[outside], real[outside])


def test_files_from_before_the_upsampling_option_load_with_transposed_convolutions(tmp_path):
    old = InpaintGenerator(InpaintConfig(ngf=4, n_blocks=1, upsampling="transpose"))
    path = tmp_path / "old.pt"
    save_inpainter(old, path, image_size=(SIZE, SIZE), training={})
    payload = torch.load(path, weights_only=True)
    del payload["config"]["upsampling"]  # as written before the option existed
    torch.save(payload, path)
    model = load_inpainter(path, image_size=(SIZE, SIZE))
    assert model.generator.config.upsampling == "transpose"
    x = torch.rand(1, 3, SIZE, SIZE), torch.rand(1, 1, SIZE, SIZE), torch.ones(1, 1, SIZE, SIZE)
    assert torch.equal(model.generator(*x), old.eval()(*x))
    with pytest.raises(SynthgenError, match="upsampling"):
        InpaintConfig(upsampling="bilinear")
