"""Structural: imports follow the package layers of docs/contributing.md (AST scan of src/quanta).

- ONNX Runtime and LiteRT sessions are made only in ``quanta.runtime``: no other module imports
  ``onnxruntime`` or ``ai_edge_litert``;
- ``quanta.graph`` does not import ``quanta.diagnose`` (diagnose reads graph, never the reverse);
- ``quanta.quant`` (the math) imports nothing of quanta but itself and ``quanta.errors``;
- ``quanta.runtime`` imports none of the packages above it (diagnose, report, workflow, cli).

Imports inside functions count: they are the ones that used to hide a cycle. Each rule is a
function of the scanned modules, and the last tests run every rule on a tiny made-up package
to show it can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

import quanta

SRC = Path(quanta.__file__).parent

# NOTE: violations that exist today and are outside the change that added this test; each must
# leave this set when it is fixed (the test fails on a stale entry, so the set only shrinks).
KNOWN: set[str] = set()


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Every module name ``module`` imports, anywhere in its body; ``from a import b`` gives
    both ``a`` and ``a.b`` (b may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")
                package = package if is_package else package[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def scan(root: Path) -> dict[str, set[str]]:
    """Module name -> the modules it imports, for every ``.py`` file under ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = _imported(tree, name, path.name == "__init__.py")
    return modules


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def session_libraries_outside_runtime(modules: dict[str, set[str]]) -> set[str]:
    return {
        f"{module} imports {library}"
        for module, imports in modules.items()
        if not _within(module, "quanta.runtime")
        for library in ("onnxruntime", "ai_edge_litert")
        if any(_within(name, library) for name in imports)
    }


def graph_imports_diagnose(modules: dict[str, set[str]]) -> set[str]:
    return {
        f"{module} imports quanta.diagnose"
        for module, imports in modules.items()
        if _within(module, "quanta.graph") and any(_within(n, "quanta.diagnose") for n in imports)
    }


def quant_imports_beyond_quant(modules: dict[str, set[str]]) -> set[str]:
    allowed = ("quanta.quant", "quanta.errors")
    return {
        f"{module} imports {name}"
        for module, imports in modules.items()
        if _within(module, "quanta.quant")
        for name in imports
        if _within(name, "quanta") and name != "quanta"
        if not any(_within(name, a) for a in allowed)
    }


def runtime_imports_higher_layers(modules: dict[str, set[str]]) -> set[str]:
    higher = ("quanta.diagnose", "quanta.report", "quanta.workflow", "quanta.cli")
    return {
        f"{module} imports {name}"
        for module, imports in modules.items()
        if _within(module, "quanta.runtime")
        for name in imports
        if any(_within(name, h) for h in higher)
    }


RULES: list[Callable[[dict[str, set[str]]], set[str]]] = [
    session_libraries_outside_runtime,
    graph_imports_diagnose,
    quant_imports_beyond_quant,
    runtime_imports_higher_layers,
]


@pytest.fixture(scope="module")
def modules() -> dict[str, set[str]]:
    return scan(SRC)


def test_scan_sees_the_packages(modules: dict[str, set[str]]) -> None:
    assert {"quanta.graph.calibrate", "quanta.runtime.session", "quanta.quant"} <= set(modules)
    assert "onnxruntime" in modules["quanta.runtime.session"]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_imports_follow_the_layers(
    rule: Callable[[dict[str, set[str]]], set[str]], modules: dict[str, set[str]]
) -> None:
    found = rule(modules)
    new = found - KNOWN
    assert not new, f"imports against the package layers: {sorted(new)}"


def test_known_violations_are_still_there(modules: dict[str, set[str]]) -> None:
    found = set().union(*(rule(modules) for rule in RULES))
    fixed = KNOWN - found
    assert not fixed, f"fixed, so remove from KNOWN in this file: {sorted(fixed)}"


# --- each rule can fail: a made-up package with one violation of each ----------------------------

FAKE = {
    "quanta/__init__.py": "",
    "quanta/errors.py": "",
    "quanta/graph/__init__.py": "",
    "quanta/graph/calibrate.py": "def f():\n    import onnxruntime as ort\n",  # inside a function
    "quanta/graph/auto.py": "from quanta.diagnose.profile import profile_node_times\n",
    "quanta/quant/__init__.py": "from quanta.errors import QuantaError\n",  # allowed
    "quanta/quant/primitives.py": "from ..graph import calibrate\n",  # relative
    "quanta/runtime/__init__.py": "from quanta import report\n",
    "quanta/runtime/litert.py": "from ai_edge_litert.interpreter import Interpreter\n",  # allowed
    "quanta/cli/bench.py": "from ai_edge_litert import interpreter\n",
}
EXPECTED = {
    session_libraries_outside_runtime: {
        "quanta.graph.calibrate imports onnxruntime",
        "quanta.cli.bench imports ai_edge_litert",
    },
    graph_imports_diagnose: {"quanta.graph.auto imports quanta.diagnose"},
    quant_imports_beyond_quant: {
        "quanta.quant.primitives imports quanta.graph",
        "quanta.quant.primitives imports quanta.graph.calibrate",
    },
    runtime_imports_higher_layers: {"quanta.runtime imports quanta.report"},
}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_each_rule_catches_its_violation(
    rule: Callable[[dict[str, set[str]]], set[str]], tmp_path: Path
) -> None:
    for name, text in FAKE.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert rule(scan(tmp_path / "quanta")) == EXPECTED[rule]
