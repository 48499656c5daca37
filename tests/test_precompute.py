"""The precompute stage: the maps contract, the cache, errors, the SAM path, and the build wiring
(a strategy that needs "maps" gets them through StrategyContext.maps, the manifest names their makers)."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from synthgen.generator.cli import cli
from synthgen.generator.config import BuildConfig
from synthgen.generator.datasets.demo import render_demo
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import read_rgb, resize_rgb
from synthgen.generator.models import weights
from synthgen.generator.models.edges import EdgeDetector
from synthgen.generator.models.pidinet import load_pidinet
from synthgen.generator.pipeline import build
from synthgen.generator.precompute import (
    EDGES_KIND,
    REGIONS_KIND,
    MapMaker,
    MapSettings,
    compute_maps,
    load_images,
    precompute,
)
from synthgen.generator.regions import RefineParams, RegionParams, RegionProposer, SamParams, SamSegmenter
from synthgen.generator.shards.inspect import build_maps_sheet
from synthgen.generator.shards.reader import read_manifest
from synthgen.generator.strategies import base as strategy_base
from synthgen.generator.strategies.base import Recipe, Rendered, Strategy

TINY = MapSettings(edge_model="pidinet-tiny", regions="classical")
SIZE = (96, 64)  # (H, W); keeps juice_bottle's 2:1 aspect


pytestmark = pytest.mark.usefixtures("offline_weights")  # conftest: private caches, no network


@pytest.fixture
def tiny(pidinet_weights):
    return MapSettings(edge_model="pidinet-tiny", regions="classical", weights_dir=str(pidinet_weights))


@pytest.fixture(scope="module")
def bottle_files(loco_root):
    return sorted((loco_root / "juice_bottle" / "train" / "good").glob("*.png"))[:2]


def _cache_entries(tmp_path, kind):
    folder = tmp_path / "cache" / "maps" / kind
    return sorted(folder.rglob("*.npz")) if folder.exists() else []


# ----- the contract ---------------------------------------------------------------------------------------


def test_maps_contract_on_real_images(tiny, bottle_files, pidinet_weights):
    maps = compute_maps(bottle_files, image_size=SIZE, settings=tiny)
    images = np.stack([resize_rgb(read_rgb(f), SIZE) for f in bottle_files])
    model = load_pidinet(pidinet_weights / "table5_pidinet-tiny.pth", converted=False)
    with torch.inference_mode():
        probabilities = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).numpy()
    assert len(maps) == 2
    for m, p in zip(maps, probabilities):
        assert set(m) == {"edges", "edges_fused", "regions"}
        assert m["edges"].dtype == np.uint8 and m["edges"].shape == (4, *SIZE)
        assert m["edges_fused"].dtype == np.uint8 and m["edges_fused"].shape == SIZE
        assert m["regions"].dtype == np.int32 and m["regions"].shape == SIZE
        # scale 0 is the first (finest) side output; the fused map is the fifth output; round(255 p)
        assert np.abs(m["edges"].astype(float) - 255 * p[:4]).max() <= 0.5 + 0.05
        assert np.abs(m["edges_fused"].astype(float) - 255 * p[4]).max() <= 0.5 + 0.05
        labels = np.unique(m["regions"])
        assert labels[0] >= 0 and set(labels[labels > 0]) == set(range(1, m["regions"].max() + 1))
        assert m["regions"].max() >= 2


def test_paths_and_arrays_give_the_same_maps(tiny, bottle_files):
    images = np.stack([resize_rgb(read_rgb(f), SIZE) for f in bottle_files])
    from_paths = compute_maps(bottle_files, image_size=SIZE, settings=tiny)
    from_arrays = compute_maps(images, settings=tiny)
    for a, b in zip(from_paths, from_arrays):
        for name in a:
            assert np.array_equal(a[name], b[name]), name


def test_second_run_reads_the_cache_fast(tiny, tmp_path, bottle_files, monkeypatch):
    images, ids = load_images(bottle_files, SIZE)
    maker = MapMaker(tiny)
    store, report = precompute(images, ids, maker)
    assert (report.edges_computed, report.regions_computed) == (2, 2)
    first = [store(i) for i in range(2)]

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed a cached map")

    monkeypatch.setattr(EdgeDetector, "__call__", must_not_run)
    monkeypatch.setattr(RegionProposer, "propose", must_not_run)
    times = []
    for _ in range(10):  # the fastest of 10: the cost itself, not the other processes on a shared CPU
        start = time.perf_counter()
        store, report = precompute(images, ids, maker)
        again = [store(i) for i in range(2)]
        times.append((time.perf_counter() - start) / 2)
    assert (report.edges_computed, report.regions_computed) == (0, 0)
    assert min(times) < 0.005  # the bound for the cache-hit path, per image
    for a, b in zip(first, again):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_damaged_map_entries_are_recomputed_with_a_warning(tiny, tmp_path, bottle_files):
    """A truncated entry, flipped bytes and a wrong stored hash: each is one warning naming the entry,
    the map is computed again, and the maps equal the clean ones."""
    from synthgen.generator.cache import HASH_MEMBER

    images, ids = load_images(bottle_files, SIZE)
    maker = MapMaker(tiny)
    store, _ = precompute(images, ids, maker)
    clean = [store(i) for i in range(2)]
    (edge_a, edge_b), (region_a, _) = _cache_entries(tmp_path, EDGES_KIND), _cache_entries(tmp_path, REGIONS_KIND)
    edge_a.write_bytes(edge_a.read_bytes()[:-300])  # truncated
    data = bytearray(edge_b.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit inside the stored arrays
    edge_b.write_bytes(bytes(data))
    with np.load(region_a) as z:  # a well-formed entry whose stored hash is not its content's
        arrays = {k: z[k] for k in z.files}
    arrays[HASH_MEMBER] = np.bytes_("0" * 64)
    with open(region_a, "wb") as f:
        np.savez(f, **arrays)
    with pytest.warns(UserWarning) as caught:
        store, report = precompute(images, ids, maker)
    assert (report.edges_computed, report.regions_computed) == (2, 1)
    damaged = [str(w.message) for w in caught if "damaged cache entry" in str(w.message)]
    assert sorted(m.split(":")[0] for m in damaged) == sorted(str(p) for p in (edge_a, edge_b, region_a)), damaged
    for a, b in zip(clean, [store(i) for i in range(2)]):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_cache_key_follows_model_and_size(tiny, tmp_path, bottle_files, pidinet_weights):
    images, ids = load_images(bottle_files[:1], SIZE)
    store_tiny, _ = precompute(images, ids, MapMaker(tiny))
    full = MapSettings(edge_model="pidinet", regions="classical", weights_dir=str(pidinet_weights))
    store_full, report = precompute(images, ids, MapMaker(full))
    assert report.edges_computed == 1 and store_full.edge_keys != store_tiny.edge_keys
    smaller, small_ids = load_images(bottle_files[:1], (48, 32))
    _, report = precompute(smaller, small_ids, MapMaker(tiny))
    assert report.edges_computed == 1
    assert len(_cache_entries(tmp_path, EDGES_KIND)) == 3


def test_chunked_batches_equal_one_batch(tiny, bottle_files, pidinet_weights, tmp_path):
    """GPU-sized or one-image chunks: the same maps (up to a rounding tie from the conv algorithm)."""
    images, ids = load_images(bottle_files, SIZE)
    whole = EdgeDetector("pidinet-tiny", weights_dir=pidinet_weights)
    one_by_one = EdgeDetector("pidinet-tiny", weights_dir=pidinet_weights, max_batch_pixels=SIZE[0] * SIZE[1])
    a, _ = precompute(images, ids, MapMaker(tiny, detector=whole), cache_root=tmp_path / "c1")
    b, _ = precompute(images, ids, MapMaker(tiny, detector=one_by_one), cache_root=tmp_path / "c2")
    for i in range(2):
        assert np.abs(a(i)["edges"].astype(int) - b(i)["edges"]).max() <= 1


@pytest.mark.gpu
def test_cuda_maps_match_cpu(tiny, bottle_files, pidinet_weights, tmp_path):
    images, ids = load_images(bottle_files, SIZE)
    cpu, _ = precompute(images, ids, MapMaker(tiny), cache_root=tmp_path / "cpu")
    cuda_settings = MapSettings(edge_model="pidinet-tiny", regions="classical", weights_dir=str(pidinet_weights),
                                device="cuda")
    gpu, _ = precompute(images, ids, MapMaker(cuda_settings), cache_root=tmp_path / "cuda")
    for i in range(2):
        assert np.abs(cpu(i)["edges"].astype(int) - gpu(i)["edges"]).max() <= 1


# ----- errors ---------------------------------------------------------------------------------------------


def test_missing_pidinet_weights_is_one_line_and_caches_nothing(tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    images = np.zeros((1, 64, 64, 3), np.uint8)
    with pytest.raises(SynthgenError) as err:
        compute_maps(images, settings=MapSettings(weights_dir=str(empty), regions="classical"))
    message = str(err.value)
    assert "\n" not in message
    for part in ("table5_pidinet.pth", "https://github.com/hellozhuo/pidinet", "--weights-dir", "SYNTHGEN_WEIGHTS"):
        assert part in message
    assert not (tmp_path / "cache" / "maps").exists()


def test_image_too_small_is_one_line_and_caches_nothing(tiny, tmp_path):
    with pytest.raises(SynthgenError, match=r"image 64x4: too small for PiDiNet") as err:
        compute_maps(np.zeros((1, 4, 64, 3), np.uint8), settings=tiny)
    assert "\n" not in str(err.value)
    assert _cache_entries(tmp_path, EDGES_KIND) == []


def test_bad_inputs(tiny, tmp_path):
    with pytest.raises(SynthgenError, match="expected uint8"):
        compute_maps(np.zeros((2, 32, 32, 3), np.float32), settings=tiny)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (40, 30)).save(a)
    Image.new("RGB", (50, 30)).save(b)
    with pytest.raises(SynthgenError, match="sizes differ"):
        compute_maps([a, b], settings=tiny)
    with pytest.raises(SynthgenError, match="missing.png"):
        compute_maps([tmp_path / "missing.png"], settings=tiny)


def test_sam_requested_without_checkpoint_fails_auto_warns(pidinet_weights):
    with pytest.raises(SynthgenError, match="sam_vit_b_01ec64.pth"):
        MapMaker(MapSettings(edge_model="pidinet-tiny", weights_dir=str(pidinet_weights), regions="sam"))
    with pytest.warns(RuntimeWarning, match="weight-free classical"):
        maker = MapMaker(MapSettings(edge_model="pidinet-tiny", weights_dir=str(pidinet_weights), regions="auto"))
    assert maker.describe()["regions"]["method"] == "classical"


# ----- the SAM path, with a tiny random-weight SAM ----------------------------------------------------------


def test_random_sam_region_maps_through_precompute(tiny, bottle_files, pidinet_weights):
    """Random weights give texture-like masks; open the quality filters so some reach the refinement."""
    segmenter = SamSegmenter.random(SamParams(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0),
                                    seed=1, img_size=128)
    refine = RefineParams(max_border_fraction=1.0, max_area_fraction=1.0)
    proposer = RegionProposer("sam", params=RegionParams(refine=refine), segmenter=segmenter)
    images, ids = load_images(bottle_files[:1], SIZE)
    maker = MapMaker(tiny, proposer=proposer)
    store, report = precompute(images, ids, maker)
    regions = store(0)["regions"]
    assert report.regions_computed == 1 and regions.dtype == np.int32 and regions.max() >= 1
    masks = segmenter.masks(images[0])
    assert not regions[~np.logical_or.reduce(masks)].any()  # regions come only from SAM's masks
    rows = {row["role"]: row for row in maker.artifacts()}
    assert rows["region maps (sam)"]["name"] == "sam_random_tiny"
    assert rows["edge maps (4 scales + fused)"]["sha256"] == weights.REGISTRY["pidinet-tiny"].sha256


# ----- the build: a strategy that needs maps --------------------------------------------------------------


class MapsProbe(Strategy):
    """Marks source i's largest region as the anomaly and leaves the image as it is: a build test can
    check each mask against the maps directly."""

    name = "test-maps-probe"
    needs = frozenset({"maps"})

    def draw(self, rng, ctx, source_index):
        maps = ctx.maps(source_index)
        return Recipe({"regions": int(maps["regions"].max())}, {"mask": maps["regions"] == 1})

    def render(self, images, recipes, ctx):
        masks = torch.stack([torch.from_numpy(r.arrays["mask"]).float() for r in recipes]).to(images.device)
        return Rendered(images=images, masks=masks)


@pytest.fixture
def probe(monkeypatch):
    monkeypatch.setitem(strategy_base._STRATEGIES, MapsProbe.name, MapsProbe)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return render_demo(tmp_path_factory.mktemp("demo")).parent


def _config(demo_root, pidinet_weights, **kw):
    base = dict(dataset="demo", category="parts_box", root=str(demo_root), strategies=(MapsProbe.name,),
                num_samples=6, samples_per_shard=6, batch_size=3, image_size=(64, 64), seed=3,
                edge_model="pidinet-tiny", regions="classical", weights_dir=str(pidinet_weights))
    base.update(kw)
    return BuildConfig(**base)


def test_build_passes_maps_to_strategies_and_records_their_makers(probe, demo_root, pidinet_weights, tmp_path):
    out = tmp_path / "build"
    build(_config(demo_root, pidinet_weights), out, progress=False)
    manifest = read_manifest(out)
    rows = {row["role"]: row for row in manifest["artifacts"]}
    edges = rows["edge maps (4 scales + fused)"]
    assert edges["name"] == "pidinet-tiny" and edges["sha256"] == weights.REGISTRY["pidinet-tiny"].sha256
    assert rows["region maps (classical)"]["name"] == "felzenszwalb"

    sources = [s["file"] for s in manifest["dataset"]["sources"]]
    stack = np.stack([resize_rgb(read_rgb(demo_root / f), (64, 64)) for f in sources[:6]])
    expected = compute_maps(stack, settings=MapSettings(edge_model="pidinet-tiny", regions="classical",
                                                        weights_dir=str(pidinet_weights)))
    with h5py.File(out / manifest["shards"][0]["file"], "r") as f:
        masks, source_ids = f["mask"][...], f["source_id"].asstr()[...]
    assert list(source_ids) == [s["id"] for s in manifest["dataset"]["sources"][:6]]
    for mask, maps in zip(masks, expected):
        assert np.array_equal(mask > 0, maps["regions"] == 1)

    sheet = build_maps_sheet(out, tmp_path / "maps.png", rows=2)  # what `synthgen inspect --maps` writes
    with Image.open(sheet) as png:
        assert png.width > 7 * 64 and png.height > 2 * 64


def test_build_identity_follows_the_map_makers_and_reuses_the_cache(probe, demo_root, pidinet_weights, tmp_path,
                                                                    monkeypatch):
    build(_config(demo_root, pidinet_weights), tmp_path / "a", progress=False)
    hash_a = read_manifest(tmp_path / "a")["config_hash"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed a cached map")

    # Same maps, another seed: every map comes from the cache.
    with monkeypatch.context() as m:
        m.setattr(EdgeDetector, "__call__", must_not_run)
        m.setattr(RegionProposer, "propose", must_not_run)
        build(_config(demo_root, pidinet_weights, seed=4), tmp_path / "b", progress=False)
    # Another edge model: another identity.
    build(_config(demo_root, pidinet_weights, edge_model="pidinet", num_samples=2), tmp_path / "c", progress=False)
    full = read_manifest(tmp_path / "c")
    assert full["config_hash"] != hash_a
    assert {r["sha256"] for r in full["artifacts"]} >= {weights.REGISTRY["pidinet"].sha256}


def test_train_e2i_pairs_read_the_edges_a_build_precomputed(probe, demo_root, pidinet_weights, tmp_path, monkeypatch):
    from synthgen.generator.training.e2i import category_pairs

    config = _config(demo_root, pidinet_weights)
    build(config, tmp_path / "build", progress=False)
    sources = [s["file"] for s in read_manifest(tmp_path / "build")["dataset"]["sources"]]
    stack = np.stack([resize_rgb(read_rgb(demo_root / f), (64, 64)) for f in sources])
    expected = compute_maps(stack, settings=MapSettings(edge_model="pidinet-tiny", regions="classical",
                                                        weights_dir=str(pidinet_weights)))

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed a cached edge map")

    monkeypatch.setattr(EdgeDetector, "__call__", must_not_run)
    pairs = category_pairs("demo", demo_root, "parts_box", "train", (64, 64), edge_model="pidinet-tiny",
                           weights_dir=str(pidinet_weights), device="cpu", progress=False)
    assert len(pairs) == len(sources)
    for (edge, image), maps, source in zip(pairs, expected, stack):
        assert np.array_equal(edge, maps["edges"][0]) and np.array_equal(image, source)


def test_build_without_weights_fails_before_any_shard(probe, demo_root, tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["build", "--root", str(demo_root), "--strategy", MapsProbe.name,
                                      "--out", str(tmp_path / "out"), "--weights-dir", str(empty), "--quiet",
                                      "--image-size", "64", "--device", "cpu"])
    assert isinstance(result.exception, SynthgenError) and "table5_pidinet.pth" in str(result.exception)
    assert not (tmp_path / "out").exists()


# ----- the CLI --------------------------------------------------------------------------------------------


def test_cli_precompute_writes_a_sheet_and_weights_lists(demo_root, pidinet_weights, tmp_path):
    sheet = tmp_path / "sheet.png"
    args = ["precompute", "--root", str(demo_root), "--image-size", "64", "--device", "cpu",
            "--edge-model", "pidinet-tiny", "--regions", "classical", "--weights-dir", str(pidinet_weights),
            "--sheet", str(sheet), "--sheet-rows", "2", "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "24 images of demo/parts_box/train at 64x64: edges computed 24" in result.output
    assert "regions: classical (felzenszwalb)" in result.output
    with Image.open(sheet) as png:
        assert png.width > 7 * 64 and png.height > 2 * 64  # 2 rows of 7 tiles
    again = CliRunner().invoke(cli, args)
    assert "edges computed 0 (cached 24), regions computed 0 (cached 24)" in again.output

    listing = CliRunner().invoke(cli, ["weights", "--weights-dir", str(pidinet_weights)])
    lines = {line.split()[0]: line for line in listing.output.splitlines()}
    assert " ok " in lines["pidinet"] and " missing " in lines["sam_vit_b"]
