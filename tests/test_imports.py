"""Imports: the entry modules import cleanly, no tfrec module defines an absl
flag at import (only the entry modules' `define_flags` do, on the `FlagValues`
they are given), and the subpackages import each other without cycles."""

import ast
import collections
import importlib
import json
import subprocess
import sys

from absl import flags
from train_helpers import REPO_ROOT, subprocess_env

PACKAGE = REPO_ROOT / "tfrec"
ENTRY_MODULES = "tfrec, tfrec.train, tfrec.evaluate, tfrec.export, tfrec.serve, tfrec.demo, tfrec.data_tool"


def _module_name(path):
    """`tfrec/data/dataset.py` -> "tfrec.data.dataset"; `tfrec/data/__init__.py` -> "tfrec.data"."""
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return sorted(_module_name(path) for path in PACKAGE.rglob("*.py"))


def test_entry_modules_import_in_a_fresh_process():
    done = subprocess.run([sys.executable, "-c", f"import {ENTRY_MODULES}"], cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def new_flags(modules):
    """The names of the absl flags that importing `modules` adds to `flags.FLAGS`
    (TensorFlow, which defines flags of its own, is imported first)."""
    import tensorflow  # noqa: F401

    before = set(flags.FLAGS)
    for name in modules:
        importlib.import_module(name)
    return sorted(set(flags.FLAGS) - before)


def test_importing_tfrec_defines_no_flags():
    modules = _modules()
    assert len(modules) > 50 and "tfrec.data_tool" in modules and "tfrec.train" in modules
    assert new_flags(modules) == []


def test_importing_tfrec_defines_no_flags_in_a_fresh_process():
    # In this process other tests may have imported tfrec modules already.
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); from test_imports import new_flags; "
              "print(json.dumps(new_flags(sys.argv[2:])))")
    done = subprocess.run([sys.executable, "-c", script, str(REPO_ROOT / "tests"), *_modules()], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def _node(module):
    """The import-graph node of a module: its subpackage ("tfrec.data.dataset" -> "data"), a top-level
    module is its own node ("tfrec.train" -> "train"), and so is a command inside a subpackage, which
    runs as a process of its own ("tfrec.baselines.tfrs_runner" -> "baselines.tfrs_runner"); the package
    itself is "tfrec"."""
    parts = module.split(".")
    if len(parts) > 2 and _is_command(module):
        return ".".join(parts[1:])
    return parts[1] if len(parts) > 1 else "tfrec"


def _is_command(module):
    """Whether `module` is a file with a `__main__` block (`python -m module`)."""
    path = (REPO_ROOT / module.replace(".", "/")).with_suffix(".py")
    return path.is_file() and 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")


def _imported_modules(path, module):
    """The tfrec modules a file imports (anywhere in it, relative imports resolved)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for statement in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(statement, ast.Import):
            names = [alias.name for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom):
            if statement.level:
                base = ".".join(package[:len(package) - statement.level + 1] + [statement.module or ""]).rstrip(".")
            else:
                base = statement.module
            # `from tfrec import data` imports the subpackage; `from tfrec.data import schema` imports tfrec.data.
            names = [f"{base}.{alias.name}" for alias in statement.names] if base == "tfrec" else [base]
        else:
            continue
        for name in names:
            if name == "tfrec" or name.startswith("tfrec."):
                yield name, statement.lineno


def import_graph():
    """{node: {imported node: "file:line" of the first such import}} between the nodes of tfrec/."""
    graph = collections.defaultdict(dict)
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        for imported, line in _imported_modules(path, module):
            source, target = _node(module), _node(imported)
            if source != target:
                graph[source].setdefault(target, f"{path.relative_to(REPO_ROOT)}:{line}")
    return graph


def find_cycle(graph):
    """A list of nodes [a, b, ..., a] forming a cycle, or None."""
    state = {}  # node -> "active" while on the DFS path, "done" after

    def visit(node, path):
        state[node] = "active"
        for target in sorted(graph.get(node, {})):
            if state.get(target) == "active":  # back to a node on the current path
                on_path = path + [node]
                return on_path[on_path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [node])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_imports_are_resolved(tmp_path):
    path = tmp_path / "cli.py"
    path.write_text("import os\nimport tfrec.config\nfrom tfrec import train, data\nfrom . import schema\n"
                    "from ..models import build_model\nfrom .. import export\n\n"
                    "def f():\n    from tfrec.training.run_dir import load_run\n")
    imported = [name for name, _ in _imported_modules(path, "tfrec.data.cli")]
    assert imported == ["tfrec.config", "tfrec.train", "tfrec.data", "tfrec.data", "tfrec.models", "tfrec.export",
                        "tfrec.training.run_dir"]
    assert [_node(name) for name in imported] == ["config", "train", "data", "data", "models", "export", "training"]


def test_find_cycle_finds_a_cycle():
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"b": ""}}) == ["b", "c", "b"]
    assert find_cycle({"a": {"b": "", "c": ""}, "b": {"c": ""}, "d": {"b": ""}}) is None


def test_import_graph_of_the_subpackages_has_no_cycle():
    graph = import_graph()
    # The graph is the real one: the command lines use the library, the library not them.
    assert {"config", "data", "models"} <= set(graph["training"]) and "training" in graph["train"]
    # The reference baselines are scored by the evaluation step, not by the training.
    assert "baselines" not in graph["training"] and "baselines" in graph["evaluation"]
    assert {source for source, targets in graph.items() if "train" in targets} == {"demo"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between tfrec subpackages: " + " -> ".join(
        f"{a} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"
