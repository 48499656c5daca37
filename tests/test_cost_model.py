"""The cost model behind `synthgen build --dry-run`: its arithmetic, the shipped table, the CLI writing nothing."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from generator.cli import cli
from generator.config import BuildConfig
from generator.cost_model import DEFAULT_TABLE, load_cost_table, predict_build
from generator.datasets.demo import render_demo
from generator.errors import SynthgenError

TABLE = {
    "version": 1, "image_size": [256, 256], "overhead_bytes_per_sample": 1000, "compressed_image_ratio": 0.5,
    "seconds": {"decode_per_megapixel": 0.1, "edges": 0.5, "regions": 0.25, "e2i_forward:small": 1.0,
                "e2i_forward:global": 4.0, "ssim_mask": 0.01, "render:draem": 0.002, "render:ndaa": 0.004,
                "shard_write_per_mib": 0.01, "verify_per_mib": 0.005},
    "path": "hand-made",
}


def _config(**kw) -> BuildConfig:
    base = dict(dataset="demo", category="parts_box", strategies=("draem",), image_size=(512, 512), samples_per_shard=100)
    base.update(kw)
    return BuildConfig(**base)


def test_prediction_multiplies_counts_by_costs():
    # 300 samples of two strategies at 512^2 (4x the table's pixels), 10 sources of 1 MP, 2 workers (3 shards)
    pred = predict_build(_config(), ("draem", "ndaa"), [1.0] * 10, 300, {"draem": 150, "ndaa": 150},
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
    cached = predict_build(_config(), ("draem",), [1.0] * 10, 300, {"draem": 300}, workers=1, table=TABLE,
                           sources_cached=True)
    assert "decode" not in cached.seconds and any("already decoded" in n for n in cached.notes)


def test_logical_samples_cost_two_renderings_and_a_mask():
    pred = predict_build(_config(image_size=(256, 256)), ("semantic-remove",), [1.0] * 4, 10,
                         {"semantic-remove": 10}, workers=1, table=TABLE, e2i_network="global")
    assert pred.seconds["edges"] == pytest.approx(4 * 0.5) and pred.seconds["regions"] == pytest.approx(4 * 0.25)
    assert pred.seconds["render"] == pytest.approx(10 * (2 * 4.0 + 0.01))


def test_shipped_table_covers_every_image_level_strategy():
    table = load_cost_table()
    assert table["path"] == str(DEFAULT_TABLE)
    for name in ("draem", "transparent", "opaque", "ndaa", "rotation", "cutpaste", "cutpaste-scar"):
        assert table["seconds"][f"render:{name}"] > 0
    for stage in ("decode_per_megapixel", "edges", "regions", "e2i_forward:small", "e2i_train_step", "ssim_mask",
                  "shard_write_per_mib", "verify_per_mib"):
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
