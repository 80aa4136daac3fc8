"""Running a study: declarative variants, each in its own child process, resumable.

A variant is a name, a label, the command-line options it sets on top of the study's common ones, and notes; a
study turns it into the commands to run (``commands(variant)``). Every command runs in a child process of its own,
so the peak memory measured is that variant's alone and a crash ends one variant, not the study. When a variant's
last command exits 0 its process record (``NAME.process.json``: wall seconds, peak RSS, the command) is written in
the work dir: the variant is done, and a rerun skips it. An unfinished variant (no record) runs again from the
start, so its commands must overwrite what a killed run left behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PROCESS_SUFFIX = ".process.json"  # NAME.process.json in the work dir: the variant is done
LOG_SUFFIX = ".log"  # NAME.log in the work dir: the output of the variant's commands, the latest run's


@dataclass(frozen=True)
class Variant:
    """One row of a study, described as data: what it is and the options that make it so."""

    name: str  # a folder and file name in the work dir, and the row's key in the CSV
    label: str  # the row's label in tables: what it is, in words
    overrides: Sequence[str] = ()  # options on top of the study's common ones (they come later, so they win)
    notes: str = ""  # why it is in the study (for the reader; tables do not show it)
    source: str | None = None  # the variant whose finished run this one starts from (it trains nothing itself)

    def __post_init__(self):
        object.__setattr__(self, "overrides", tuple(self.overrides))


@dataclass(frozen=True)
class ProcessRecord:
    returncode: int
    wall_seconds: float
    peak_rss_mib: float  # the child's peak resident memory (wait4's ru_maxrss), not this process's
    command: str


def child_env(threads: int | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child: unbuffered output (its log reads in order), ``threads`` CPU
    threads for torch's OpenMP and MKL pools when given, and ``env`` on top."""
    extra = {"PYTHONUNBUFFERED": "1"}
    if threads:
        extra |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return {**os.environ, **extra, **(env or {})}


def run_process(command: Sequence[str], log: Path, cwd: Path | str | None = None, threads: int | None = None,
                env: dict[str, str] | None = None) -> ProcessRecord:
    """Run ``command`` with its output (stdout and stderr) in ``log``, and wait for it."""
    started = time.perf_counter()
    with Path(log).open("w") as handle:
        proc = subprocess.Popen(list(command), stdout=handle, stderr=subprocess.STDOUT, cwd=cwd,
                                env=child_env(threads, env))
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ProcessRecord(proc.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024,  # Linux: KiB
                         shlex.join(command))


def log_tail(log: Path, chars: int = 12000) -> str:
    return Path(log).read_text(errors="replace")[-chars:] if Path(log).is_file() else ""


def record_path(work_dir: Path | str, name: str) -> Path:
    return Path(work_dir) / f"{name}{PROCESS_SUFFIX}"


def read_record(work_dir: Path | str, name: str) -> dict | None:
    """A finished variant's process record (``wall_seconds``, ``peak_rss_mib``, ``command``); None until then."""
    path = record_path(work_dir, name)
    return json.loads(path.read_text()) if path.is_file() else None


def select(variants: Iterable[Variant], only: Iterable[str] | None) -> list[Variant]:
    """The variants named in ``only`` (all when None), in the study's order; an unknown name is an error."""
    variants = list(variants)
    names = {variant.name for variant in variants}
    unknown = sorted(set(only or ()) - names)
    if unknown:
        raise ValueError(f"--only {unknown[0]}: unknown variant; choose from {', '.join(sorted(names))}.")
    return [variant for variant in variants if only is None or variant.name in only]


