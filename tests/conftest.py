"""Shared test fixtures: where the real data and weights live, and how tests skip without them.

Real files come from ../shared beside the checkout (CI puts it there). A test that needs them
uses the fixtures below, which skip with a reason naming the missing path when it is absent.
"""

from __future__ import annotations

import contextlib

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SYNTHGEN_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
SHARED_WEIGHTS = SHARED / "weights"

# Tests must be deterministic and fair on 2 cores.
torch.set_num_threads(1)  # two threads spin against each other on a busy 2-core machine


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not present: {path} (put ../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def loco_root() -> Path:
    """MVTec LOCO root holding juice_bottle/."""
    return _need(SHARED_DATA / "mvtec_loco" / "juice_bottle").parent


@pytest.fixture(scope="session")
def mvtec_ad_root() -> Path:
    """MVTec AD root holding bottle/."""
    return _need(SHARED_DATA / "mvtec_ad" / "bottle").parent


@pytest.fixture(scope="session")
def dtd_root() -> Path:
    """DTD-style texture folder (images/<class>/*.jpg)."""
    return _need(SHARED_DATA / "dtd")


@pytest.fixture(scope="session")
def pidinet_weights() -> Path:
    """Folder holding table5_pidinet.pth and table5_pidinet-tiny.pth."""
    return _need(SHARED_WEIGHTS / "pidinet" / "table5_pidinet.pth").parent


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the tests' caches (demo data, source stacks, maps) out of the user's ~/.cache, and keep
    weight resolution from finding files in the user's torch hub cache (tests pass weights explicitly)."""
    cache = tmp_path_factory.mktemp("synthgen-cache")
    redirected = {"SYNTHGEN_CACHE": str(cache), "TORCH_HOME": str(cache / "torch")}
    old = {name: os.environ.get(name) for name in redirected}
    os.environ.update(redirected)
    yield cache
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def offline_weights(tmp_path, monkeypatch):
    """Per test: private map and weights caches, no $SYNTHGEN_WEIGHTS, and a network that always fails
    (a test may replace ``urlopen`` again to simulate a download)."""
    import urllib.error

    from synthgen.generator.models import weights

    monkeypatch.setenv("SYNTHGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)

    def no_network(url, timeout):
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(weights.urllib.request, "urlopen", no_network)


@pytest.fixture
def interrupt_in_epoch():
    """``with interrupt_in_epoch(module, k):`` the plain training loop of ``module`` (PBAS, the ensemble)
    raises KeyboardInterrupt when it asks for the order of epoch k (0-based), as Ctrl-C there would."""

    @contextlib.contextmanager
    def interrupt(module, epoch: int):
        order_for_epoch = module.order_for_epoch

        def interrupted(n, seed, e):
            if e == epoch:
                raise KeyboardInterrupt
            return order_for_epoch(n, seed, e)

        with pytest.MonkeyPatch.context() as m:
            m.setattr(module, "order_for_epoch", interrupted)
            yield

    return interrupt


@pytest.fixture(scope="session")
def draem_demo_build(tmp_path_factory) -> Path:
    """24 draem samples of the demo dataset at 64x64 (about half of them anomalous), built once for the trainer
    tests that read shards (GLASS, the anomalib models)."""
    from synthgen.generator.config import BuildConfig
    from synthgen.generator.pipeline import build

    config = BuildConfig(dataset="demo", category="parts_box", root=None, strategies=("draem",), num_samples=24,
                         samples_per_shard=24, batch_size=12, image_size=(64, 64), texture_source="perlin", seed=1)
    out = tmp_path_factory.mktemp("draem-demo-build") / "demo"
    build(config, out, progress=False)
    return out
