"""The layering of the source tree, read from the import statements with ``ast``.

Rules (docs/architecture.md):

* ``bitline.hw`` imports neither ``bitline.sw`` nor ``bitline.sim``;
* ``bitline.sw`` does not import ``bitline.sim``, except inside ``bitline.sw.cli`` and
  ``bitline.sw.api`` (the Python API, the commands' programmatic face: it runs the golden
  model and the executor as ``bitline run`` does), and there only lazily, in the command or
  function that needs it (not at module level);
* no cycle among the modules' module-level imports.

Every import counts for the first two rules, at module level or inside a function; only
module-level imports (including those in class bodies and top-level ``if``/``try``, not those
under ``if TYPE_CHECKING:``) count for cycles, because a deferred import cannot make one at
import time. Module names come from the ``package-dir`` mapping of ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("bitline.hw", "bitline.sw", "bitline.sim")


@dataclass(frozen=True)
class Import:
    """One ``import`` of a ``bitline`` module: who, what, where, and whether at module level."""

    source: str
    target: str
    file: Path
    line: int
    module_level: bool

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """Return ``{package: folder}`` for the code packages of ``pyproject``'s package-dir."""
    mapping = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"]
    return {package: pyproject.parent / folder for package, folder in mapping.items()
            if package in LAYERS}


def module_files(packages: dict[str, Path]) -> dict[str, Path]:
    """Return ``{module name: file}`` for every ``.py`` file under the package folders."""
    modules = {}
    for package, folder in packages.items():
        for file in sorted(folder.rglob("*.py")):
            parts = list(file.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = file
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module):
    """Yield ``(node, module_level)`` for every import statement of ``tree``."""
    stack = [(node, True) for node in tree.body]
    while stack:
        node, module_level = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, module_level
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            module_level = False
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend((child, False) for child in node.body)
            stack.extend((child, module_level) for child in node.orelse)
            continue
        stack.extend((child, module_level) for child in ast.iter_child_nodes(node))


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """Return the absolute module name a (possibly relative) ``from`` import names."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def find_imports(modules: dict[str, Path]) -> list[Import]:
    """Return every import of a ``bitline`` module by the given modules.

    ``from package import name`` counts as an import of ``package.name`` when that is a
    module, else of ``package``.
    """
    found = []
    for module, file in modules.items():
        tree = ast.parse(file.read_text(), filename=str(file))
        for node, module_level in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(node, module, file.name == "__init__.py")
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                           else base for alias in node.names]
            for target in dict.fromkeys(targets):
                if target == "bitline" or target.startswith("bitline."):
                    found.append(Import(module, target, file, node.lineno, module_level))
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layering_violations(imports: list[Import]) -> list[str]:
    """Return one message per import that breaks the hw / sw / sim layering."""
    messages = []
    for item in imports:
        if _within(item.source, "bitline.hw"):
            banned = [p for p in ("bitline.sw", "bitline.sim") if _within(item.target, p)]
        elif _within(item.source, "bitline.sw.cli") or item.source == "bitline.sw.api":
            if _within(item.target, "bitline.sim") and item.module_level:
                where = ("bitline.sw.api imports bitline.sim only inside the function that "
                         "needs it" if item.source == "bitline.sw.api" else
                         "bitline.sw.cli imports bitline.sim only inside the command that "
                         "needs it")
                messages.append(f"{item.where()}: {item.source} imports {item.target} at "
                                f"module level ({where})")
            continue
        elif _within(item.source, "bitline.sw"):
            banned = [p for p in ("bitline.sim",) if _within(item.target, p)]
        else:
            banned = []
        if banned:
            layer = ".".join(item.source.split(".")[:2])
            messages.append(f"{item.where()}: {item.source} imports {item.target} "
                            f"({layer} must not import {banned[0]})")
    return sorted(messages)


def import_cycles(imports: list[Import], modules: dict[str, Path]) -> list[str]:
    """Return one message per cycle of module-level imports, naming each edge's file:line."""
    edges: dict[str, dict[str, Import]] = {module: {} for module in modules}
    for item in imports:
        if item.module_level and item.target in modules and item.target != item.source:
            edges[item.source].setdefault(item.target, item)
    # Tarjan's strongly connected components, iterative (deep graphs must not hit the
    # recursion limit)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return [_describe_cycle(component, edges) for component in components]


def _describe_cycle(component: list[str], edges: dict[str, dict[str, Import]]) -> str:
    """Return one concrete cycle through ``component`` as ``a -> b (file:line) -> ... -> a``."""
    members = set(component)
    start = component[0]
    # breadth-first search for the shortest way back to start
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(edges[node]):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                path.reverse()
                hops = [f"{a} -> {b} ({edges[a][b].where()})"
                        for a, b in zip(path, path[1:] + [start])]
                return "import cycle: " + "; ".join(hops)
            if child in members and child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")  # unreachable for an SCC


def check_tree(pyproject: Path) -> tuple[list[str], list[str]]:
    """Return ``(layering violations, import cycles)`` of the tree ``pyproject`` describes."""
    modules = module_files(package_dirs(pyproject))
    imports = find_imports(modules)
    return layering_violations(imports), import_cycles(imports, modules)


