"""The package's shape: the layer rule, no import cycle, each subpackage importable alone, light entry points,
and the console script working from any directory."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "chatfreeze"
CORE = ("modeling", "freezing", "data", "facts", "fastpath", "retention", "evaluation")
OUTER = ("training", "cli", "chat", "publish", "studies")
SUBPACKAGES = CORE + OUTER
# The layers, lowest first: each subpackage (or top-level module) imports only those before it. "chatfreeze" is the
# package's own __init__ (its version; its public names are lazy and import nothing). The python -m shims
# (chatfreeze/plan.py, ...) and __main__ sit above cli; studies, the outermost, is imported by nothing (a test of its
# own, below). docs/architecture.md explains the order.
LAYERS = ("common", "timings", "progress", "rundir", "chatfreeze", "modeling", "generation", "freezing", "data", "facts", "fastpath", "evaluation",
          "retention", "publish", "training", "chat", "cli", "studies")
SHIMS = ("__main__", "evaluate", "merge", "plan", "plots", "push", "web")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def lazy_exports(package: str) -> dict[str, str]:
    """A lazy package ``__init__``'s ``_EXPORTS``, read from its source, as name -> submodule."""
    init = REPO_ROOT.joinpath(*package.split("."), "__init__.py")
    if not init.is_file():
        return {}
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_EXPORTS" for t in node.targets):
            return {name.value: module.value for module, names in zip(node.value.keys, node.value.values, strict=True)
                    for name in names.elts}
    return {}


def import_graph() -> dict[str, set[str]]:
    """Every chatfreeze module -> the chatfreeze modules it imports, anywhere in its code (functions too).
    ``from pkg import name`` of a lazily exported name counts as importing the submodule that defines it."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "metrics" not in p.relative_to(PACKAGE).parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    prefix = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(prefix + ([node.module] if node.module else []))
                targets = [(base, alias.name) for alias in node.names]
            else:
                continue
            for target, member in targets:
                if not target.startswith("chatfreeze"):
                    continue
                if member and f"{target}.{member}" in modules:
                    edges.add(f"{target}.{member}")
                elif member and member in lazy_exports(target):
                    edges.add(f"{target}.{lazy_exports(target)[member]}")
                elif target in modules:
                    edges.add(target)
        graph[name] = edges - {name}
    return graph


def test_core_never_imports_the_outer_layers():
    graph = import_graph()
    offences = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.split(".")[1:2] and module.split(".")[1] in CORE or module in ("chatfreeze.common", "chatfreeze.rundir",
                                                                                  "chatfreeze.generation")
        for target in targets
        if target.split(".")[1:2] and target.split(".")[1] in OUTER
    ]
    assert not offences, offences


def layer_of(module: str) -> str:
    """The layer a module belongs to: its subpackage, or the top-level module itself. A ``__main__`` module
    (``python -m chatfreeze.chat``) is an entry point like the top-level shims: imported by nothing, above cli."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "__main__"
    return "chatfreeze" if len(parts) == 1 else parts[1]


def layer_offences(graph: dict[str, set[str]]) -> list[str]:
    """Every import that goes up (or sideways into another layer at the same height) in ``LAYERS``."""
    rank = {name: index for index, name in enumerate(LAYERS)} | dict.fromkeys(SHIMS, len(LAYERS))
    offences = []
    for module, targets in sorted(graph.items()):
        source = layer_of(module)
        for target in sorted(targets):
            into = layer_of(target)
            if into != source and rank[into] >= rank[source]:
                offences.append(f"{module} ({source}) imports {target} ({into})")
    return offences


def test_every_layer_imports_only_the_layers_below_it():
    graph = import_graph()
    unplaced = {layer_of(module) for module in graph} - set(LAYERS) - set(SHIMS)
    assert not unplaced, f"place these in LAYERS (tests/test_layout.py) and docs/architecture.md: {unplaced}"
    offences = layer_offences(graph)
    assert not offences, offences


def test_the_layer_check_sees_an_upward_import():
    """The check above must be able to fail: a core module importing an outer one, or a lower subpackage importing
    one above it (fastpath -> retention was such a cycle), is reported."""
    fake = {"chatfreeze.fastpath.loss": {"chatfreeze.retention.kl_to_base"},
            "chatfreeze.retention.kl_to_base": {"chatfreeze.fastpath.loss"},
            "chatfreeze.chat.terminal": {"chatfreeze.cli.chat"}}
    assert layer_offences(fake) == [
        "chatfreeze.chat.terminal (chat) imports chatfreeze.cli.chat (cli)",
        "chatfreeze.fastpath.loss (fastpath) imports chatfreeze.retention.kl_to_base (retention)",
    ]


