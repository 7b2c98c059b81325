"""The library's layers, read from its own import statements (also those inside functions).

Bottom up: the shared modules (prompts, errors, options, the package's public API) <-
models/ and the media <- engine/ <- the app (command line, job files, batch). A module
imports its own layer and the layers below it: models/ and the media only shared
modules, engine/ those three. No module imports another in a circle, nothing in
`sam2long` imports the ComfyUI front end, and no module is over 450 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "sam2long"
MAX_LINES = 450

# Modules at the package's top level, by the layer they belong to; modules in a folder
# (engine/, models/, media/, app/) take its name.
TOP_LEVEL = {
    "sam2long": "shared",
    "sam2long.prompts": "shared",
    "sam2long.errors": "shared",
    "sam2long.options": "shared",
    "sam2long.limits": "shared",
    "sam2long.moved": "shared",  # the old flat module paths, deprecated  # frame-size limits: frames, plates and mask prompts
    "sam2long.__main__": "app",
}
FOLDERS = ("engine", "models", "media", "app")
MAY_IMPORT = {
    "shared": {"shared"},
    "models": {"models", "shared"},
    "media": {"media", "shared"},
    "engine": {"engine", "models", "media", "shared"},
    "app": {"app", "engine", "models", "media", "shared"},
}
FRONT_END = ("nodes", "comfy", "comfy_api", "comfy_extras", "folder_paths")


# --------------------------------------------------------------------------- reading the imports


def modules(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package by its __init__)."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(package_dir: Path) -> dict[str, list[tuple[str, int]]]:
    """Module -> [(imported module, line)]: each import statement anywhere in the file,
    resolved to the package's own module it names (external imports by their full name)."""
    known = modules(package_dir)
    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(_in_package(a.name, known), node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.append((sub if sub in known else _in_package(base, known), node.lineno))
        graph[name] = found
    return graph


def _in_package(name: str, known) -> str:
    """The longest prefix of `name` that is one of the package's modules (or `name`)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known:
            return ".".join(parts[:n])
    return name


def layer_of(name: str) -> str | None:
    if name in TOP_LEVEL:
        return TOP_LEVEL[name]
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FOLDERS else None


def internal_edges(graph) -> dict[str, set[str]]:
    return {m: {t for t, _ in targets if t in graph and t != m} for m, targets in graph.items()}


def upward_imports(graph) -> list[str]:
    problems = []
    for module, targets in graph.items():
        for target, line in targets:
            if target in graph and layer_of(target) not in MAY_IMPORT.get(layer_of(module), ()):
                problems.append(f"{module}:{line} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    return problems


def cycles(graph) -> list[list[str]]:
    """The import circles: each strongly connected group of modules (Tarjan), sorted."""
    edges = internal_edges(graph)
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(groups)


# --------------------------------------------------------------------------- the rules


GRAPH = imports(PACKAGE_DIR)


def test_every_module_has_a_layer():
    assert [m for m in GRAPH if layer_of(m) is None] == [], "add new top-level modules to TOP_LEVEL"


def test_no_import_runs_up_a_layer():
    assert upward_imports(GRAPH) == []


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_the_engine_never_reaches_a_checkpoint_format():
    # directly or through other modules: the engine takes a LoadedModel, never a file
    formats = {"sam2long.models." + m for m in ("weights", "checkpoints", "loading", "catalog", "sam3.checkpoint")}
    edges = internal_edges(GRAPH)
    for module in [m for m in GRAPH if layer_of(m) == "engine"]:
        seen, todo = set(), [module]
        while todo:
            for target in edges[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        assert seen & formats == set(), module


def test_the_library_never_imports_the_front_end():
    found = [f"{m}:{line} imports {t}" for m, targets in GRAPH.items() for t, line in targets
             if t.split(".")[0] in FRONT_END]
    assert found == []


def test_folder_packages_import_nothing_themselves():
    # so that importing one module of a folder never runs the rest of it
    inits = [m for m in GRAPH if m.count(".") and modules(PACKAGE_DIR)[m].name == "__init__.py"]
    assert inits and [(m, GRAPH[m]) for m in inits if GRAPH[m]] == []


@pytest.mark.parametrize(
    "path",
    sorted(str(f.relative_to(PACKAGE_DIR.parent)) for f in modules(PACKAGE_DIR).values()),
)
def test_no_module_is_over_the_size_limit(path):
    lines = len((PACKAGE_DIR.parent / path).read_text().splitlines())
    assert lines <= MAX_LINES, f"{path} has {lines} lines (limit {MAX_LINES}): split it by job"


def test_the_checks_find_circles_and_upward_imports(tmp_path):
    """The checks themselves, on a made-up package: a circle through an import inside a
    function, that import running up from models/ to engine/, and a relative import two
    levels up."""
    pkg = tmp_path / "sam2long"
    for folder in ("engine", "models"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "engine" / "tracker.py").write_text("from ..models import model\nfrom .. import errors\n")
    (pkg / "models" / "model.py").write_text("def f():\n    from ..engine.tracker import Tracker\n")
    graph = imports(pkg)
    assert graph["sam2long.engine.tracker"] == [("sam2long.models.model", 1), ("sam2long.errors", 2)]
    assert cycles(graph) == [["sam2long.engine.tracker", "sam2long.models.model"]]
    assert upward_imports(graph) == [
        "sam2long.models.model:2 (models) imports sam2long.engine.tracker (engine)"
    ]


def test_old_flat_module_paths_still_import_with_a_warning():
    import importlib
    import sys

    from sam2long.moved import MOVED

    for old, new in MOVED.items():
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
            module = importlib.import_module(old)
        assert module is importlib.import_module(new)


def test_an_old_path_leaves_the_module_its_own_spec():
    import importlib
    import sys
    import warnings

    sys.modules.pop("sam2long.plates", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("sam2long.plates")
    assert old.__spec__.name == "sam2long.media.plates" and old.__package__ == "sam2long.media"
