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
from chatfreeze.training.arguments import QUICK_RECIPE

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
    # train's --help shows one line an option (cut to the width); --help_all is argparse's whole help
    code, out, err = run_help([command, "--help_all" if command == "train" else "--help"], capsys)
    assert code == 0, err[-2000:]
    text = " ".join(out.split())  # argparse wraps long help over several lines
    assert "Keep 100% of it (0.02 = 2%); 50%-off, %s and %d stay text; default 7." in text, text[-3000:]
    if command == "train":
        code, out, err = run_help([command, "--help"], capsys)
        assert code == 0 and "Keep 100% of it (0.02 = 2%); 50%-off" in out, err[-2000:]


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


# --- chatfreeze train --help: by topic, one line an option, the values the run would use ----------------------

def train_help(*argv: str, width: int = 120) -> list[str]:
    from chatfreeze.training.arguments import help_text

    return help_text([*argv, "--help"], width=width).splitlines()


def sections(lines: list[str]) -> dict[str, dict[str, str]]:
    """{heading: {--flag: its line}} of a train help."""
    found: dict[str, dict[str, str]] = {}
    heading = None
    for line in lines:
        if line.endswith(":") and not line.startswith(" "):
            heading = line[:-1]
            found[heading] = {}
        elif heading and line.strip():
            assert line.startswith("  --"), f"not one line an option: {line!r}"
            found[heading][line.split()[0]] = line
    return found


def our_fields() -> dict[str, type]:
    from dataclasses import fields

    from chatfreeze.data.options import DataArguments
    from chatfreeze.evaluation.options import EvaluationArguments
    from chatfreeze.facts.options import FactsArguments
    from chatfreeze.fastpath.options import FastPathArguments
    from chatfreeze.freezing.options import FreezeArguments
    from chatfreeze.modeling.options import ModelArguments
    from chatfreeze.retention.options import RetentionArguments
    from chatfreeze.training.methods.options import MethodArguments

    classes = (ModelArguments, DataArguments, FreezeArguments, MethodArguments, FactsArguments, RetentionArguments,
               EvaluationArguments, FastPathArguments)
    return {f.name: cls for cls in classes for f in fields(cls)}


def test_train_help_lists_each_of_our_options_once_under_its_topic():
    from chatfreeze.training.arguments import HELP_TOPICS, TRAINER_HEADING

    found = sections(train_help())
    topics = [title for title, _ in HELP_TOPICS]
    assert list(found)[:len(topics) + 1] == [*topics, TRAINER_HEADING]
    assert [t.split(" ")[0] for t in topics] == ["model", "data", "freeze", "facts", "retention", "evaluation",
                                                 "fast", "training", "output"]
    ours = {flag for title in topics for flag in found[title]}
    assert {f"--{name}" for name in our_fields()} <= ours
    shown = [flag for rows in found.values() for flag in rows]
    assert len(shown) == len(set(shown)), "an option listed twice"
    assert "--adam_beta1" in found[TRAINER_HEADING] and "--optim" in found[TRAINER_HEADING]
    assert not ours & set(found[TRAINER_HEADING])
    assert all(len(line) <= 120 for line in train_help())


def test_every_option_chatfreeze_declares_for_the_trainer_has_a_topic():
    """FreezeTrainingArguments' own fields (defaults chatfreeze chose) belong with our options, not in the
    Trainer's long list; every name a topic lists is a real option."""
    from dataclasses import fields

    from transformers import TrainingArguments

    from chatfreeze.training.arguments import (
        HELP_TOPICS,
        OUTPUT_TOPIC,
        TRAINING_TOPIC,
        FreezeTrainingArguments,
    )

    own = set(FreezeTrainingArguments.__dict__["__annotations__"])
    assert own <= set(TRAINING_TOPIC) | set(OUTPUT_TOPIC), own - set(TRAINING_TOPIC) - set(OUTPUT_TOPIC)
    every = {f.name for f in fields(FreezeTrainingArguments)} | set(our_fields())
    listed = [name for _, names in HELP_TOPICS for name in names]
    assert set(listed) <= every and len(listed) == len(set(listed))
    assert set(TRAINING_TOPIC) | set(OUTPUT_TOPIC) <= {f.name for f in fields(TrainingArguments)} | own


def value_of(found: dict[str, dict[str, str]], flag: str) -> str:
    line = next(rows[flag] for rows in found.values() if flag in rows)
    return line.split()[1]


def test_train_help_shows_the_values_the_run_would_use():
    default = sections(train_help())
    assert value_of(default, "--num_frozen_layers") == "15"  # the default recipe's, not the dataclass's 0.8
    assert value_of(default, "--facts_per_fact") == "20" and value_of(default, "--facts_ratio") == "(unset)"
    assert value_of(default, "--facts").endswith("facts.yaml")
    assert value_of(default, "--output_dir") == "outputs/smollm2-support"
    assert value_of(default, "--learning_rate") == "0.0003"

    quick = sections(train_help("--config", str(QUICK_RECIPE)))
    assert value_of(quick, "--num_frozen_layers") == "24" and value_of(quick, "--facts") == "(unset)"
    assert value_of(quick, "--max_steps") == "40"

    flags = sections(train_help("--num_frozen_layers", "7", "--facts_ratio", "0.5"))
    assert value_of(flags, "--num_frozen_layers") == "7"
    assert value_of(flags, "--facts_ratio") == "0.5" and value_of(flags, "--facts_per_fact") == "(unset)"


def test_train_help_through_the_command_and_help_all(capsys):
    code, out, err = run_help(["train", "--config", str(QUICK_RECIPE), "--help"], capsys)
    assert code == 0 and not err.strip(), err[-2000:]
    assert value_of(sections(out.splitlines()), "--num_frozen_layers") == "24"
    code, out, err = run_help(["train", "--help_all"], capsys)
    assert code == 0 and out.startswith("usage: ") and "(default: " in out  # argparse's whole help
