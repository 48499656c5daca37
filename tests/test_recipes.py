"""Recipes (generator/recipes.py, manifests/recipes/): the shipped files are frozen, each is valid and
complete, `synthgen build --recipe` builds the demo recipe byte-identically twice and records the
recipe in the manifest, and every misuse is a one-line error."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from cli_run import run_main

from synthgen.generator.cli import main
from synthgen.generator.errors import SynthgenError
from synthgen.generator.recipes import find_recipe, load_recipe_file, shipped_recipes
from synthgen.generator.shards.manifest import validate_manifest
from synthgen.manifests import recipes_dir

#: sha256 of every shipped recipe file. A shipped recipe is never edited: a change is a new file
#: <name>-v<N+1>.json (and a new line here), so a build that cites name-vN means the same for everyone.
SHIPPED = {
    "demo-v1": "5839d5ade45eb2c6fceaf2d04eab56588ad89ce511ccae12fef9c0b71e3c6c59",
    "loco-logical-v1": "b71a4e79bb8121da4be8e0676682a9b70354e0633246c87ba3bb0c6485153584",
    "mvtec-ad-caf-v1": "faaca0e7bde1590325c5d2843a5bb525a34b8b21bfa3bf1a2cdf543728b52420",
    "visa-draem-v1": "e55a0d77ed11c4e4d17890c67851ebffd2e4d6aea6ac0612cfde0a4e05af0257",
}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    return run_main(main, argv, capsys)


def test_shipped_recipes_are_frozen():
    found = {r.full_name: r.sha256 for r in shipped_recipes()}
    assert found == SHIPPED
    for path in recipes_dir().glob("*.json"):  # the identity is the file's bytes
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SHIPPED[path.stem]


def test_shipped_recipes_make_a_valid_config_for_every_category():
    for recipe in shipped_recipes():
        texture_root = "/data/dtd" if recipe.textures == "dtd" else None
        for category in recipe.categories:
            config = recipe.config(category, root="/data", texture_root=texture_root)
            assert config.recipe == {"name": recipe.name, "version": recipe.version, "sha256": recipe.sha256}
            assert config.num_samples == recipe.data["build"]["num_samples"] and config.seed == recipe.data["build"]["seed"]
    loco = find_recipe("loco-logical")
    assert loco.full_name == "loco-logical-v1" and loco.image_size("juice_bottle") == (256, 128)
    assert loco.config("juice_bottle", root="/data").regions == "classical"  # never 'auto': it depends on the machine


def _shard_hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.h5"))}


def test_demo_recipe_builds_byte_identically_twice(tmp_path, capsys):
    for name in ("a", "b"):
        code, out, err = _run(["build", "--recipe", "demo-v1", "--out", str(tmp_path / name), "--quiet"], capsys)
        assert code == 0, err
        assert "parts_box: built 2 shard(s)" in out and "recipe demo-v1" in err
    first, second = _shard_hashes(tmp_path / "a" / "parts_box"), _shard_hashes(tmp_path / "b" / "parts_box")
    assert len(first) == 2 and first == second
    manifest = json.loads((tmp_path / "a" / "parts_box" / "manifest.json").read_text())
    validate_manifest(manifest, "manifest.json")
    assert manifest["config"]["recipe"] == {"name": "demo", "version": 1, "sha256": SHIPPED["demo-v1"]}
    assert manifest["totals"]["samples"] == 96
    other = json.loads((tmp_path / "b" / "parts_box" / "manifest.json").read_text())
    assert other["config_hash"] == manifest["config_hash"]
    # the card's rebuild command names the recipe; run as it stands it makes the same build again
    import shlex

    from synthgen.generator.publish.card import rebuild_command

    command = rebuild_command(manifest, out=str(tmp_path / "again"))
    assert "--recipe demo-v1 --category parts_box" in command and "--strategy" not in command
    code, _, err = _run(shlex.split(command)[1:] + ["--quiet"], capsys)
    assert code == 0, err
    assert _shard_hashes(tmp_path / "again" / "parts_box") == first


def test_recipes_command_lists_every_shipped_recipe(capsys):
    code, out, _ = _run(["recipes"], capsys)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == sorted(SHIPPED)


@pytest.mark.parametrize("argv, message", [
    (["--recipe", "demo", "--seed", "3"], "--seed: the recipe fixes it"),
    (["--recipe", "demo", "--strategy", "draem"], "--strategy: the recipe fixes it"),
    (["--recipe", "demo", "--set", "draem.beta_max=0.5"], "--set: the recipe fixes it"),
    (["--recipe", "demo", "--dry-run"], "--dry-run: not available with --recipe"),
    (["--recipe", "demo", "--category", "bolts"], "'bolts' is not a category of recipe demo-v1"),
    (["--recipe", "demo", "--textures", "/data/dtd"], "recipe demo-v1 fixes its textures"),
    (["--recipe", "mvtec-ad-caf", "--root", "/nowhere", "--category", "bottle"], "uses DTD textures; give the folder"),
    (["--recipe", "loco-logical-v7"], "unknown recipe 'loco-logical-v7'"),
    ([], "--strategy: give at least one strategy (or --recipe NAME)"),
])
def test_recipe_misuse_is_a_one_line_error(argv, message, capsys, tmp_path):
    code, _, err = _run(["build", "--out", str(tmp_path / "out"), *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_bad_recipe_files_are_refused(tmp_path):
    good = recipes_dir() / "demo-v1.json"
    renamed = tmp_path / "demo-v2.json"
    shutil.copy(good, renamed)
    with pytest.raises(SynthgenError, match="file name says demo v2, the file says demo v1"):
        load_recipe_file(renamed)
    bad_name = tmp_path / "demo.json"
    shutil.copy(good, bad_name)
    with pytest.raises(SynthgenError, match="named <name>-v<version>.json"):
        load_recipe_file(bad_name)
    data = json.loads(good.read_text())
    del data["build"]["seed"]
    (tmp_path / "demo-v1.json").write_text(json.dumps(data))
    with pytest.raises(SynthgenError, match="does not match its schema at build: 'seed' is a required property"):
        find_recipe(str(tmp_path / "demo-v1.json"))
    (tmp_path / "demo-v1.json").write_text("{")
    with pytest.raises(SynthgenError, match="not valid JSON"):
        load_recipe_file(tmp_path / "demo-v1.json")
