"""Every command the README shows works as written: each ``chatfreeze ...``, ``python -m chatfreeze...``,
``python scripts/...``, ``accelerate launch ...``, ``make ...`` and ``pip install ...`` line of its bash blocks names
a command, subcommand, flag, file, Makefile target or extra that exists; each train line parses and validates as the
run would (the own-company rule included); the lines with a dry run (``plan``, ``facts``) are run; every command it
names answers ``--help``. A flag mentioned in the README's prose must exist too, and so must every file it links.

A README that drifts from the code fails here, not in a newcomer's terminal.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from test_cli_help import PARSERS, run_help

from chatfreeze.cli import COMMANDS
from chatfreeze.cli import main as cli_main

README = REPO_ROOT / "README.md"
PROGRAMS = ("make", "chatfreeze", "python", "accelerate", "pip", "printf")  # a new one must be taught here
DRY_RUNS = ("plan", "facts")  # commands whose README lines run as they are (plan reads the model's config only)


@dataclass(frozen=True)
class Line:
    """One command of a bash block: its tokens, and the README line it starts on (for the failure message)."""

    tokens: tuple[str, ...]
    where: int

    def __str__(self) -> str:
        return f"README.md:{self.where}: {shlex.join(self.tokens)}"


def blocks(language: str) -> list[tuple[int, str]]:
    """(first line number, text) of each fenced block in ``language``."""
    found, lines, start, inside = [], README.read_text().splitlines(), 0, False
    for number, line in enumerate(lines, 1):
        if not inside and line.strip() == f"```{language}":
            inside, start, body = True, number + 1, []
        elif inside and line.strip() == "```":
            inside = False
            found.append((start, "\n".join(body)))
        elif inside:
            body.append(line)
    return found


def commands() -> list[Line]:
    """Every command of the README's bash blocks: continuations joined, comments dropped, pipelines and ``&&``
    split into their commands, leading ``VAR=value`` assignments dropped."""
    found = []
    for start, text in blocks("bash"):
        logical = re.sub(r"\\\n", " ", text)
        for offset, line in enumerate(logical.splitlines()):
            tokens = shlex.split(line, comments=True)
            part: list[str] = []
            for token in [*tokens, "|"]:
                if token in ("|", "&&", ";", "||"):
                    while part and re.fullmatch(r"[A-Z_]+=.*", part[0]):
                        part.pop(0)
                    if part:
                        found.append(Line(tuple(part), start + offset))
                    part = []
                else:
                    part.append(token)
    return found


def readme_recipes(tmp_path: Path) -> dict[str, Path]:
    """The README's YAML recipes (a block whose first line is ``# NAME.yaml ...``), written under ``tmp_path``;
    an ``extends`` of a packaged recipe is made absolute (the README places the file beside chatfreeze/)."""
    written = {}
    for _, text in blocks("yaml"):
        name = re.match(r"#\s*(\S+\.yaml)", text)
        if not name:
            continue
        recipe = yaml.safe_load(text)
        if "extends" in recipe:
            recipe["extends"] = str(REPO_ROOT / recipe["extends"])
        written[name.group(1)] = tmp_path / name.group(1)
        written[name.group(1)].write_text(yaml.safe_dump(recipe))
    return written


def parser_of(command: str):
    import importlib

    module, factory = PARSERS[command]
    return getattr(importlib.import_module(module), factory)()


def option_strings(command: str) -> set[str]:
    flags = {flag for action in parser_of(command)._actions for flag in action.option_strings}
    if command == "facts":  # the report takes chatfreeze train's options (its recipe, drills, data) as train does
        flags |= option_strings("train")
    return flags | ({"--help_all"} if command == "train" else set())


def as_chatfreeze(line: Line) -> tuple[str, list[str]] | None:
    """(chatfreeze command, its arguments) of a line that runs one, however it is started; None for make/pip."""
    program, *args = line.tokens
    if program == "chatfreeze":
        return args[0], args[1:]
    if program == "python" and args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module == "chatfreeze":
            return rest[0], rest[1:]
        name = module.removeprefix("chatfreeze.").removeprefix("cli.")
        assert module.startswith("chatfreeze.") and name in COMMANDS, f"{line}: no such command module"
        return name, rest
    if program == "python":
        script = REPO_ROOT / args[0]
        assert script.is_file(), f"{line}: no such script"
        return ("train", args[1:]) if script.name == "train.py" else None
    if program == "accelerate":
        from accelerate.commands.launch import launch_command_parser

        assert args[0] == "launch", f"{line}: accelerate {args[0]}"
        launch = launch_command_parser().parse_args(args[1:])
        if launch.config_file:
            assert (REPO_ROOT / launch.config_file).is_file(), f"{line}: no such accelerate config"
        target = launch.training_script
        if launch.module:
            return as_chatfreeze(Line(("python", "-m", target, *launch.training_script_args), line.where))
        return as_chatfreeze(Line(("python", target, *launch.training_script_args), line.where))
    return None


def makefile() -> tuple[set[str], set[str]]:
    """(the Makefile's targets, its variables)."""
    text = (REPO_ROOT / "Makefile").read_text()
    return (set(re.findall(r"^([a-z][\w-]*):", text, re.M)), set(re.findall(r"^([A-Z_]+)\s*\?=", text, re.M)))


def make_commands(target: str) -> list[Line]:
    """The chatfreeze commands a Makefile target runs, its variables stood in for (``$(TRAIN_ARGS)``: none)."""
    text = (REPO_ROOT / "Makefile").read_text()
    body = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n?)*)", text, re.M).group(1)
    found = []
    for number, line in enumerate(re.sub(r"\\\n", " ", body).splitlines()):
        line = re.sub(r"\$\(BIN\)/", "", line.replace("$(TRAIN_ARGS)", ""))
        tokens = shlex.split(re.sub(r"\$\(\w+\)", "1", line))  # a number fits every value it stands for
        if tokens and tokens[0] in ("python", "accelerate") and any("chatfreeze" in token for token in tokens):
            found.append(Line(tuple(tokens), number))
    return found


