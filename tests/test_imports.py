"""Imports run one way, from the CLI down to ``spec``: no cycle, and no layer imports one above it.

The graph is read from the source (AST), function-level imports included, so a lazy import that
hides a cycle at import time is still caught. A new module must be given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mobilenet

PACKAGE = Path(mobilenet.__file__).parent

#: Lowest first. A module may import modules of its own layer or any layer below, never above.
#: ``"pkg.*"`` places every module of a package (its inner order is kept by the cycle test).
LAYERS: list[set[str]] = [
    {"spec", "labels", "extras"},
    {"cost", "checkpoint", "data", "data.*", "plots", "paper"},
    {"model"},
    # The importers and the runtimes: each runtime module writes its files (for export) and runs
    # them (for deploy), so fold_batchnorm comes from .model, never from .deploy.
    {"weights.registry", "weights.tflite", "weights.keras", "weights.timm", "weights.files", "quantize"},
    {"runtimes", "runtimes.*", "litert", "pte"},
    {"formats"},  # the one table of file formats, over the importers and the runtimes
    {"weights.loader", "weights", "export", "deploy", "evaluate", "predict"},
    {"builder", "bench", "train", "train.*"},
    # Tasks over the backbone sit above the classifier's modules and use the shared pieces (data,
    # the training loop, checkpoints, exports); nothing below knows of boxes.
    {"detection", "detection.*"},
    {"commands"},  # one function per subcommand, the detector's included
    {"cli", "__main__", ""},  # "" is the package itself, mobilenet/__init__.py
]


def layer_of(name: str) -> int | None:
    """The layer of module ``name``: listed by name, or inside a package listed as ``"pkg.*"``."""
    for i, names in enumerate(LAYERS):
        if name in names or any(n.endswith(".*") and name.startswith(n[:-1]) for n in names):
            return i
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The modules of ours an import statement names (``from . import x`` may name submodules)."""
    if isinstance(node, ast.Import):
        return [a.name.removeprefix("mobilenet").lstrip(".") for a in node.names if a.name.split(".")[0] == "mobilenet"]
    if node.level == 0:
        if not node.module or node.module.split(".")[0] != "mobilenet":
            return []
        base = node.module.removeprefix("mobilenet").lstrip(".")
    else:
        here = importer.split(".") if importer else []
        if not is_package:
            here = here[:-1]
        here = here[: len(here) - (node.level - 1)]
        base = ".".join(here + ([node.module] if node.module else []))
    return [base, *(f"{base}.{a.name}".lstrip(".") for a in node.names)]


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    names = {_module_name(f) for f in files}
    graph: dict[str, set[str]] = {}
    for f in files:
        name = _module_name(f)
        edges = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= {m for m in _resolve(name, f.name == "__init__.py", node) if m in names and m != name}
        graph[name] = edges
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "weights" in graph["builder"] and "weights.loader" in graph["weights"]
    assert "deploy" in graph["bench"]  # bench imports deploy inside its functions only


def test_no_import_cycle():
    cycle = _find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(m or "mobilenet" for m in cycle)


def test_every_module_has_a_layer():
    missing = sorted(name for name in import_graph() if layer_of(name) is None)
    assert not missing, f"modules {missing} have no layer in tests/test_imports.py LAYERS; add them where they belong"


def test_no_upward_import():
    graph = import_graph()
    upward = [
        f"{a or 'mobilenet'} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, deps in graph.items()
        for b in sorted(deps)
        if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)
    ]
    assert not upward, "imports must run downward:\n" + "\n".join(upward)


def test_detection_sits_above_the_classifier():
    """A detector uses the shared pieces; none of them may know of it."""
    detection = layer_of("detection")
    assert layer_of("detection.anything") == detection
    for shared in ("data", "checkpoint", "export", "train", "train.loop", "deploy", "model"):
        assert layer_of(shared) < detection


def test_the_bottom_stays_the_bottom():
    graph = import_graph()
    assert graph["spec"] == set()
    assert not {d.split(".")[0] for d in graph["model"]} & {"weights", "deploy", "export", "train", "cli", "builder"}
    assert not {d for d in graph["weights.registry"] if d.startswith("weights")}  # it finds files, never loads them


def test_every_relative_import_names_a_module():
    """A relative import that names no module (``from .spec`` inside a subpackage) fails only when
    that line runs, which for a function-level import may be long after a move."""
    files = sorted(PACKAGE.rglob("*.py"))
    names = {_module_name(f) for f in files}
    dangling = []
    for f in files:
        name = _module_name(f)
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                base, *members = _resolve(name, f.name == "__init__.py", node)
                if base not in names and not any(m in names for m in members):
                    dangling.append(f"{f.relative_to(PACKAGE)}:{node.lineno} from {'.' * node.level}{node.module or ''}")
    assert not dangling, "imports of modules that do not exist:\n" + "\n".join(dangling)


#: Run in a fresh interpreter: each module imported first, with the package's own ``__init__`` not
#: run (as if it imported nothing), after clearing the modules of ours the previous one loaded.
_IMPORT_FIRST = """
import importlib, importlib.util, pathlib, sys
root = pathlib.Path(sys.argv[1])
failed = []
for name in sys.argv[2:]:
    for m in [m for m in sys.modules if m == "mobilenet" or m.startswith("mobilenet.")]:
        del sys.modules[m]
    spec = importlib.util.spec_from_file_location("mobilenet", root / "__init__.py", submodule_search_locations=[str(root)])
    sys.modules["mobilenet"] = importlib.util.module_from_spec(spec)
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
"""


def test_every_module_imports_first():
    """The graph above does not see that importing ``pkg.sub`` runs ``pkg/__init__.py`` first: a
    package whose ``__init__`` imports something above its submodules hides a cycle that only the
    import order of ``mobilenet/__init__.py`` keeps from failing (``formats`` importing
    ``weights.tflite`` once ran ``weights/__init__``, whose loader imports ``formats``). So each
    module is imported first, on its own."""
    import subprocess
    import sys

    # __main__ reads the version from the package's own __init__, which this test keeps from running.
    names = ["mobilenet." + n for n in sorted(import_graph()) if n and n != "__main__"]
    run = subprocess.run([sys.executable, "-c", _IMPORT_FIRST, str(PACKAGE), *names], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not run.stdout.strip(), "modules that fail when imported first:\n" + run.stdout
