"""The manifest JSON Schema, recipes of benchmark datasets, and manifests of published builds."""

from importlib import resources
from pathlib import Path


def schema_path() -> Path:
    """Path of manifest.schema.json (the schema every build's manifest.json validates against)."""
    return Path(str(resources.files(__name__) / "manifest.schema.json"))
