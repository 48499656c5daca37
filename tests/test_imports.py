"""The import graph of the code base: no circles, and the build never reaches training code.

Covers generator/ and trainers/ (whose method registry, trainers.base, is filled by the methods
registering themselves; only the entry points import the method table trainers.methods).

DESIGN.md sec. 2: a newcomer follows ``synthgen build`` downward only. The graph is read from the
source with ``ast`` (nothing is imported), counting every import statement, also those inside
functions and ``if TYPE_CHECKING:`` blocks, because each one is a dependency a reader has to follow.
An import of a package counts as an edge to its ``__init__``; an import of a submodule does not
count as an edge to its parent package (Python runs the parent's ``__init__`` first, but that is
how registries such as ``generator.strategies`` fill themselves, not a dependency of the member).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Installed names of the repository's folders (setup.py maps generator/ -> synthgen.generator, ...)
PACKAGES = {"synthgen": REPO / "synthgen", "synthgen.generator": REPO / "generator",
            "synthgen.trainers": REPO / "trainers", "synthgen.manifests": REPO / "manifests"}


def module_files(packages: dict[str, Path] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` (installed name -> folder)."""
    modules = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("").parts
            if package == "synthgen" and len(rel) > 1:
                continue
            parts = package.split(".") + list(rel)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The repository modules that ``name`` (at ``path``) imports, as dotted names in ``known``."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from X import y`: y may be a submodule of X (then the edge goes to it) or a name in X
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import synthgen.generator.models.e2i` -> that module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(packages: dict[str, Path] = PACKAGES) -> dict[str, set[str]]:
    files = module_files(packages)
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(graph[v])
    return seen


def room(module: str, graph: dict[str, set[str]]) -> str:
    """The room (sub-package) a module lives in: a package is its own room, a plain module its parent's."""
    return module if any(m.startswith(module + ".") for m in graph) else module.rpartition(".")[0]


def floors(graph: dict[str, set[str]]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The floors of the rooms and the upward arrows between them.

    A module's floor is the longest chain of imports below it, counting a step only where the chain
    changes rooms (the module graph has no circle, so this is well defined); a room's floor is the
    highest of its modules'. An arrow between rooms (room A imports room B) is *upward* when B's floor
    is not below A's: B also holds modules above A, so B is no layer under A, and a reader following
    the imports downward meets B on the way up again. Returns (room -> floor, sorted upward arrows).
    """
    depth: dict[str, int] = {}

    def module_floor(m: str) -> int:  # recursion as deep as the longest import chain (tens of modules)
        if m not in depth:
            depth[m] = 0  # a circle (none expected) would stop here instead of recursing forever
            depth[m] = max((module_floor(t) + (room(t, graph) != room(m, graph)) for t in graph[m]), default=0)
        return depth[m]

    room_floor: dict[str, int] = {}
    for m in graph:
        r = room(m, graph)
        room_floor[r] = max(room_floor.get(r, 0), module_floor(m))
    arrows = {(room(m, graph), room(t, graph)) for m, targets in graph.items() for t in targets}
    upward = sorted((a, b) for a, b in arrows if a != b and room_floor[b] >= room_floor[a])
    return room_floor, upward


#: what marks a strategy module: it registers a strategy (the other modules of strategies/ are the
#: helpers they share)
STRATEGY_MODULE_MARK = "@register_strategy"


def strategy_modules(graph: dict[str, set[str]]) -> list[str]:
    """The modules of generator/strategies/ that register a strategy (the others are its helpers)."""
    files = module_files()
    return sorted(m for m in graph if m.startswith("synthgen.generator.strategies.")
                  and STRATEGY_MODULE_MARK in files[m].read_text())


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_graph_reader_sees_the_known_edges(graph):
    """The reader resolves relative, package and submodule imports (else the checks below prove nothing)."""
    assert "synthgen.generator.plan" in graph["synthgen.generator.pipeline"]  # from .plan import ...
    assert "synthgen.generator.strategies.logical" in graph["synthgen.generator.strategies"]  # from . import logical
    assert "synthgen.generator.models.e2i" in graph["synthgen.generator.strategies.logical"]  # from ..models.e2i import ...
    assert "synthgen.generator" in graph["synthgen.generator.pipeline"]  # from . import __version__
    assert "synthgen.generator.training.e2i" in graph["synthgen.generator.cli"]  # imported inside a function


def test_generator_has_no_import_cycle(graph):
    cycles = [c for c in import_cycles(graph) if c[0].startswith("synthgen.generator")]
    assert cycles == [], "import circles in generator/: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_trainers_have_no_import_cycle(graph):
    cycles = [c for c in import_cycles(graph) if c[0].startswith("synthgen.trainers")]
    assert cycles == [], "import circles in trainers/: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_only_entry_points_import_the_method_table(graph):
    """trainers.methods imports every method; a module below it importing it would close a circle."""
    importers = sorted(m for m, targets in graph.items() if "synthgen.trainers.methods" in targets)
    assert importers == ["synthgen.trainers.cli"]
    assert {"synthgen.trainers.reconstruction", "synthgen.trainers.pbas"} <= graph["synthgen.trainers.methods"]


def test_build_path_never_reaches_training_or_trainers(graph):
    """What `synthgen build` can import: no training code (Lightning), nothing from trainers/."""
    build_path = reachable(graph, "synthgen.generator.pipeline")
    assert "synthgen.generator.strategies.logical" in build_path and "synthgen.generator.models.e2i" in build_path
    bad = sorted(m for m in build_path if m.startswith(("synthgen.generator.training", "synthgen.trainers")))
    assert bad == [], f"the build path imports {bad}"
    strategies = [m for m in graph if m.startswith("synthgen.generator.strategies")]
    assert not any(reachable(graph, m) & {m2 for m2 in graph if m2.startswith("synthgen.generator.training")} for m in strategies)


def test_the_cli_is_a_layer_over_the_api(graph):
    """`synthgen build` goes cli -> synthgen.api -> pipeline; the API trains the automatic generator (lazily),
    nothing below it imports it, and it never imports the trainers."""
    assert "synthgen.api" in graph["synthgen.generator.cli"] and "synthgen.api" in graph["synthgen"]
    assert {"synthgen.generator.pipeline", "synthgen.generator.training.auto"} <= graph["synthgen.api"]
    importers = sorted(m for m, targets in graph.items() if "synthgen.api" in targets)
    assert importers == ["synthgen", "synthgen.generator.cli"]
    assert not any(m.startswith("synthgen.trainers") for m in reachable(graph, "synthgen.api"))


def test_generator_imports_nothing_from_trainers(graph):
    bad = sorted((m, t) for m, targets in graph.items() if m.startswith("synthgen.generator") for t in targets if t.startswith("synthgen.trainers"))
    assert bad == []


def test_floors_count_room_changes_and_find_upward_arrows():
    """On a small graph whose answer is known: rooms a (a, a.x, a.y) and b (b, b.z)."""
    graph = {"a": set(), "a.x": {"b.z"}, "a.y": {"a.x"}, "b": set(), "b.z": {"a"}}
    room_floor, upward = floors(graph)
    # a.y -> a.x (same room) -> b.z (floor +1) -> a (floor +1): a.y sits on floor 2, so room a is on 2,
    # room b on 1; b.z imports a (floor 2 >= 1): an upward arrow; a -> b is not one
    assert room_floor == {"a": 2, "b": 1}
    assert upward == [("b", "a")]


def test_strategy_modules_import_no_other_strategy_module(graph):
    """A strategy module imports only shared helpers (base, geometry, perlin, texture, ssim_mask, ...):
    a change to one strategy then never reaches another."""
    modules = strategy_modules(graph)
    assert {"synthgen.generator.strategies.blend", "synthgen.generator.strategies.logical",
            "synthgen.generator.strategies.rotation"} <= set(modules)
    bad = sorted((m, t) for m in modules for t in graph[m] if t in modules)
    assert bad == [], f"strategy modules importing other strategy modules: {bad}"


#: the trainers' modules above the methods: the method table and `synthgen bench` (which trains two of them)
TRAINER_ENTRY_POINTS = ("synthgen.trainers.methods", "synthgen.trainers.bench")


def method_package(module: str) -> str | None:
    """``synthgen.trainers.pbas.model`` -> ``pbas``: the trainer method package a module belongs to
    (each sub-package of trainers/ is one method); None for the shared modules of trainers/."""
    parts = module.split(".")
    if parts[:2] != ["synthgen", "trainers"] or len(parts) < 3:
        return None
    return parts[2] if (PACKAGES["synthgen.trainers"] / parts[2] / "__init__.py").is_file() else None


def test_no_trainer_method_imports_another(graph):
    """What methods share lives in trainers/ (features.py, score_maps.py, feature_heads.py, losses.py ...),
    so a method can be read, changed or removed without following arrows into another method. Only the
    method table (trainers.methods) imports the methods."""
    crossing = sorted(
        (m, t) for m, targets in graph.items() for t in targets
        if method_package(m) and method_package(t) and method_package(m) != method_package(t)
    )
    assert crossing == [], "a trainer method imports another: " + "; ".join(f"{m} -> {t}" for m, t in crossing)
    shared_upward = sorted((m, t) for m, targets in graph.items() for t in targets
                           if m.startswith("synthgen.trainers.") and not method_package(m) and method_package(t)
                           and m not in TRAINER_ENTRY_POINTS)
    assert shared_upward == [], "a shared trainers module imports a method: " + "; ".join(f"{m} -> {t}" for m, t in shared_upward)



if __name__ == "__main__":
    # python tests/test_imports.py [REPO]: the floors and upward arrows of this repository, or of REPO
    # (a checkout from before the rename, whose folders generator/, trainers/, manifests/ were the packages)
    import sys

    if len(sys.argv) > 1:
        root = Path(sys.argv[1]).resolve()
        packages = {name: root / name for name in ("generator", "trainers", "manifests") if (root / name).is_dir()}
    else:
        packages = PACKAGES
    g = import_graph(packages)
    room_floor, upward = floors(g)
    print(f"{len(g)} modules, {len(room_floor)} rooms on {max(room_floor.values()) + 1} floors, "
          f"{len(upward)} upward arrows, cycles: {import_cycles(g)}")
    for r in sorted(room_floor, key=lambda r: (-room_floor[r], r)):
        print(f"  floor {room_floor[r]:2d}  {r}")
    for a, b in upward:
        print(f"  upward: {a} -> {b} (floor {room_floor[a]} -> {room_floor[b]})")