# ------------------------------------------------------------------------------ the tree
def test_source_tree_has_modules():
    modules = module_files(package_dirs(ROOT / "pyproject.toml"))
    assert {"bitline.hw.spec.config", "bitline.sw.cli", "bitline.sim.golden"} <= set(modules)


def test_hw_and_sw_respect_the_layering():
    violations, _ = check_tree(ROOT / "pyproject.toml")
    assert not violations, "\n".join(violations)


def test_no_import_cycles():
    _, cycles = check_tree(ROOT / "pyproject.toml")
    assert not cycles, "\n".join(cycles)


# ------------------------------------------------------------------------------ the checker
FAKE_PYPROJECT = """
[tool.setuptools.package-dir]
"bitline.hw" = "hw"
"bitline.sw" = "sw"
"bitline.sim" = "sim"
"bitline.examples" = "examples"
"""


def write_tree(root: Path, files: dict[str, str]) -> Path:
    (root / "pyproject.toml").write_text(FAKE_PYPROJECT)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pyproject.toml"


def test_checker_reports_each_kind_of_violation(tmp_path):
    pyproject = write_tree(tmp_path, {
        "hw/__init__.py": "",
        "hw/spec.py": "import numpy\n",
        "hw/top.py": "from bitline.hw import spec\nfrom bitline.sw.flow import compile_model\n",
        "hw/late.py": "def f():\n    import bitline.sim.golden\n",
        "sw/__init__.py": "",
        "sw/flow.py": "from bitline.hw.spec import x\n\n\ndef run():\n"
                      "    from bitline.sim import golden\n",
        "sw/cli/__init__.py": "def main():\n    from bitline.sim.golden import run\n",
        "sw/cli/eager.py": "import click\nfrom bitline.sim.rtl import backend\n",
        "sim/__init__.py": "",
        "sim/golden.py": "from . import executor\n",
        "sim/executor.py": "from .analog import Device\n",
        "sim/analog.py": "import bitline.sim.golden\n",
        "sim/lazy_a.py": "from bitline.sim import lazy_b\n",
        "sim/lazy_b.py": "def f():\n    from bitline.sim import lazy_a\n",
        "sim/typed_a.py": "from typing import TYPE_CHECKING\nfrom bitline.sim import typed_b\n",
        "sim/typed_b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                          "    from bitline.sim import typed_a\n",
    })
    violations, cycles = check_tree(pyproject)
    assert violations == [
        f"{tmp_path / 'hw/late.py'}:2: bitline.hw.late imports bitline.sim.golden "
        "(bitline.hw must not import bitline.sim)",
        f"{tmp_path / 'hw/top.py'}:2: bitline.hw.top imports bitline.sw.flow "
        "(bitline.hw must not import bitline.sw)",
        f"{tmp_path / 'sw/cli/eager.py'}:2: bitline.sw.cli.eager imports bitline.sim.rtl at "
        "module level (bitline.sw.cli imports bitline.sim only inside the command that needs "
        "it)",
        f"{tmp_path / 'sw/flow.py'}:5: bitline.sw.flow imports bitline.sim.golden "
        "(bitline.sw must not import bitline.sim)",
    ]
    assert cycles == [
        f"import cycle: bitline.sim.analog -> bitline.sim.golden ({tmp_path / 'sim/analog.py'}:1); "
        f"bitline.sim.golden -> bitline.sim.executor ({tmp_path / 'sim/golden.py'}:1); "
        f"bitline.sim.executor -> bitline.sim.analog ({tmp_path / 'sim/executor.py'}:1)"
    ]


def test_checker_allows_the_api_lazy_sim_imports_only(tmp_path):
    """bitline.sw.api may import bitline.sim inside a function, like bitline.sw.cli; a
    module-level import is a violation, and any other sw module stays banned."""
    pyproject = write_tree(tmp_path, {
        "sw/__init__.py": "",
        "sw/api.py": "import numpy\nfrom bitline.sim import golden\n\n\ndef run():\n"
                     "    from bitline.sim.executor import run_executor\n",
        "sw/apix.py": "def run():\n    from bitline.sim import golden\n",
        "sim/__init__.py": "",
        "sim/golden.py": "",
        "sim/executor.py": "",
    })
    violations, cycles = check_tree(pyproject)
    assert violations == [
        f"{tmp_path / 'sw/api.py'}:2: bitline.sw.api imports bitline.sim.golden at module "
        "level (bitline.sw.api imports bitline.sim only inside the function that needs it)",
        f"{tmp_path / 'sw/apix.py'}:2: bitline.sw.apix imports bitline.sim.golden "
        "(bitline.sw must not import bitline.sim)",
    ]
    assert cycles == []


def test_checker_passes_a_clean_tree(tmp_path):
    pyproject = write_tree(tmp_path, {
        "hw/__init__.py": "from bitline.hw.spec import config\n",
        "hw/spec/__init__.py": "",
        "hw/spec/config.py": "import math\n",
        "sw/__init__.py": "",
        "sw/mapping.py": "from bitline.hw.spec.config import Config\n",
        "sim/__init__.py": "",
        "sim/golden.py": "from bitline.sw import mapping\nfrom bitline.hw.spec import config\n",
    })
    assert check_tree(pyproject) == ([], [])
