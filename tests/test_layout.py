"""The package's shape: no import cycles, no side effects at import, small modules, one registry.

The import graph is read from the source (every `import` and `from ... import`, at the top or
inside a function; `if TYPE_CHECKING:` blocks excluded), so a cycle through a lazy import fails
here too.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aelab"
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `name` imports."""
    is_package = path.name == "__init__.py"
    base = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names} & modules.keys()
            found.update(submodules)
            if len(submodules) < len(node.names):  # a name defined in `target` itself
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_import_graph_has_no_cycle():
    graph = _graph()
    assert len(graph) > 30 and graph["aelab.run"] >= {"aelab.rundir", "aelab.models"}
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("modules", ["public", "all"])
def test_import_changes_no_environment_and_no_thread_setting(modules):
    """`import aelab` and its public names, and every module under it, leave os.environ and torch's
    threads alone. For "all", scikit-learn is imported first: it sets KMP_* variables itself."""
    code = """
import importlib, json, os, pkgutil, sys
import torch
if sys.argv[1] == "all":
    import sklearn
before_env, before_threads = dict(os.environ), (torch.get_num_threads(), torch.get_num_interop_threads())
import aelab
aelab.load_run, aelab.train, aelab.resolve_config, aelab.create_model
for m in pkgutil.walk_packages(aelab.__path__, "aelab.") if sys.argv[1] == "all" else []:
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
changed = sorted(k for k in set(before_env) | set(os.environ) if before_env.get(k) != os.environ.get(k))
print(json.dumps({"env": changed, "threads": [torch.get_num_threads(), torch.get_num_interop_threads()],
                  "before": list(before_threads)}))
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code, modules], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["env"] == []
    assert result["threads"] == result["before"]


def test_cli_sets_the_openmp_policy_only_for_itself_and_keeps_the_users():
    code = ("import os, aelab.cli, sys; assert 'torch' not in sys.modules; "
            "aelab.cli.main(['report', '/nonexistent']); print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "PASSIVE", out.stderr
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert out.stdout.strip() == "ACTIVE", out.stderr
    # `train` leaves libgomp's default: `--threads auto` measures the step under it
    train = code.replace("['report', '/nonexistent']",
                         "['train', '--data-dir', '/nonexistent', '--out', '/nonexistent/x']")
    train = train.replace("os.environ['OMP_WAIT_POLICY']", "os.environ.get('OMP_WAIT_POLICY', 'unset')")
    out = subprocess.run([sys.executable, "-c", train], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "unset", out.stderr


def test_modules_are_small_or_say_why():
    long = []
    for name, path in _modules().items():
        lines = path.read_text().count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "longer than" not in doc.lower():
            long.append(f"{name}: {lines} lines")
    assert not long


@pytest.mark.parametrize("registry, names", [
    ("aelab.presets:PRESETS", {"seed", "seed-1st-try", "vae"}),
    ("aelab.models:MODELS", {"dense"}),
    ("aelab.models:KINDS", {"ae", "vae"}),
    ("aelab.samplers:SAMPLERS", {"normal", "gaussian", "gmm", "prior"}),
    ("aelab.data.registry:DATASETS", {"mnist", "fashion-mnist", "kmnist"}),
])
def test_registries_hold_their_names_and_refuse_unknown_ones(registry, names):
    import importlib

    from aelab.errors import AelabError

    module, attr = registry.split(":")
    reg = getattr(importlib.import_module(module), attr)
    assert names <= set(reg.names())
    with pytest.raises(AelabError, match=f"unknown {reg.kind} 'nope'; choose from {reg.names()[0]}"):
        reg.get("nope")


def test_cli_choices_come_from_the_registries():
    from aelab.cli import build_parser
    from aelab.models import MODELS
    from aelab.presets import PRESETS
    from aelab.samplers import SAMPLERS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    choices = {a.dest: a.choices for name in ("train", "sample") for a in sub[name]._actions if a.choices}
    assert choices["preset"] == PRESETS.names()
    assert choices["architecture"] == MODELS.names()
    assert choices["sampler"] == SAMPLERS.names()
