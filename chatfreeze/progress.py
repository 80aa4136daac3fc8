"""Progress of the long loops (replay generation, each evaluation part, the prefix cache, deltas, merges), shown
one way everywhere: a tqdm bar when stderr is a terminal, else log lines with counts and an estimate of the time
left ("Facts probe (before): 64/109 replies, 41 s, about 29 s left").

A phase that ends within ``FIRST_LINE_AFTER`` seconds shows nothing in the log. A longer one logs a line once it
has run that long, then at every tenth of the total or every ``EVERY_SECONDS`` when no tenth is crossed, and a
last line when it ends. A small background thread keeps those lines (and the bar's clock) coming while a single
step runs for minutes (one batch of greedy replies on a CPU), so a working run never looks hung.

Off in processes other than the local main one (``LOCAL_RANK`` > 0) and after ``set_enabled(False)``, which the
training recipe calls with the Trainer's ``--disable_tqdm``. Every named phase is also timed (``timings``), shown or
not, so the run's table of where the time went has each long loop. Imports nothing of chatfreeze but ``timings``,
and tqdm only when a bar is drawn.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from typing import TypeVar

from . import timings

logger = logging.getLogger(__name__)

FIRST_LINE_AFTER = 5.0  # seconds: shorter phases log nothing
EVERY_SECONDS = 30.0  # the longest silence once a phase has logged
MARKS = 10  # a line at each tenth of the total (at most one per FIRST_LINE_AFTER seconds)
HEARTBEAT_SECONDS = 1.0  # how often the background thread looks at the clock

_enabled = True
T = TypeVar("T")


def set_enabled(enabled: bool) -> None:
    """Show progress (the default) or not: ``set_enabled(not training_args.disable_tqdm)``."""
    global _enabled
    _enabled = bool(enabled)


def is_enabled() -> bool:
    """Whether progress is shown: not switched off, and this is the local main process."""
    return _enabled and os.environ.get("LOCAL_RANK", "0") in ("", "0")


def on_terminal() -> bool:
    """Whether stderr is a terminal (a bar), not a file or a pipe (log lines)."""
    return sys.stderr.isatty()


def duration(seconds: float) -> str:
    """``41 s`` or ``3 min 05 s``."""
    if seconds < 99.5:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class Progress:
    """Progress of one phase: ``with Progress("Facts probe", 109, "replies") as shown: ... shown.update(64)``.
    ``what=None`` (or progress switched off) shows nothing. ``total=None``: counts without an estimate."""

    def __init__(self, what: str | None, total: int | None = None, unit: str = "items"):
        self.what, self.total, self.unit = what, total, unit
        self.active = what is not None and is_enabled()
        self.done, self.logged, self.bar = 0, False, None
        self.started = self.last_line = time.monotonic()
        self.mark = 0  # the last tenth of the total reached
        self.stop = threading.Event()
        self.timed = ExitStack()

    def __enter__(self) -> Progress:
        if self.what is not None:
            self.timed.enter_context(timings.phase(self.what))
        if not self.active:
            return self
        self.started = self.last_line = time.monotonic()
        if on_terminal():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.what, unit=f" {self.unit}", leave=False, file=sys.stderr)
        threading.Thread(target=self._heartbeat, name=f"progress: {self.what}", daemon=True).start()
        return self

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.done += n
        if not self.active:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        mark = self.done * MARKS // self.total if self.total else 0
        crossed, self.mark = mark > self.mark, max(mark, self.mark)
        quiet = now - self.last_line  # since the start when nothing was logged yet
        finished = self.total is not None and self.done >= self.total  # its line comes when the phase ends
        if not finished and quiet >= FIRST_LINE_AFTER and (crossed or quiet >= EVERY_SECONDS):
            self._log(now)

    def __exit__(self, kind, *_) -> None:
        self.timed.close()
        if not self.active:
            return
        self.stop.set()
        if self.bar is not None:
            self.bar.close()
        elapsed = time.monotonic() - self.started
        if kind is None and (self.logged or elapsed >= FIRST_LINE_AFTER):
            counted = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
            logger.info("%s: %s %s in %s.", self.what, counted, self.unit, duration(elapsed))

    def line(self, now: float | None = None) -> str:
        """``What: done/total unit, elapsed, about N s left`` (no estimate before the first unit, or without a
        total)."""
        elapsed = (now if now is not None else time.monotonic()) - self.started
        counted = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        text = f"{self.what}: {counted} {self.unit}, {duration(elapsed)}"
        if self.total and 0 < self.done < self.total:
            text += f", about {duration(elapsed * (self.total - self.done) / self.done)} left"
        return text

    def _log(self, now: float) -> None:
        self.last_line, self.logged = now, True
        logger.info("%s", self.line(now))

    def _heartbeat(self) -> None:
        """While a step runs long: log when silent too long, or move the bar's clock."""
        while not self.stop.wait(HEARTBEAT_SECONDS):
            if self.bar is not None:
                self.bar.refresh()
                continue
            now = time.monotonic()
            if now - self.last_line >= (EVERY_SECONDS if self.logged else FIRST_LINE_AFTER) and not self.stop.is_set():
                self._log(now)


def progress(iterable: Iterable[T], what: str | None, total: int | None = None, unit: str = "items"
             ) -> Iterator[T]:
    """``iterable``'s items, one unit of ``Progress(what, total, unit)`` each, counted when the loop body that
    received an item is done (``total``: ``len(iterable)`` where it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(what, total, unit) as shown:
        for item in iterable:
            yield item
            shown.update()


__all__ = ["Progress", "is_enabled", "progress", "set_enabled"]
