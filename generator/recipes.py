"""Recipes: named, versioned build definitions of benchmark synthetic datasets.

A recipe is a JSON file ``manifests/recipes/<name>-v<version>.json`` (schema:
``manifests/recipe.schema.json``) that fixes everything that decides a build's bytes: dataset,
categories, strategies and their options, image size, samples per category, seed, textures, the
LogicAL renderer, its region proposer and edge model, and the automatic generator's training preset;
plus a short rationale. What it leaves to the user is where things are (dataset root, DTD folder,
weights) and where the work runs (device, workers, executor).

``synthgen build --recipe NAME --root R --out OUT`` builds every category of it into ``OUT/<category>``.
NAME is ``<name>-v<N>``, a bare ``<name>`` (its highest shipped version) or a path to a recipe file.
The build records the recipe's identity (name, version, sha256 of the file's bytes) in its config,
so it is part of the config hash, the manifest and the published card. A shipped recipe is never
edited: a change is a new version (tests/test_recipes.py holds each shipped file's sha256).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthgen.manifests import recipe_schema_path, recipes_dir

from .config import BuildConfig
from .errors import SynthgenError

_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*?)-v(?P<version>[1-9][0-9]*)\.json$")


@dataclass(frozen=True)
class Recipe:
    name: str
    version: int
    sha256: str  # of the file's bytes: the identity a manifest and a card record
    path: Path
    data: dict[str, Any]

    @property
    def full_name(self) -> str:
        return f"{self.name}-v{self.version}"

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    @property
    def dataset(self) -> str:
        return self.data["dataset"]

    @property
    def categories(self) -> list[str]:
        return list(self.data["categories"])

    @property
    def textures(self) -> str | None:
        return self.data["build"].get("textures")

    def image_size(self, category: str) -> tuple[int, int]:
        """The category's image size (H, W): its own entry of ``image_size_per_category``, else ``image_size``."""
        size = self.data["build"].get("image_size_per_category", {}).get(category, self.data["build"]["image_size"])
        return int(size[0]), int(size[1])

    def config(self, category: str, *, root: str | None, texture_root: str | None = None, device: str = "cpu",
               weights_dir: str | None = None, sam_checkpoint: str | None = None) -> BuildConfig:
        """The BuildConfig of one category (the recipe's identity included: it is part of the config hash)."""
        if category not in self.data["categories"]:
            raise SynthgenError(f"--category: {category!r} is not a category of recipe {self.full_name} "
                                f"({', '.join(self.categories)})")
        b = self.data["build"]
        texture_source = b.get("textures")
        if texture_source == "dtd" and not texture_root:
            raise SynthgenError(f"--textures: recipe {self.full_name} uses DTD textures; give the folder (--textures /data/dtd)")
        if texture_source != "dtd" and texture_root:
            raise SynthgenError(f"--textures: recipe {self.full_name} fixes its textures ({texture_source or 'none'}); "
                                "leave --textures out")
        optional = {key: b[key] for key in ("samples_per_shard", "batch_size", "renderer", "regions", "edge_model",
                                            "sam_model", "max_attempts") if key in b}
        config = BuildConfig(
            dataset=self.dataset, category=category, root=root, strategies=tuple(b["strategies"]),
            num_samples=b["num_samples"], image_size=self.image_size(category), seed=b["seed"], device=device,
            texture_source=texture_source, texture_root=texture_root if texture_source == "dtd" else None,
            options={k: dict(v) for k, v in b.get("options", {}).items()}, weights_dir=weights_dir,
            sam_checkpoint=sam_checkpoint, recipe=self.identity, **optional,
        )
        self._check_generator_preset(config)
        return config

    def _check_generator_preset(self, config: BuildConfig) -> None:
        """The recipe names the automatic generator's training preset; this code picks it by dataset, so a
        recipe whose preset is not the one this code would train is refused rather than built differently."""
        from .training.auto import needs_generator, preset_name

        wanted = self.data["build"].get("generator_preset")
        if not needs_generator(config):
            return
        if wanted != preset_name(config):
            raise SynthgenError(f"{self.path}: generator_preset {wanted!r}, but this synthgen trains "
                                f"{preset_name(config)!r} for dataset {config.dataset}; use a recipe version made for it")


def _parse_file_name(path: Path) -> tuple[str, int]:
    match = _FILE_NAME.match(path.name)
    if not match:
        raise SynthgenError(f"{path}: a recipe file is named <name>-v<version>.json (e.g. loco-logical-v1.json)")
    return match["name"], int(match["version"])


def load_recipe_file(path: str | Path) -> Recipe:
    """Read and check one recipe file: its schema, and that its name and version match the file name."""
    import jsonschema

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SynthgenError(f"{path}: cannot read recipe ({e.strerror})") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SynthgenError(f"{path}: recipe is not valid JSON ({e})") from None
    schema = json.loads(recipe_schema_path().read_text())
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "top level"
        raise SynthgenError(f"{path}: recipe does not match its schema at {where}: {e.message}") from None
    name, version = _parse_file_name(path)
    if (data["name"], data["version"]) != (name, version):
        raise SynthgenError(f"{path}: file name says {name} v{version}, the file says {data['name']} v{data['version']}")
    unknown = sorted(set(data["build"].get("image_size_per_category", {})) - set(data["categories"]))
    if unknown:
        raise SynthgenError(f"{path}: image_size_per_category names {unknown[0]!r}, which is not in categories")
    return Recipe(name, version, hashlib.sha256(raw).hexdigest(), path, data)


def shipped_recipes() -> list[Recipe]:
    """Every recipe shipped with synthgen, sorted by name and version."""
    recipes = [load_recipe_file(p) for p in sorted(recipes_dir().glob("*.json"))]
    return sorted(recipes, key=lambda r: (r.name, r.version))


def find_recipe(name: str) -> Recipe:
    """``<name>-v<N>``, ``<name>`` (its highest version) or a path to a recipe file."""
    if name.endswith(".json") or "/" in name:
        return load_recipe_file(name)
    recipes = shipped_recipes()
    exact = [r for r in recipes if r.full_name == name]
    if exact:
        return exact[0]
    versions = [r for r in recipes if r.name == name]
    if versions:
        return versions[-1]
    known = ", ".join(r.full_name for r in recipes)
    raise SynthgenError(f"--recipe: unknown recipe {name!r}; shipped: {known} (or give a path to a recipe file)")
