"""The package's shape: light commands, no import cycles, light sub-packages, small modules.

* Every console entry point's ``--help`` (and ``mnist-exp --cfg job``) loads neither
  TensorFlow, Keras nor MLflow; the entry points are read from ``pyproject.toml`` when the
  test runs, so they follow the scripts wherever they move.
* The architecture, read from the source with :mod:`ast` (nothing is imported): no import
  cycles among ``mnist_experiments`` modules, the light sub-packages never import anything
  heavy at module level, and no module is over ``MAX_LINES`` lines.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

import pytest
import yaml

from conftest import REPO, cli_env

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PACKAGE = "mnist_experiments"
PACKAGE_DIR = REPO / PACKAGE
HEAVY_THIRD_PARTY = ("tensorflow", "keras", "mlflow")
# what a command's --help and --cfg job must not load either: NumPy alone is ~0.08 s of a
# 0.5 s budget (the config schema once loaded it through the data package)
NOT_AT_START = HEAVY_THIRD_PARTY + ("numpy",)


# ---------------------------------------------------------------------------
# Entry points: --help and --cfg job load nothing heavy
# ---------------------------------------------------------------------------

def console_scripts() -> Dict[str, str]:
    """``[project.scripts]`` of pyproject.toml: name -> ``module:function``."""
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


# What a script's output must show, beyond a zero exit code and no heavy module.
EXPECTED_OUTPUT = {
    "mnist-exp-evaluate": ["models:/<name>@<alias>"],
    "mnist-exp-reproduce": ["RUN", "--allow-data-change"],
}

# Runs the console script's function as the installed script does (``sys.argv`` set, the
# function called), then reports its exit code and every heavy module it loaded.
PROBE = """
import importlib, json, sys
target, name, *args = sys.argv[1:]
module, _, function = target.partition(":")
sys.argv = [name, *args]
code = 0
try:
    code = getattr(importlib.import_module(module), function)()
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in %r)
sys.stdout.flush()
print("\\nPROBE " + json.dumps({"code": code if isinstance(code, (int, type(None))) else str(code),
                               "heavy": heavy}), file=sys.stderr)
""" % (NOT_AT_START,)


def _cases() -> Iterator:
    for name, target in console_scripts().items():
        yield pytest.param(name, target, ["--help"], id=f"{name} --help")
        if name == "mnist-exp":
            yield pytest.param(name, target, ["--cfg", "job", "data=digits"],
                               id=f"{name} --cfg job")


@pytest.mark.parametrize("name, target, args", list(_cases()))
def test_command_loads_nothing_heavy(name, target, args, tmp_path):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", PROBE, target, name, *args], cwd=tmp_path,
                            env=cli_env(), capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stderr.rsplit("PROBE ", 1)[-1])
    assert report["code"] in (0, None), (report, result.stderr[-4000:])
    assert report["heavy"] == [], f"{name} {' '.join(args)} imported {report['heavy']}"
    assert result.stdout.strip(), "nothing printed"
    if args == ["--help"]:
        for needle in EXPECTED_OUTPUT.get(name, []):
            assert needle in result.stdout, (needle, result.stdout)
    else:
        assert yaml.safe_load(result.stdout)["data"]["name"] == "digits"
    assert not list(tmp_path.iterdir()), "wrote files"  # no store, no outputs/
    assert elapsed < 15, f"{elapsed:.1f}s"  # no TensorFlow: a second or two


def test_every_command_is_probed():
    """mnist-exp and the four workflow commands are console scripts (so probed above)."""
    names = set(console_scripts())
    assert {"mnist-exp", "mnist-exp-report", "mnist-exp-evaluate", "mnist-exp-predict",
            "mnist-exp-reproduce"} <= names, names


# ---------------------------------------------------------------------------
# The import graph, from the source
# ---------------------------------------------------------------------------

def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: Dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    source: str       # the importing module
    target: str       # the imported module (a submodule when ``from pkg import mod``)
    line: int
    module_level: bool  # runs when the module is imported (not inside a function)

    def where(self) -> str:
        path = MODULES[self.source].relative_to(REPO)
        return (f"{path}:{self.line} imports {self.target}"
                f"{'' if self.module_level else ' (in a function)'}")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(name: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(name: str) -> List[Import]:
    """Every import a module makes (imports under ``if TYPE_CHECKING:`` never run: left out)."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found: List[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, module_level)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(name, alias.name, node.lineno, module_level))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(name, sub if sub in MODULES else base, node.lineno,
                                    module_level))
        inner = module_level and not isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, True)
    return found


def _own_module(target: str) -> Optional[str]:
    """The ``mnist_experiments`` module an import target names (its longest known prefix)."""
    parts = target.split(".")
    if parts[0] != PACKAGE:
        return None
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) or None


