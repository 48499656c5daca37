"""The manifest JSON Schema, recipes of benchmark datasets (recipes/ and their schema), and manifests of published builds."""

from importlib import resources
from pathlib import Path


def schema_path() -> Path:
    """Path of manifest.schema.json (the schema every build's manifest.json validates against)."""
    return Path(str(resources.files(__name__) / "manifest.schema.json"))


def recipe_schema_path() -> Path:
    """Path of recipe.schema.json (the schema of every recipe file, generator/recipes.py)."""
    return Path(str(resources.files(__name__) / "recipe.schema.json"))


def recipes_dir() -> Path:
    """The folder of the shipped recipes, ``<name>-v<version>.json``."""
    return Path(str(resources.files(__name__) / "recipes"))