def test_nothing_in_the_package_imports_the_studies():
    graph = import_graph()
    offences = [f"{module} imports {target}" for module, targets in graph.items()
                if not module.startswith("chatfreeze.studies") for target in targets
                if target.startswith("chatfreeze.studies")]
    assert not offences, offences


def test_rundir_common_timings_and_progress_import_nothing_of_chatfreeze():
    graph = import_graph()
    assert graph["chatfreeze.common"] == set()
    assert graph["chatfreeze.timings"] == set()
    assert graph["chatfreeze.progress"] == {"chatfreeze.timings"}  # every progress phase is timed
    assert graph["chatfreeze.rundir"] == set()


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if not state.get(target):
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            cycle = visit(node)
            assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_sees_a_cycle(monkeypatch):
    """The check above must be able to fail: a graph with a cycle through a lazy export is caught."""
    fake = {"chatfreeze.a": {"chatfreeze.b"}, "chatfreeze.b": {"chatfreeze.a"}}
    monkeypatch.setattr(sys.modules[__name__], "import_graph", lambda: fake)
    with pytest.raises(AssertionError, match="chatfreeze.a -> chatfreeze.b -> chatfreeze.a"):
        test_no_import_cycle()


def test_no_package_function_is_longer_than_a_screen():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{module_name(path)}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long


@pytest.mark.slow
def test_each_subpackage_imports_alone_in_a_fresh_interpreter():
    code = ("import importlib, pkgutil, sys\n"
            "package = importlib.import_module(sys.argv[1])\n"
            "for info in pkgutil.walk_packages(getattr(package, '__path__', []), package.__name__ + '.'):\n"
            "    if not info.name.endswith('__main__'):\n"
            "        importlib.import_module(info.name)\n")
    for name in (*SUBPACKAGES, "common", "timings", "progress", "rundir", "generation"):
        result = subprocess.run([sys.executable, "-c", code, f"chatfreeze.{name}"], capture_output=True,
                                text=True, cwd=REPO_ROOT, timeout=300)
        assert result.returncode == 0, (name, result.stderr[-2000:])


def imported_modules(args: list[str]) -> set[str]:
    """The modules ``python -X importtime ARGS`` imported (its report on stderr), checking it exited 0."""
    result = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.slow
def test_push_and_chat_help_do_not_import_the_training_stack():
    push = imported_modules(["-m", "chatfreeze.push", "--help"])
    assert "chatfreeze.publish.hub" in push  # the check sees what the command imports
    assert not {"torch", "transformers", "transformers.trainer", "chatfreeze.training"} & push
    chat = imported_modules(["-m", "chatfreeze.chat", "--help"])
    assert "chatfreeze.chat.terminal" in chat
    assert not {"transformers.trainer", "transformers.training_args", "chatfreeze.training", "peft"} & chat


@pytest.mark.slow
def test_console_script_trains_from_another_directory(tmp_path, tiny_model_dir):
    """`chatfreeze train` with the packaged default recipe, started outside the repository: the recipe's data
    paths resolve against the recipe's own folder, the run goes under the current directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "chatfreeze", "train", "--model_name_or_path", str(tiny_model_dir),
               "--num_frozen_layers", "2", "--max_steps", "1", "--max_train_samples", "16", "--max_eval_samples", "4", "--eval_before_after",
               "false", "--replay_ratio", "0", "--facts_per_fact", "0", "--text_replay_ratio", "0", "--output_dir",
               "outputs/run", "--report_to", "none", "--use_cpu", "true"]
    # Structural, like the other such tests: a random tiny model replies with nothing (no replay) and writes no
    # passages, and the default's drills would only slow the one step down.
    result = subprocess.run(command, capture_output=True, text=True, cwd=elsewhere, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    run_info = json.loads((elsewhere / "outputs" / "run" / "run_info.json").read_text())
    assert run_info["data"]["train"]["dialogues_in"] == 16  # the packaged recipe's data, first 16 dialogues
    assert Path(run_info["data"]["args"]["dataset"]) == (REPO_ROOT / "data" / "train.jsonl").resolve()
    assert run_info["metrics"]["train_loss"] > 0
    assert not run_info["data"]["text_replay"] and not (run_info["facts"] or {}).get("drills")  # both turned off


def test_console_script_dispatches_and_refuses_unknown_commands(capsys):
    from chatfreeze.cli import main

    assert main(["--help"]) == 0 and "train" in capsys.readouterr().out
    assert main(["tran"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command 'tran'")
