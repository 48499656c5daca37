"""Package mapping: the repository keeps generator/, trainers/ and manifests/ at its top (where a newcomer
looks, as the design card lays them out) and installs them as sub-packages of one import package,
``synthgen`` (synthgen/ holds its ``__init__`` and the public API). Nothing else lands at the top of
site-packages. Everything else about the distribution is in pyproject.toml."""

from setuptools import find_packages, setup

PARTS = ("generator", "trainers", "manifests")

packages = ["synthgen"]
for part in PARTS:
    packages += [f"synthgen.{part}"] + [f"synthgen.{part}.{sub}" for sub in find_packages(part)]

setup(packages=packages, package_dir={"synthgen": "synthgen", **{f"synthgen.{part}": part for part in PARTS}})
