"""Where a run's time went: each phase's wall and CPU seconds, whether its result came from a cache, nested as the
phases ran ("Evaluation before" holds "Facts probe (before)", ...).

The training recipe opens the coarse phases (model, data, evaluation before, training, evaluation after, saving);
every long loop that shows progress (``progress.Progress``: replay generation, each probe, the perplexities, the
prefix cache, ...) is a phase of its own inside the one that runs it, and a step served from a cache says so
(``note_cached``). At the end the recipe logs ``format_table()`` and writes ``to_dict()`` to ``run_info.json``
(``timings``); the model card shows the training part.

CPU seconds are the process's (every thread): on a CPU, CPU/wall near the thread count means the phase kept every
thread busy, near 1 a single-threaded part (tokenizing, Python loops), below 1 waiting (disk, network, other
processes). Imports nothing of chatfreeze.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_lock = threading.Lock()
_phases: list[Phase] = []
_open: list[Phase] = []


@dataclass
class Phase:
    """One phase: ``name``, its ``depth`` (0: a step of the recipe), wall and CPU seconds, ``cached`` (True: its
    result came from a cache, None: nothing to cache) and what else the phase measured (``detail``: steps/s, ...)."""

    name: str
    depth: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    cached: bool | None = None
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        record = {"phase": self.name, "depth": self.depth, "wall_s": round(self.wall_s, 2),
                  "cpu_s": round(self.cpu_s, 2)}
        if self.cached is not None:
            record["cached"] = self.cached
        return record | self.detail


def reset() -> None:
    """Forget every phase (a new run in the same process: tests, studies)."""
    with _lock:
        _phases.clear()
        _open.clear()


@contextmanager
def phase(name: str, cached: bool | None = None, **detail) -> Iterator[Phase]:
    """Time the block as a phase; the yielded ``Phase`` may be given ``cached`` and ``detail`` before it ends.
    Phases opened inside it (in this thread) are nested under it."""
    with _lock:
        record = Phase(name, depth=len(_open), cached=cached, detail=dict(detail))
        _phases.append(record)
        _open.append(record)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield record
    finally:
        record.wall_s, record.cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        with _lock:
            if record in _open:
                _open.remove(record)


def note_cached(name: str, **detail) -> None:
    """A phase whose result came from a cache (it took no measurable time of its own)."""
    with phase(name, cached=True, **detail):
        pass


def phases() -> list[Phase]:
    """The phases in the order they started; a phase run several times in a row (replay generation topping up
    prompts the base answered with nothing) is one, its seconds summed and ``runs`` counted."""
    with _lock:
        records = list(_phases)
    merged: list[Phase] = []
    for record in records:
        last = merged[-1] if merged else None
        if last is not None and (last.name, last.depth, last.cached) == (record.name, record.depth, record.cached):
            last.wall_s += record.wall_s
            last.cpu_s += record.cpu_s
            last.detail["runs"] = last.detail.get("runs", 1) + 1
        else:
            merged.append(Phase(record.name, record.depth, record.wall_s, record.cpu_s, record.cached,
                                dict(record.detail)))
    return merged


def to_dict() -> list[dict]:
    """The phases as ``run_info.json`` records them."""
    return [record.to_dict() for record in phases()]


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _detail_text(record: Phase) -> str:
    parts = ["from the cache"] if record.cached else []
    parts += [f"{key.replace('_', ' ')} {_value(value)}" for key, value in record.detail.items()]
    return ", ".join(parts)


def format_table(records: list[Phase] | None = None, total_wall_s: float | None = None) -> str:
    """The phases as a table (nested ones indented), with the share of ``total_wall_s`` (the run's wall time) each
    top-level phase took, and what no phase covered."""
    records = phases() if records is None else records
    width = max([len("  " * r.depth + r.name) for r in records] + [len("phase")])
    lines = [f"{'phase':<{width}}  {'wall s':>8}  {'CPU s':>8}  {'share':>6}  notes", "-" * (width + 40)]
    top = sum(r.wall_s for r in records if r.depth == 0)
    for record in records:
        share = f"{100 * record.wall_s / total_wall_s:5.1f}%" if total_wall_s and record.depth == 0 else ""
        lines.append(f"{'  ' * record.depth + record.name:<{width}}  {record.wall_s:8.1f}  {record.cpu_s:8.1f}  "
                     f"{share:>6}  {_detail_text(record)}".rstrip())
    if total_wall_s:
        lines.append("-" * (width + 40))
        lines.append(f"{'other (imports, between phases)':<{width}}  {max(0.0, total_wall_s - top):8.1f}")
        lines.append(f"{'total':<{width}}  {total_wall_s:8.1f}")
    return "\n".join(lines)


def process_seconds() -> float | None:
    """Wall seconds since this process started (Linux: /proc), or None where that cannot be read."""
    try:
        with open("/proc/self/stat") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            up = float(uptime.read().split()[0])
        return max(0.0, up - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


__all__ = ["Phase", "format_table", "note_cached", "phase", "phases", "process_seconds", "reset", "to_dict"]
