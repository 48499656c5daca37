"""The cost model behind `synthgen build --dry-run`: its arithmetic, the shipped table, the CLI writing nothing."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from synthgen.generator.cli import cli
from synthgen.generator.config import BuildConfig
from synthgen.generator.cost_model import DEFAULT_TABLE, load_cost_table, predict_build
from synthgen.generator.models.renderers import RenderCost
from synthgen.generator.datasets.demo import render_demo
from synthgen.generator.errors import SynthgenError
from synthgen.generator.strategies.base import resolve_strategies

TABLE = {
    "version": 2, "image_size": [256, 256], "overhead_bytes_per_sample": 1000, "compressed_image_ratio": 0.5,
    "inpaint_train_crop": 128,
    "seconds": {"decode_per_megapixel": 0.1, "edges": 0.5, "regions": 0.25, "e2i_forward:small": 1.0,
                "e2i_forward:global": 4.0, "inpaint_forward": 0.2, "inpaint_train_step": 0.5, "ssim_mask": 0.01, "render:draem": 0.002, "render:ndaa": 0.004,
                "shard_write_per_mib": 0.01, "verify_per_mib": 0.005},
    "path": "hand-made",
}


def _predict(config: BuildConfig, names: tuple[str, ...], *args, **kwargs):
    """predict_build of ``names`` resolved as a plan resolves them (objects and parsed options of ``config``)."""
    return predict_build(config, resolve_strategies(names, config.options, config.image_size), *args, **kwargs)


def _config(**kw) -> BuildConfig:
    base = dict(dataset="demo", category="parts_box", strategies=("draem",), image_size=(512, 512), samples_per_shard=100)
    base.update(kw)
    return BuildConfig(**base)


def test_prediction_multiplies_counts_by_costs():
    # 300 samples of two strategies at 512^2 (4x the table's pixels), 10 sources of 1 MP, 2 workers (3 shards)
    pred = _predict(_config(), ("draem", "ndaa"), [1.0] * 10, 300, {"draem": 150, "ndaa": 150},
                         workers=2, table=TABLE)
    parallel = min(2, os.cpu_count() or 1)
    assert pred.seconds["decode"] == pytest.approx(1.0)
    assert pred.seconds["render"] == pytest.approx((150 * 0.002 + 150 * 0.004) * 4)
    per_sample = 512 * 512 * 7 + 1000
    assert pred.bytes == 300 * per_sample
    assert pred.seconds["shard_write"] == pytest.approx(0.01 * 300 * per_sample / 2**20)
    parallel_part = pred.seconds["render"] + pred.seconds["shard_write"]
    assert pred.wall_seconds == pytest.approx(pred.cpu_seconds - parallel_part + parallel_part / parallel)
    assert "edges" not in pred.seconds  # no LogicAL strategy: no maps
    cached = _predict(_config(), ("draem",), [1.0] * 10, 300, {"draem": 300}, workers=1, table=TABLE,
                           sources_cached=True)
    assert "decode" not in cached.seconds and any("already decoded" in n for n in cached.notes)


def test_full_renderer_samples_cost_two_renderings_and_a_mask():
    pred = _predict(_config(image_size=(256, 256), renderer="full"), ("semantic-remove",), [1.0] * 4, 10,
                         {"semantic-remove": 10}, workers=1, table=TABLE, render_cost=RenderCost(network="global"))
    assert pred.seconds["edges"] == pytest.approx(4 * 0.5) and pred.seconds["regions"] == pytest.approx(4 * 0.25)
    assert pred.seconds["render"] == pytest.approx(10 * (2 * 4.0 + 0.01))
    assert "generator training" not in pred.seconds


def test_inpaint_edits_cost_two_renderings_identity_samples_one_and_the_first_build_trains_the_generator():
    # 256x128: half the table's pixels; crops of 128 fit, so a step costs what the table measured.
    # Half of the samples are identity inpaints (one rendering, one SSIM map), half edits (edited and
    # unedited, three SSIM maps).
    pred = _predict(_config(image_size=(256, 128)), ("semantic-remove",), [1.0] * 4, 10,
                         {"semantic-remove": 10}, workers=1, table=TABLE, render_cost=RenderCost(steps=600, crop=128))
    assert pred.seconds["render"] == pytest.approx(10 * (1.5 * 0.2 + 2 * 0.01) / 2)
    edits_only = _predict(_config(image_size=(256, 128), options={"semantic-remove": {"identity_fraction": 0}}),
                               ("semantic-remove",), [1.0] * 4, 10, {"semantic-remove": 10}, workers=1, table=TABLE)
    assert edits_only.seconds["render"] == pytest.approx(10 * (2 * 0.2 + 3 * 0.01) / 2)
    assert pred.seconds["generator training"] == pytest.approx(600 * 0.5)
    assert any("counted even when cached" in n and "generator training" in n for n in pred.notes)
    # at 64x64 the crop is the whole image: a quarter of the measured crop's pixels
    small = _predict(_config(image_size=(64, 64)), ("semantic-remove",), [1.0] * 4, 10,
                          {"semantic-remove": 10}, workers=1, table=TABLE, render_cost=RenderCost(steps=600, crop=128))
    assert small.seconds["generator training"] == pytest.approx(600 * 0.5 / 4)
    given = _predict(_config(image_size=(256, 128)), ("semantic-remove",), [1.0] * 4, 10,
                          {"semantic-remove": 10}, workers=1, table=TABLE)  # --e2i given: nothing to train
    assert "generator training" not in given.seconds
    # a generator trained on 128 px crops renders a 128 x 128 window around each hole: a quarter of
    # the table's 256 x 256 per rendering; the SSIM maps stay whole-image
    windowed = _predict(_config(image_size=(256, 256)), ("semantic-remove",), [1.0] * 4, 10,
                             {"semantic-remove": 10}, workers=1, table=TABLE, render_cost=RenderCost(window=128))
    assert windowed.seconds["render"] == pytest.approx(10 * (1.5 * 0.2 / 4 + 2 * 0.01))


def test_shipped_table_covers_every_image_level_strategy():
    table = load_cost_table()
    assert table["path"] == str(DEFAULT_TABLE) and table["inpaint_train_crop"] > 0
    for name in ("draem", "transparent", "opaque", "ndaa", "rotation", "cutpaste", "cutpaste-scar"):
        assert table["seconds"][f"render:{name}"] > 0
    for stage in ("decode_per_megapixel", "edges", "regions", "e2i_forward:small", "e2i_train_step", "ssim_mask",
                  "inpaint_forward", "inpaint_train_step", "shard_write_per_mib", "verify_per_mib"):
        assert table["seconds"][stage] > 0


def test_bad_table_is_a_one_line_error(tmp_path):
    bad = tmp_path / "costs.json"
    bad.write_text(json.dumps({"version": 99}))
    with pytest.raises(SynthgenError, match="costs.json: not a synthgen cost table"):
        load_cost_table(bad)


def test_dry_run_prints_the_prediction_and_writes_nothing(tmp_path):
    root = render_demo(tmp_path / "demo").parent
    out = tmp_path / "out"
    args = ["build", "--dataset", "demo", "--root", str(root), "--strategy", "draem,ndaa", "--textures", "perlin",
            "--num-samples", "40", "--image-size", "64", "--out", str(out), "--dry-run"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "dry run: 40 samples" in result.output and "total CPU" in result.output and "MiB" in result.output
    assert not out.exists()
    table = tmp_path / "costs.json"
    table.write_text(json.dumps({k: v for k, v in TABLE.items() if k != "path"}))
    result = CliRunner().invoke(cli, [*args, "--cost-table", str(table)])
    assert result.exit_code == 0 and str(table) in result.output and not out.exists()
    # a LogicAL build without --e2i: the first build trains the generator, and the report says it
    logical = [a if a != "draem,ndaa" else "semantic-remove" for a in args]
    result = CliRunner().invoke(cli, logical)
    assert result.exit_code == 0, result.output
    assert "generator training" in result.output and "counted even when cached" in result.output and not out.exists()