@dataclass
class Runner:
    """Runs variants in ``work_dir``, each command in a child process started in ``cwd``."""

    work_dir: Path
    cwd: Path | None = None
    threads: int | None = None  # CPU threads of every child (None: the library defaults)
    env: dict[str, str] | None = None  # environment variables of every child, on top of this process's
    dry_run: bool = False  # log the commands, run nothing

    def __post_init__(self):
        self.work_dir = Path(self.work_dir)

    def log_path(self, name: str) -> Path:
        return self.work_dir / f"{name}{LOG_SUFFIX}"

    def is_done(self, name: str) -> bool:
        return record_path(self.work_dir, name).is_file()

    def run(self, variant: Variant, commands: Sequence[Sequence[str]]) -> bool:
        """Run a variant's commands in order unless it is done (or needs a source that is not); whether it ran.
        A command that fails ends the study (SystemExit) with its log's name; the variant stays unfinished."""
        if self.is_done(variant.name):
            logger.info("[%s] done already: %s", variant.name, self.work_dir / variant.name)
            return False
        if variant.source and not self.is_done(variant.source):
            logger.info("[%s] needs %s first; skipped", variant.name, variant.source)
            return False
        record = None
        for command in commands:
            logger.info("[%s] %s", variant.name, shlex.join(command))
            if self.dry_run:
                continue
            log = self.log_path(variant.name)
            record = run_process(command, log, self.cwd, self.threads, self.env)
            if record.returncode != 0:
                raise SystemExit(f"[{variant.name}] failed (exit {record.returncode}); see {log}")
            logger.info("[%s] %.0f s, peak RSS %.0f MiB", variant.name, record.wall_seconds, record.peak_rss_mib)
        if record is not None:  # the last command's: the one that measured
            record_path(self.work_dir, variant.name).write_text(json.dumps(
                {"wall_seconds": record.wall_seconds, "peak_rss_mib": record.peak_rss_mib,
                 "command": record.command}) + "\n")
        return record is not None

    def run_all(self, variants: Iterable[Variant], commands: Callable[[Variant], Sequence[Sequence[str]]],
                after_each: Callable[[], None] | None = None) -> None:
        """Every variant in order (``commands`` is asked when its turn comes, so it may look at what earlier
        variants left); ``after_each`` (a report refresh) after every variant that ran, so that an interrupted
        study still has the rows it finished."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for variant in variants:
            if self.run(variant, commands(variant)) and after_each is not None:
                after_each()


def study_parser(description: str, work_dir: str, out: str, general_text: str) -> argparse.ArgumentParser:
    """The options every study shares; a study adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--only", nargs="*", default=None, help="Run these variants only (names).")
    parser.add_argument("--work_dir", default=work_dir)
    parser.add_argument("--out", default=out, help="Writes OUT.md, OUT.csv and OUT.png.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every run.")
    parser.add_argument("--general_text", default=general_text, help="WikiText-2 raw test file.")
    parser.add_argument("--report_only", action="store_true", help="Only rebuild the outputs from finished runs.")
    parser.add_argument("--dry_run", action="store_true", help="Print the commands, run nothing.")
    return parser


def run_study(args: argparse.Namespace, variants: Sequence[Variant], cwd: Path,
              commands: Callable[[Variant, argparse.Namespace, Path], Sequence[Sequence[str]]],
              write_outputs: Callable[[argparse.Namespace, Path], None]) -> None:
    """A study's ``main`` after parsing: check the general text, pick the variants, run them in ``args.work_dir``
    (resumable), write the outputs after each one and at the end. A bad option raises ``ValueError`` naming it (the
    script's ``cli.errors.run_cli`` prints it as one line, exit 2)."""
    import sys

    if not Path(args.general_text).is_file():
        raise ValueError(f"--general_text {args.general_text}: no such file; the study measures WikiText-2 "
                         "perplexity from a local raw copy (wiki.test.raw).")
    chosen = select(variants, args.only)
    logging.basicConfig(format="%(message)s", level=logging.INFO, stream=sys.stdout)
    work = Path(args.work_dir)
    runner = Runner(work, cwd=cwd, threads=args.threads, dry_run=args.dry_run,
                    env={"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})
    if not args.report_only:
        runner.run_all(chosen, lambda variant: commands(variant, args, work),
                       after_each=lambda: write_outputs(args, work))
    if not args.dry_run:
        write_outputs(args, work)
