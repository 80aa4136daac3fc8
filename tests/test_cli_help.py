"""``--help`` of every command: exits 0 with its usage on stdout, however its help strings are written.

argparse %-formats each help string, so a bare ``%`` ("0.02 = 2%") once crashed ``chatfreeze train --help``; the
tests here add such strings to every command's parser and to a dataclass of options, so that cannot come back.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chatfreeze.cli import COMMANDS
from chatfreeze.cli import main as cli_main
from chatfreeze.common import literal_percents

REPO_ROOT = Path(__file__).resolve().parents[1]

# Each command's parser factory (module, function): the tests wrap it to add an option with an awkward help.
PARSERS = {
    "train": ("chatfreeze.training.arguments", "make_parser"),
    "chat": ("chatfreeze.chat.terminal", "build_parser"),
    "web": ("chatfreeze.chat.web", "build_parser"),
    "plan": ("chatfreeze.cli.plan", "make_parser"),
    "evaluate": ("chatfreeze.cli.evaluate", "make_parser"),
    "push": ("chatfreeze.cli.push", "make_parser"),
    "plots": ("chatfreeze.cli.plots", "make_parser"),
    "facts": ("chatfreeze.cli.facts", "build_parser"),
    "merge": ("chatfreeze.cli.merge", "make_parser"),
}
AWKWARD_HELP = "Keep 100% of it (0.02 = 2%); 50%-off, %s and %d stay text; default %(default)s."


def run_help(argv: list[str], capsys) -> tuple[int, str, str]:
    """``chatfreeze ARGV`` in-process: (exit status, stdout, stderr); argparse's --help exits via SystemExit."""
    try:
        code = cli_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return (0 if code is None else code), captured.out, captured.err


def test_every_command_has_its_parser_listed_here():
    assert set(PARSERS) == set(COMMANDS)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_exits_0_with_usage_on_stdout(command, capsys):
    code, out, err = run_help([command, "--help"], capsys)
    assert code == 0, err[-2000:]
    assert out.startswith("usage: "), out[:500]
    assert "--help" in out and not err.strip(), err[-2000:]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_prints_a_bare_percent_in_any_command(command, capsys, monkeypatch):
    module_name, factory_name = PARSERS[command]
    module = importlib.import_module(module_name)
    factory = getattr(module, factory_name)

    def with_awkward_option(*args, **kwargs):
        parser = factory(*args, **kwargs)
        parser.add_argument("--awkward", default="7", help=AWKWARD_HELP)
        return parser

    monkeypatch.setattr(module, factory_name, with_awkward_option)
    code, out, err = run_help([command, "--help"], capsys)
    assert code == 0, err[-2000:]
    text = " ".join(out.split())  # argparse wraps long help over several lines
    assert "Keep 100% of it (0.02 = 2%); 50%-off, %s and %d stay text; default 7." in text, text[-3000:]


@dataclass
class PercentOptions:
    keep_share: float = field(default=0.5, metadata={"help": "Share kept (0.02 = 2%, 1 = 100%)."})
    window: int = field(default=8, metadata={"help": "Tokens per window, 100%% literal text already escaped."})


def test_a_dataclass_field_with_a_bare_percent_renders_through_the_train_parser():
    from chatfreeze.training.arguments import ARGUMENT_CLASSES, make_parser

    text = " ".join(make_parser((*ARGUMENT_CLASSES, PercentOptions)).format_help().split())
    assert "Share kept (0.02 = 2%, 1 = 100%). (default: 0.5)" in text
    assert "Tokens per window, 100% literal text already escaped. (default: 8)" in text


def test_literal_percents_keeps_argparse_placeholders():
    assert literal_percents("2%)") == "2%%)"
    assert literal_percents("%(default)s and %(prog)s") == "%(default)s and %(prog)s"
    assert literal_percents("%(default).2f%") == "%(default).2f%%"
    assert literal_percents("100%% done, 5% left") == "100%% done, 5%% left"
    assert literal_percents("%s%") == "%%s%%"


def test_plots_without_a_run_directory_says_so(tmp_path, capsys):
    code, out, err = run_help(["plots"], capsys)
    assert code == 2 and "output_dir" in err.splitlines()[-1]
    missing = tmp_path / "no-run"
    code, out, err = run_help(["plots", str(missing)], capsys)
    assert code == 2 and err.strip() == f"error: {missing}: not a directory; give a training run's --output_dir."


HELP_COMMAND_LINES = ([["-m", "chatfreeze", name, "--help"] for name in COMMANDS]
                      + [["-m", module, "--help"] for module in ("chatfreeze.cli.train", "chatfreeze.chat",
                                                                  "chatfreeze.web", "chatfreeze.plan",
                                                                  "chatfreeze.evaluate", "chatfreeze.push",
                                                                  "chatfreeze.plots", "chatfreeze.merge")]
                      + [["scripts/train.py", "--help"]])


@pytest.mark.slow
@pytest.mark.parametrize("args", HELP_COMMAND_LINES, ids=[" ".join(a[:-1]).removeprefix("-m ")
                                                          for a in HELP_COMMAND_LINES])
def test_help_in_a_fresh_interpreter(args):
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: "), result.stdout[:500]
