"""Candidate regions: LogicAL's refinement on synthetic scenes with known objects, the SAM path with
a random-weight model, the weight-free fallback, the proposer and its cache."""

from __future__ import annotations

import time
import warnings

import cv2
import numpy as np
import pytest
import torch

from synthgen.generator.cache import MapCache
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import read_rgb, resize_rgb
from synthgen.generator.regions import (
    ClassicalParams,
    RefineParams,
    RegionParams,
    RegionProposer,
    SamParams,
    SamSegmenter,
    build_random_sam,
    cached_regions,
    classical_masks,
    load_sam,
    refine_masks,
    region_cache_key,
)

H, W = 256, 256


def disc(cy: float, cx: float, r: float, size=(H, W)) -> np.ndarray:
    yy, xx = np.ogrid[: size[0], : size[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    return ~dilate(~mask, px)


def assert_valid_label_map(labels: np.ndarray, shape) -> int:
    """uint16, right shape, labels exactly 0..K with 1..K ordered by decreasing area; returns K."""
    assert labels.dtype == np.uint16 and labels.shape == tuple(shape)
    k = int(labels.max())
    present = np.unique(labels)
    assert set(present[present > 0]) == set(range(1, k + 1)), "labels are not contiguous"
    areas = np.bincount(labels.ravel(), minlength=k + 1)[1:]
    assert np.all(areas[:-1] >= areas[1:]), "labels not ordered by decreasing area"
    return k


def matches(region: np.ndarray, truth: np.ndarray, jitter: int = 2) -> bool:
    """``region`` is ``truth`` up to ``jitter`` px of boundary: inside its dilation, covering its erosion."""
    return not (region & ~dilate(truth, jitter)).any() and not (erode(truth, jitter) & ~region).any()


def region_at(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The region holding most of ``mask``'s pixels."""
    values = labels[mask]
    return labels == np.bincount(values).argmax()


# ----------------------------------------------------------------------------------------------
# A demo-like scene: three discs (one with a printed part) and a cluster of beads on a table, as
# SAM over-segments it: whole image, table, surround, jittered duplicates, crossing halves, tiny
# fragments inside objects and on the table.


def demo_scene_masks():
    objects = {
        "disc_a": disc(70, 70, 30),
        "disc_b": disc(80, 180, 32),
        "disc_c": disc(180, 120, 35),
    }
    part_b = disc(80, 180, 12)  # a label printed on disc_b: a nested part
    beads = [disc(200, 200 + 9 * i, 4) for i in range(5)]  # 5 beads 1 px apart (~50 px each)
    table = np.zeros((H, W), bool)
    table[20:240, 15:245] = True
    whole = np.ones((H, W), bool)
    surround = whole & ~table

    a, b, c = objects.values()
    left_a, right_a = a.copy(), a.copy()
    left_a[:, 76:] = False  # two crossing halves of disc_a, overlapping over x in [64, 76)
    right_a[:, :64] = False
    inside_fragments_c = [disc(170, 110, 3), disc(190, 130, 2)]  # ~28 and ~13 px: below min area
    stray_fragments = [disc(40, 230, 2), disc(230, 30, 3)]  # isolated specks on the table

    masks = [whole, table & ~(a | b | c), surround, dilate(a, 1), erode(a, 1), left_a, right_a,
             b, dilate(b, 2), part_b, c, erode(c, 2), *inside_fragments_c, *stray_fragments, *beads]
    truth = dict(objects, part_b=part_b, beads=np.logical_or.reduce(beads))
    return masks, truth, inside_fragments_c, stray_fragments


def test_refine_recovers_objects_of_demo_scene():
    masks, truth, inside_c, strays = demo_scene_masks()
    labels = refine_masks(masks, (H, W))

    k = assert_valid_label_map(labels, (H, W))
    assert k == 5  # disc_a, disc_b without its part, part_b, disc_c, the bead group
    expected = {
        "disc_a": truth["disc_a"],
        "disc_b": truth["disc_b"] & ~truth["part_b"],
        "part_b": truth["part_b"],
        "disc_c": truth["disc_c"],
        "beads": truth["beads"],
    }
    found = {name: region_at(labels, m) for name, m in expected.items()}
    assert len({labels[m].max() for m in found.values()}) == 5, "two objects share a region"
    for name, m in expected.items():
        assert matches(found[name], m), name
    # background (whole image, table, surround) removed: nothing outside the objects is a region
    anything = np.logical_or.reduce(list(truth.values()))
    assert not labels[~dilate(anything, 2)].any()
    # fragments inside disc_c joined it (no holes); stray specks dropped
    for f in inside_c:
        assert np.all(found["disc_c"][f])
    for f in strays:
        assert not labels[f].any()


def test_refine_smaller_mask_wins_overlap_and_disjoint_masks_untouched():
    big, small = disc(128, 128, 60), disc(128, 150, 20)
    labels = refine_masks([big, small], (H, W))
    assert assert_valid_label_map(labels, (H, W)) == 2
    assert np.all(labels[small] == 2) and np.all(labels[big & ~small] == 1)


def random_scene(seed: int):
    """Random discs over-segmented as SAM does: the whole image, the background around the objects,
    per object a dilated and an eroded copy (up to 2 px of boundary jitter), sometimes two crossing
    halves that share a third of the object, tiny fragments inside; specks on the background."""
    rng = np.random.default_rng(seed)
    objects = []
    n_objects = rng.integers(2, 7)
    while len(objects) < n_objects:
        r = rng.uniform(8, 45)
        cy, cx = rng.uniform(r + 3, H - r - 3, size=2)
        candidate = disc(cy, cx, r)
        if not any((dilate(candidate, 6) & o).any() for o in objects):
            objects.append(candidate)
    union = np.logical_or.reduce(objects)
    masks = [np.ones((H, W), bool), ~union]
    for o in objects:
        masks.append(dilate(o, int(rng.integers(0, 3))))
        masks.append(erode(o, int(rng.integers(1, 3))))
        ys, xs = np.nonzero(o)
        if rng.random() < 0.5:
            middle, overlap = int(np.median(xs)), int(np.sqrt(o.sum() / np.pi) * rng.uniform(0.3, 0.6))
            left, right = o.copy(), o.copy()
            left[:, middle + overlap:] = False
            right[:, : middle - overlap] = False
            masks += [left, right]
        for _ in range(rng.integers(0, 4)):
            i = rng.integers(len(ys))
            masks.append(disc(ys[i], xs[i], rng.uniform(1, 3)) & o)
    for _ in range(5):
        masks.append(disc(*rng.uniform(5, H - 5, size=2), rng.uniform(1, 3)) & ~dilate(union, 8))
    order = rng.permutation(len(masks))  # SAM's masks come unsorted
    return [masks[i] for i in order], objects


@pytest.mark.parametrize("seed", range(10))
def test_refine_on_random_synthetic_scenes(seed):
    """Validation of the default thresholds (100 seeds pass; 10 run here)."""
    masks, objects = random_scene(seed)
    labels = refine_masks(masks, (H, W))

    assert assert_valid_label_map(labels, (H, W)) == len(objects)
    for o in objects:
        assert matches(region_at(labels, o), o)
    assert not labels[~dilate(np.logical_or.reduce(objects), 2)].any()


def test_refine_foreground_restriction_drops_regions_outside():
    a, b = disc(70, 70, 30), disc(180, 180, 30)
    foreground = dilate(a, 10)  # e.g. a thresholded JND map that keeps only the first object
    labels = refine_masks([a, b], (H, W), foreground=foreground)
    assert assert_valid_label_map(labels, (H, W)) == 1
    assert np.all(labels[a] == 1) and not labels[b].any()


def test_refine_edge_cases():
    assert not refine_masks([], (32, 48)).any()
    assert refine_masks([], (32, 48)).shape == (32, 48)
    border_strip = np.zeros((H, W), bool)
    border_strip[:, :100] = True  # touches three sides: a surface, not an object
    assert not refine_masks([border_strip, np.zeros((H, W), bool)], (H, W)).any()
    cut_object = disc(128, 0, 40)  # an object cut by one side of the frame stays a candidate
    assert refine_masks([cut_object], (H, W)).max() == 1


def test_refine_params_are_validated():
    with pytest.raises(SynthgenError, match="min_area_fraction"):
        RefineParams(min_area_fraction=0.0)
    with pytest.raises(SynthgenError, match="merge_overlap"):
        RefineParams(merge_overlap=0.95)


# ----------------------------------------------------------------------------------------------
# SAM through segment-anything's real automatic mask generator, with a tiny random-weight model.

# Random weights predict texture-like masks with low confidence: the quality filters are opened
# (thresholds 0) so that masks reach the refinement; box NMS stays at its default.
RANDOM_SAM = SamParams(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
# and such masks hug the frame, which the background rule would rightly drop
KEEP_ALL_REFINE = RefineParams(max_border_fraction=1.0, max_area_fraction=1.0)


def test_random_sam_end_to_end_gives_exclusive_region_map():
    rng = np.random.default_rng(0)
    image = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    segmenter = SamSegmenter.random(RANDOM_SAM, seed=1, img_size=128)
    proposer = RegionProposer("sam", params=RegionParams(refine=KEEP_ALL_REFINE), segmenter=segmenter)
    labels = proposer.propose(image)

    k = assert_valid_label_map(labels, image.shape[:2])
    assert k >= 1
    masks = SamSegmenter.random(RANDOM_SAM, seed=1, img_size=128).masks(image)  # an independent run
    assert masks and all(m.shape == image.shape[:2] and m.dtype == bool for m in masks)
    assert np.array_equal(labels, refine_masks(masks, image.shape[:2], KEEP_ALL_REFINE))  # deterministic
    assert not labels[~np.logical_or.reduce(masks)].any()  # regions come only from SAM's masks
    description = proposer.describe()
    assert description["method"] == "sam" and description["model"] == "sam_random_tiny"
    assert description["params"]["points_per_side"] == 4


def test_random_sam_seed_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_random_sam(seed=7, img_size=64)
    assert torch.equal(torch.rand(3), expected)
    a = build_random_sam(seed=7, img_size=64).state_dict()
    b = build_random_sam(seed=7, img_size=64).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sam_bad_checkpoints_are_user_errors(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(SynthgenError, match="garbage.pth"):
        load_sam("vit_b", garbage, torch.device("cpu"))
    proposer = RegionProposer("sam", checkpoint=garbage, device="cpu")  # loading is lazy ...
    with pytest.raises(SynthgenError, match="garbage.pth"):  # ... and fails on first use
        proposer.propose(np.zeros((32, 32, 3), np.uint8))

    wrong = tmp_path / "tiny.pth"  # a real state dict, but of another architecture
    torch.save(build_random_sam(img_size=64).state_dict(), wrong)
    with pytest.raises(SynthgenError, match=r"tiny.pth: not a SAM vit_b checkpoint .*mis-shaped"):
        load_sam("vit_b", wrong, torch.device("cpu"))

    # A file named like an official checkpoint must be it: refused by sha256 before any loading.
    impostor = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(build_random_sam(img_size=64).state_dict(), impostor)
    with pytest.raises(SynthgenError, match=r"sam_vit_b_01ec64.pth: sha256 \w+ does not match sam_vit_b"):
        RegionProposer("sam", checkpoint=impostor)

    with pytest.raises(SynthgenError, match="missing.pth: SAM checkpoint not found"):
        RegionProposer("sam", checkpoint=tmp_path / "missing.pth")
    with pytest.raises(SynthgenError, match="--sam-model"):
        RegionProposer("sam", checkpoint=wrong, model_type="vit_x")


@pytest.mark.slow
def test_load_sam_accepts_a_vit_b_state_dict(tmp_path):
    from segment_anything import sam_model_registry

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = sam_model_registry["vit_b"]().state_dict()
    path = tmp_path / "sam_vit_b.pth"
    torch.save(reference, path)
    loaded = load_sam("vit_b", path, torch.device("cpu")).state_dict()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_sam_without_checkpoint(tmp_path):
    with pytest.raises(SynthgenError, match="sam_vit_b"):
        RegionProposer("sam")

    def no_weights(name):
        raise SynthgenError(f"{name}: not found in the weights directory")

    with pytest.warns(RuntimeWarning, match="weight-free classical"):
        proposer = RegionProposer("auto", resolve=no_weights)
    assert proposer.describe()["method"] == "classical"
    assert proposer.describe()["model"] == "felzenszwalb"

    found = tmp_path / "sam_vit_l.pth"
    found.write_bytes(b"x")
    asked = []

    def resolver(name):
        asked.append(name)
        return found

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proposer = RegionProposer("auto", model_type="vit_l", resolve=resolver)
    assert asked == ["sam_vit_l"]
    description = proposer.describe()
    assert description["method"] == "sam" and description["model_type"] == "vit_l"
    assert description["checkpoint_sha256"] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_proposer_options_are_validated():
    with pytest.raises(SynthgenError, match="--regions"):
        RegionProposer("segformer")
    with pytest.raises(SynthgenError, match="--device"):
        RegionProposer("auto", checkpoint=__file__, device="tpu:9")
    with pytest.raises(SynthgenError, match="points_per_side"):
        SamParams(points_per_side=0)
    with pytest.raises(SynthgenError, match="edge_threshold"):
        ClassicalParams(edge_threshold=0)


# ----------------------------------------------------------------------------------------------
# The weight-free fallback.


def demo_scene_image(seed=0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    objects = {"a": disc(70, 70, 30), "b": disc(80, 180, 32), "c": disc(180, 120, 35)}
    image = np.empty((H, W, 3), np.float64)
    image[:] = (40, 60, 50)
    image[20:240, 15:245] = (150, 140, 120)  # a table
    for m, colour in zip(objects.values(), [(200, 40, 40), (40, 160, 40), (230, 200, 40)]):
        image[m] = colour
    image += rng.normal(0, 4, image.shape)  # sensor noise
    return np.clip(image, 0, 255).astype(np.uint8), objects


def test_classical_recovers_objects_of_synthetic_scene():
    image, objects = demo_scene_image()
    labels = RegionProposer("classical").propose(image)
    assert assert_valid_label_map(labels, (H, W)) == 3
    for m in objects.values():
        assert matches(region_at(labels, m), m, jitter=2)
    assert not labels[~dilate(np.logical_or.reduce(list(objects.values())), 2)].any()  # table, surround


def test_classical_strong_edges_separate_regions():
    image = np.full((H, W, 3), 30, np.uint8)
    image[64:192, 64:192] = (200, 120, 60)  # one uniform object ...
    edges = np.zeros((H, W), np.uint8)
    rr = np.arange(64, 192)
    edges[rr, rr] = 255  # ... crossed by a one-pixel diagonal strong edge
    edges[rr, np.clip(rr + 20, 0, W - 1)] = 90  # a weak edge, below the threshold: no cut

    assert refine_masks(classical_masks(image), (H, W)).max() == 1
    labels = refine_masks(classical_masks(image, edges=edges), (H, W))
    assert assert_valid_label_map(labels, (H, W)) == 2
    yy, xx = np.mgrid[:H, :W]
    inside = (yy > 66) & (yy < 190) & (xx > 66) & (xx < 190)
    upper, lower = inside & (xx - yy > 2), inside & (yy - xx > 2)  # either side of the diagonal
    assert len(np.unique(labels[upper])) == 1 and len(np.unique(labels[lower])) == 1
    assert labels[upper][0] != labels[lower][0] and labels[upper][0] > 0 and labels[lower][0] > 0


def test_classical_on_juice_bottle_gives_plausible_regions(loco_root):
    image = read_rgb(loco_root / "juice_bottle" / "train" / "good" / "000.png")
    image = resize_rgb(image, (512, 256))  # LOCO is 800x1600 (W x H): keep the aspect
    labels = RegionProposer("classical").propose(image)
    k = assert_valid_label_map(labels, (512, 256))
    assert 4 <= k <= 40
    assert not labels[:40, :40].any() and not labels[:40, -40:].any()  # black background corners
    assert labels[256, 128] > 0  # the bottle body, behind the fruit label, is a candidate
    covered = (labels > 0).mean()
    assert 0.1 < covered < 0.6  # the bottle is about a third of the frame


# ----------------------------------------------------------------------------------------------
# The cache.


class CountingProposer(RegionProposer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def propose(self, image, edges=None, foreground=None):
        self.calls += 1
        return super().propose(image, edges=edges, foreground=foreground)


def test_cache_hit_skips_proposer_and_is_fast(tmp_path):
    image, _ = demo_scene_image()
    cache = MapCache("regions", root=tmp_path)
    proposer = CountingProposer("classical")
    first = cached_regions(proposer, image, "ab" * 32, cache)
    assert proposer.calls == 1

    times = []
    for _ in range(20):
        t = time.perf_counter()
        again = cached_regions(proposer, image, "ab" * 32, cache)
        times.append(time.perf_counter() - t)
    assert proposer.calls == 1
    assert np.array_equal(first, again) and again.dtype == np.uint16
    assert np.median(times) < 0.005


def test_cache_key_covers_what_changes_the_map(tmp_path):
    image, _ = demo_scene_image()
    edges = np.zeros((H, W), np.uint8)
    classical = RegionProposer("classical")
    key = region_cache_key(classical, "ab" * 32, (H, W))
    assert region_cache_key(classical, "cd" * 32, (H, W)) != key
    assert region_cache_key(classical, "ab" * 32, (128, 128)) != key
    assert region_cache_key(classical, "ab" * 32, (H, W), edges=edges) != key
    other = RegionProposer("classical", params=RegionParams(refine=RefineParams(min_area_fraction=0.01)))
    assert region_cache_key(other, "ab" * 32, (H, W)) != key
    sam = RegionProposer("sam", segmenter=SamSegmenter.random(RANDOM_SAM))
    assert region_cache_key(sam, "ab" * 32, (H, W)) != key
    # SAM ignores edges, so they do not split its cache entries
    assert region_cache_key(sam, "ab" * 32, (H, W), edges=edges) == region_cache_key(sam, "ab" * 32, (H, W))


def test_corrupt_or_unfitting_cache_entry_is_a_miss(tmp_path):
    image, _ = demo_scene_image()
    cache = MapCache("regions", root=tmp_path)
    proposer = CountingProposer("classical")
    expected = cached_regions(proposer, image, "ab" * 32, cache)
    path = cache.path(region_cache_key(proposer, "ab" * 32, (H, W)))

    path.write_bytes(b"PK\x03\x04 truncated")
    assert np.array_equal(cached_regions(proposer, image, "ab" * 32, cache), expected)
    assert proposer.calls == 2
    cache.put(path.stem, {"regions": np.zeros((8, 8), np.uint16)})  # a map of another size
    assert np.array_equal(cached_regions(proposer, image, "ab" * 32, cache), expected)
    assert proposer.calls == 3
    assert np.array_equal(cached_regions(proposer, image, "ab" * 32, cache), expected)  # rewritten
    assert proposer.calls == 3