def import_graph() -> Dict[str, Dict[str, Import]]:
    """module -> {imported module: the first import of it}, own modules only."""
    graph: Dict[str, Dict[str, Import]] = {name: {} for name in MODULES}
    for name in MODULES:
        for imp in imports_of(name):
            target = _own_module(imp.target)
            if target and target != name:
                graph[name].setdefault(target, imp)
    return graph


def _strongly_connected(graph: Dict[str, Dict[str, Import]]) -> List[List[str]]:
    """Tarjan's algorithm: the components with more than one module."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


def _a_cycle(graph: Dict[str, Dict[str, Import]], component: List[str]) -> List[Import]:
    """One shortest cycle through the component's first module, as its imports."""
    members, start = set(component), component[0]
    paths: Dict[str, List[Import]] = {start: []}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w, imp in sorted(graph[v].items()):
            if w == start:
                return paths[v] + [imp]
            if w in members and w not in paths:
                paths[w] = paths[v] + [imp]
                queue.append(w)
    raise AssertionError(f"no cycle in {component}")  # cannot happen in a component


def test_no_import_cycles():
    graph = import_graph()
    assert sum(len(edges) for edges in graph.values()) > len(MODULES) / 2  # a graph was read
    cycles = []
    for component in _strongly_connected(graph):
        cycle = _a_cycle(graph, component)
        chain = " -> ".join([cycle[0].source] + [imp.target for imp in cycle])
        cycles.append(f"{chain}\n      " + "\n      ".join(imp.where() for imp in cycle)
                      + f"\n    (component: {', '.join(component)})")
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


# ---------------------------------------------------------------------------
# Light sub-packages import nothing heavy at module level
# ---------------------------------------------------------------------------

LIGHT_PACKAGES = ["config", "data", "launch", "commands", "figures"]
LIGHT_MODULES = ["errors", "compat", "compat.slurm", "terminal", "tracking.store", "tracking.preflight",
                 "tracking.owner", "tracking.store_template"]
HEAVY_PACKAGES = ["models", "training", "tracking", "workflows"]
HEAVY_EXCEPTIONS = ["tracking.store", "tracking.preflight", "tracking.owner",
                    "tracking.store_template"]


def light_modules() -> List[str]:
    """The light modules, and the packages that importing them runs (``__init__``)."""
    light = set()
    for name in MODULES:
        relative = name[len(PACKAGE) + 1:]
        if relative.split(".")[0] in LIGHT_PACKAGES or relative in LIGHT_MODULES:
            light.add(name)
            parts = name.split(".")
            light.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return sorted(light & set(MODULES))


def _heavy(target: str) -> bool:
    if target.split(".")[0] in HEAVY_THIRD_PARTY:
        return True
    own = _own_module(target)
    if own is None:
        return False
    relative = own[len(PACKAGE) + 1:]
    if any(relative == e or relative.startswith(e + ".") for e in HEAVY_EXCEPTIONS):
        return False
    return any(relative == h or relative.startswith(h + ".") for h in HEAVY_PACKAGES)


def test_the_light_modules_are_found():
    light = light_modules()
    for expected in ("config", "data", "launch", "commands", "figures", "errors",
                     "tracking.store"):
        assert any(m == f"{PACKAGE}.{expected}" or m.startswith(f"{PACKAGE}.{expected}.")
                   for m in light), (expected, light)
    # (a light module's parent packages are light too: importing it runs their __init__)
    parents = {m for m in light if MODULES[m].name == "__init__.py"
               and any(o.startswith(m + ".") for o in light)}
    assert not [m for m in light if m not in parents and _heavy(m)], light
    assert _heavy(f"{PACKAGE}.tracking.runs") and _heavy("mlflow.tracking")
    assert not _heavy(f"{PACKAGE}.tracking.store")
    assert not _heavy(f"{PACKAGE}.tracking.preflight")


def test_light_modules_import_nothing_heavy_at_module_level():
    found = [imp.where() for name in light_modules() for imp in imports_of(name)
             if imp.module_level and _heavy(imp.target)]
    assert not found, ("heavy imports at module level in light modules:\n  "
                       + "\n  ".join(found))


# ---------------------------------------------------------------------------
# Module size
# ---------------------------------------------------------------------------

MAX_LINES = 400


def test_no_module_is_over_max_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    over = sorted(((n, name) for name, n in sizes.items() if n > MAX_LINES), reverse=True)
    assert not over, f"modules over {MAX_LINES} lines: " + ", ".join(
        f"{MODULES[name].relative_to(REPO)} ({n})" for n, name in over)