def check_flags(line: Line, command: str, args: list[str]) -> None:
    known = option_strings(command)
    unknown = [arg.split("=")[0] for arg in args if arg.startswith("--") and arg.split("=")[0] not in known]
    assert not unknown, f"{line}: `chatfreeze {command}` has no option {', '.join(unknown)}"


def check_train(line: Line, args: list[str], recipes: dict[str, Path]) -> None:
    """The arguments parse and validate as `chatfreeze train` would take them (the default recipe unless
    --config), so a README line that breaks a rule (a flag pair, another company's data) fails here."""
    from chatfreeze.cli.train import has_config
    from chatfreeze.training.arguments import DEFAULT_RECIPE, parse_args

    args = [str(recipes.get(arg, arg)) for arg in args if arg not in ("--help", "--help_all")]
    if not has_config(args):
        args = ["--config", str(DEFAULT_RECIPE), *args]
    try:
        parse_args(args)
    except ValueError as err:
        pytest.fail(f"{line}: {err}")


COMMAND_LINES = commands()


def test_the_readme_shows_commands():
    programs = {line.tokens[0] for line in COMMAND_LINES}
    assert {"make", "chatfreeze", "python", "accelerate"} <= programs
    assert set(programs) <= set(PROGRAMS), programs - set(PROGRAMS)


@pytest.mark.parametrize("line", COMMAND_LINES, ids=str)
def test_readme_command(line, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the README's commands run in a clone's root
    program, *args = line.tokens
    if program == "make":
        targets, variables = makefile()
        assert args[0] in targets, f"{line}: no make target {args[0]}"
        for inner in make_commands(args[0]):  # what `make train` runs takes the flags it passes
            command, inner_args = as_chatfreeze(inner) or (None, [])
            if command:
                check_flags(Line(inner.tokens, line.where), command, inner_args)
        for assignment in args[1:]:
            name, _, value = assignment.partition("=")
            assert name in variables, f"{line}: the Makefile has no variable {name}"
            if name == "TRAIN_ARGS":
                check_flags(line, "train", shlex.split(value))
                check_train(line, shlex.split(value), {})
        return
    if program == "pip":
        extras = re.findall(r"chatfreeze\[([\w,-]+)\]", " ".join(args))
        declared = (REPO_ROOT / "pyproject.toml").read_text()
        for extra in (e for group in extras for e in group.split(",")):
            assert re.search(rf"^{re.escape(extra)}\s*=", declared, re.M), f"{line}: no extra [{extra}]"
        return
    if program == "printf":
        return
    target = as_chatfreeze(line)
    if target is None:
        return
    command, args = target
    assert command in COMMANDS, f"{line}: no chatfreeze command {command!r}"
    check_flags(line, command, args)
    if command == "train":
        check_train(line, args, readme_recipes(tmp_path))
    elif "--help" not in args and command not in DRY_RUNS:  # those run below
        try:  # the arguments as the command's parser takes them (positionals, values, choices); nothing runs
            parser_of(command).parse_args(args)
        except SystemExit:
            pytest.fail(f"{line}: `chatfreeze {command}` does not take these arguments")


@pytest.mark.parametrize("command", sorted({t[0] for line in COMMAND_LINES if (t := as_chatfreeze(line))}))
def test_every_command_the_readme_names_answers_help(command, capsys):
    code, out, err = run_help([command, "--help"], capsys)
    assert code == 0 and out.startswith("usage: "), err[-2000:]


def dry_run_lines(command: str) -> list[Line]:
    return [line for line in COMMAND_LINES if (t := as_chatfreeze(line)) and t[0] == command]


@pytest.mark.parametrize("line", dry_run_lines("facts"), ids=str)
def test_readme_facts_lines_run(line, capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert cli_main(list(line.tokens[1:])) == 0, capsys.readouterr().err[-2000:]
    assert "facts" in capsys.readouterr().out


@pytest.mark.slow  # reads the real model's config (the offline copy on a machine without the Hub)
@pytest.mark.parametrize("line", dry_run_lines("plan"), ids=str)
def test_readme_plan_lines_run(line, capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli_main(list(line.tokens[1:])) == 0, capsys.readouterr().err[-2000:]
    assert "Freeze plan for" in capsys.readouterr().out


def test_every_flag_the_readme_mentions_exists():
    """Prose too: `--facts none --facts_probe none` in a sentence is an instruction a reader will type."""
    from accelerate.commands.launch import launch_command_parser

    known = set().union(*(option_strings(command) for command in COMMANDS))
    known |= {flag for action in launch_command_parser()._actions for flag in action.option_strings}
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", README.read_text()))
    assert not mentioned - known, f"the README mentions options nothing has: {sorted(mentioned - known)}"


def test_every_file_the_readme_links_exists():
    text = README.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    missing = [link for link in links if "://" not in link and not (REPO_ROOT / link).exists()]
    assert not missing, f"the README links files that do not exist: {missing}"


def test_the_readme_stays_short():
    """A newcomer reads it in five minutes; studies and reference belong in docs/."""
    assert len(README.read_text().splitlines()) <= 200
