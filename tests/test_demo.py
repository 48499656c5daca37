"""The procedural demo dataset: determinism, atomic writing, LOCO readability, and masks that cover
exactly what each anomaly changes."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthgen.generator.datasets import demo, get_reader
from synthgen.generator.datasets.mvtec_loco import read_mvtec_loco
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import read_rgb, sha256_file

COUNTS = demo.DemoCounts()  # the defaults: 24 train, 8 validation, 8 test good, 8 logical, 8 structural


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, float]:
    """The default demo, rendered once for this module, and the CPU seconds it took."""
    root = tmp_path_factory.mktemp("demo")
    start = time.process_time()
    demo.render_demo(root)
    return root, time.process_time() - start


def test_render_is_fast(rendered):
    assert rendered[1] < 2.0, f"rendering the demo took {rendered[1]:.2f} s of CPU"


def test_same_seed_gives_identical_files(rendered, tmp_path):
    again = demo.render_demo(tmp_path)
    first = _hashes(rendered[0] / demo.CATEGORY)
    two_regions = sum(demo.LOGICAL[i % 5] in ("wrong_colour", "misplaced_item") for i in range(COUNTS.logical))
    # images, config, masks, and the record of their sha256 (generator.datasets.demo.FILES_RECORD)
    assert len(first) == 56 + 1 + COUNTS.logical + two_regions + COUNTS.structural + 1
    assert json.loads((rendered[0] / demo.CATEGORY / demo.FILES_RECORD).read_text()) == {
        name: sha for name, sha in first.items() if name != demo.FILES_RECORD}
    assert _hashes(again) == first


def test_other_seed_gives_other_images(rendered, tmp_path):
    other = demo.render_demo(tmp_path, seed=1, counts=demo.DemoCounts(2, 0, 0, 0, 0))
    ours = rendered[0] / demo.CATEGORY
    assert sha256_file(other / "train/good/000.png") != sha256_file(ours / "train/good/000.png")


def test_loco_reader_reads_the_demo(rendered):
    index = read_mvtec_loco(rendered[0], demo.CATEGORY)
    counts = Counter((s.split, s.defect_type) for s in index.items)
    assert counts == {
        ("train", "good"): COUNTS.train,
        ("validation", "good"): COUNTS.validation,
        ("test", "good"): COUNTS.test_good,
        ("test", "logical_anomalies"): COUNTS.logical,
        ("test", "structural_anomalies"): COUNTS.structural,
    }
    assert index.defects == demo.DEFECTS
    value = {d.name: d.pixel_value for d in demo.DEFECTS}
    for item in index.items:
        if item.is_normal:
            assert item.masks == ()
            continue
        i = int(item.path.stem)
        kinds = demo.LOGICAL if item.defect_type == "logical_anomalies" else demo.STRUCTURAL
        kind = kinds[i % len(kinds)]
        expected = {
            "wrong_colour": [value[kind]] * 2,  # one region per recoloured item
            "misplaced_item": [value["missing_round_item"], value[kind]],  # where it is missing, where it lies
        }.get(kind, [value[kind]])
        assert [m.pixel_value for m in item.masks] == expected, item.id
    read_rgb(index.items[0].path)  # plain 8-bit RGB, accepted by the colour policy
    assert Image.open(index.items[0].path).size == (demo.SIZE, demo.SIZE)


def test_defects_config_is_loco_style(rendered):
    rows = json.loads((rendered[0] / demo.CATEGORY / "defects_config.json").read_text())
    assert [r["pixel_value"] for r in rows] == list(range(255, 255 - len(rows), -1))
    missing = rows[0]
    assert missing["defect_name"] == "missing_round_item" and missing["relative_saturation"] is False
    assert missing["saturation_threshold"] == round(math.pi * 14**2)  # one round item's area in pixels
    assert all(r["saturation_threshold"] == 1.0 for r in rows if r["relative_saturation"])


def test_normal_images_vary_and_follow_the_rules():
    scenes = [demo.demo_sample(0, "train/good", i)[0] for i in range(COUNTS.train)]
    assert len({s.tag for s in scenes}) > 1
    for scene in scenes:
        assert len(scene.discs) == 2 and len(scene.bars) == 1
        assert all(d.colour == scene.tag for d in scene.discs)
    images = [demo.render(s) for s in scenes[:4]]
    for a, b in zip(images, images[1:]):
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0


def test_logical_anomalies_break_the_rules():
    for i, kind in enumerate(demo.LOGICAL):
        normal, scene, _ = demo.demo_sample(0, "test/logical_anomalies", i)
        left = [d for d in scene.discs if d.x < 127 + scene.shift[0]]  # 127: the divider between compartments
        if kind == "missing_round_item":
            assert len(scene.discs) == 1
        elif kind == "extra_round_item":
            assert len(left) == 3
        elif kind == "wrong_colour":
            assert all(d.colour != scene.tag for d in scene.discs)
        elif kind == "misplaced_item":
            assert len(left) == 1 and len(scene.discs) == 2
        elif kind == "missing_bar":
            assert scene.bars == () and normal.bars != ()


@pytest.mark.parametrize("folder, n", [("test/logical_anomalies", 10), ("test/structural_anomalies", 9)])
def test_regions_cover_exactly_what_the_anomaly_changes(folder, n):
    """Render each anomaly and the normal scene it came from (same noise): every visibly changed
    pixel must lie inside a region, and every region must contain a visible change."""
    for i in range(n):
        normal, scene, regions = demo.demo_sample(0, folder, i)
        diff = np.abs(demo.render(scene).astype(int) - demo.render(normal).astype(int)).max(axis=2)
        union = np.any([mask for _, mask in regions], axis=0)
        assert diff[~union].max() <= 15, (folder, i)  # only the faint tail of the lens blur
        for name, mask in regions:
            assert np.count_nonzero((diff > 30) & mask) >= 40, (folder, i, name)


def test_written_masks_are_the_regions(rendered):
    cat = rendered[0] / demo.CATEGORY
    _, _, regions = demo.demo_sample(0, "test/logical_anomalies", 3)  # misplaced_item: two regions
    files = sorted((cat / "ground_truth/logical_anomalies/003").glob("*.png"))
    assert len(files) == len(regions) == 2
    for path, (name, mask) in zip(files, regions):
        stored = np.asarray(Image.open(path))
        value = next(d.pixel_value for d in demo.DEFECTS if d.name == name)
        assert set(np.unique(stored)) == {0, value}
        assert np.array_equal(stored == value, mask)


def test_failed_render_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing(scene):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return np.zeros((demo.SIZE, demo.SIZE, 3), np.uint8)

    monkeypatch.setattr(demo, "render", failing)
    with pytest.raises(RuntimeError):
        demo.render_demo(tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither parts_box/ nor the hidden temporary folder


def test_render_refuses_to_overwrite(rendered):
    with pytest.raises(SynthgenError, match="already exists"):
        demo.render_demo(rendered[0])


def test_bad_counts_are_user_errors(tmp_path):
    with pytest.raises(SynthgenError, match="train"):
        demo.render_demo(tmp_path, counts=demo.DemoCounts(train=0))
    with pytest.raises(SynthgenError, match="logical"):
        demo.render_demo(tmp_path, counts=demo.DemoCounts(logical=-1))


def test_demo_reader_renders_into_the_cache_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHGEN_CACHE", str(tmp_path))
    index = get_reader("demo")(None, "parts_box")
    assert index.dataset == "demo" and index.root == tmp_path / "datasets" / demo.CACHE_NAME
    assert len(index.items) == 56

    def must_not_render(*args, **kwargs):
        raise AssertionError("rendered again although the demo is cached")

    monkeypatch.setattr(demo, "render_demo", must_not_render)
    assert len(get_reader("demo")(None, "parts_box").items) == 56
    with pytest.raises(SynthgenError, match="available categories: parts_box"):
        get_reader("demo")(None, "juice_bottle")


def test_demo_reader_uses_a_given_root(rendered):
    index = get_reader("demo")(rendered[0], "parts_box")
    assert index.root == rendered[0] and len(index.items) == 56
