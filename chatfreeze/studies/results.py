"""A study's results: rows, the CSV that carries them across reruns, Markdown tables, a scatter plot, and the doc
whose hand-written reading survives regeneration.

A row is a variant's name and label, a dict of metrics (whatever the study measures) and when it was measured.
The CSV has the columns ``variant, label, <metrics...>, measured``. A rerun that cannot measure a variant again
(its run directory is gone: another machine, a new work dir) keeps that variant's row from the existing CSV,
its ``measured`` column saying when (``earlier`` when a CSV from before that column does not say), so a partial
rerun refreshes rows without losing the others. The doc's reading, between ``<!-- reading -->`` and
``<!-- /reading -->``, is written by hand after looking at the numbers and kept when the doc is regenerated.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation.metrics_table import describe

logger = logging.getLogger(__name__)

READING_START, READING_END = "<!-- reading -->", "<!-- /reading -->"
EARLIER = "earlier"  # `measured` of a row whose date is not known
TEXT_COLUMNS = ("variant", "label", "measured")


@dataclass
class Row:
    variant: str
    label: str
    metrics: dict[str, Any] = field(default_factory=dict)
    measured: str = EARLIER  # the date it was measured (YYYY-MM-DD), or EARLIER

    def get(self, key: str, default: Any = None) -> Any:
        """A metric, or ``variant`` / ``label`` / ``measured``: what a table cell or a plot reads."""
        return getattr(self, key) if key in TEXT_COLUMNS else self.metrics.get(key, default)


def measured_on(path: Path | str) -> str:
    """The local date a result file was written: when its variant was measured."""
    return time.strftime("%Y-%m-%d", time.localtime(Path(path).stat().st_mtime))


def parse_value(text: str | None) -> int | float | str | None:
    """A CSV cell back as what was written: empty -> None, then int, float, or the text itself."""
    if not text:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_csv(path: Path | str) -> dict[str, Row]:
    """The rows of an earlier results CSV by variant name (none when there is no file)."""
    path = Path(path)
    if not path.is_file():
        return {}
    rows = {}
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            metrics = {key: parse_value(value) for key, value in raw.items() if key not in TEXT_COLUMNS}
            rows[raw["variant"]] = Row(raw["variant"], raw.get("label") or "", metrics,
                                       raw.get("measured") or EARLIER)
    return rows


def write_csv(rows: Iterable[Row], path: Path | str, metrics: Sequence[str]) -> None:
    """``variant, label, *metrics, measured``, one line a row (a metric a row lacks is left empty)."""
    with Path(path).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["variant", "label", *metrics, "measured"])
        writer.writeheader()
        writer.writerows({key: row.get(key) for key in writer.fieldnames} for row in rows)


def collect_rows(names: Iterable[str], fresh: Callable[[str], Row | None], earlier: dict[str, Row]) -> list[Row]:
    """The rows in the order of ``names``: measured now where ``fresh`` has one, else carried from ``earlier``;
    a name in neither has no row."""
    return [row for name in names if (row := fresh(name) or earlier.get(name))]


def training_metrics(run_dir: Path | str) -> dict:
    """What a finished ``chatfreeze train`` run directory says about its training: seconds, tokens/s (padded,
    with ``--include_num_input_tokens_seen``), trained parameters as the method counts them (``trained_parameters``,
    e.g. adapters), else the plan's trainable ones."""
    out = Path(run_dir)
    results = json.loads((out / "all_results.json").read_text())
    state = json.loads((out / "trainer_state.json").read_text())
    tokens = max((e.get("num_input_tokens_seen", 0) for e in state.get("log_history", [])), default=0)
    plan = json.loads((out / "freeze_plan.json").read_text())
    return {"train_seconds": round(results["train_runtime"]),
            "tokens_per_second": round(tokens / results["train_runtime"], 1) if tokens else None,
            "trainable_params": results.get("trained_parameters", plan.get("trainable_parameters"))}


def fmt(value: Any, kind: str = "") -> str:
    """A table cell: ``–`` for nothing; ``kind`` "pct" (a fraction as %), "signed" (+1.2); else 3 significant
    digits below 100 and thousands separators above."""
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "signed":
        return f"{value:+.1f}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Any], str]  # one item (a Row, or whatever the table lists) -> its cell's text
    align: str = "---"  # the separator cell: "---", "---:" (right), ":---:" (centre)


def metric_column(key: str, kind: str = "", note: str = "") -> Column:
    """A column headed by the metrics table's name of ``key`` (one label for a metric everywhere), ``note`` after
    it; its cells are ``fmt(row.get(key), kind)``."""
    return Column(describe(key).name + (f" {note}" if note else ""), lambda row: fmt(row.get(key), kind))


def with_change_column(key: str, change_key: str, kind: str, change_note: str, source: str = "") -> Column:
    """A metric and its change from the base in one cell, ``62.0% (-1.5)``, headed by the table's name."""
    suffix = "%" if change_note.endswith("%") else ""
    header = describe(key).name + (f", {source}" if source else "") + f" ({change_note})"
    return Column(header, lambda row: f"{fmt(row.get(key), kind)} ({fmt(row.get(change_key), 'signed')}{suffix})")


def markdown_table(items: Iterable[Any], columns: Sequence[Column]) -> list[str]:
    """A Markdown table's lines: the header, the separator, one line per item."""
    lines = ["| " + " | ".join(column.header for column in columns) + " |",
             "|" + "|".join(column.align for column in columns) + "|"]
    lines += ["| " + " | ".join(column.cell(item) for column in columns) + " |" for item in items]
    return lines


def previous_reading(path: Path | str, placeholder: str) -> str:
    """The hand-written reading of an existing doc (between the markers), else ``placeholder``."""
    path = Path(path)
    if path.is_file():
        text = path.read_text()
        if READING_START in text and READING_END in text:
            return text.split(READING_START, 1)[1].split(READING_END, 1)[0].strip("\n")
    return placeholder


def write_doc(path: Path | str, lines: Sequence[str], placeholder: str, tail: Sequence[str] = ()) -> None:
    """Write a generated doc: ``lines``, the reading kept from the doc already at ``path`` (``placeholder`` in a
    new one) between its markers, then ``tail``."""
    reading = previous_reading(path, placeholder)
    Path(path).write_text("\n".join([*lines, READING_START, reading, READING_END, *tail, ""]))


@dataclass(frozen=True)
class Panel:
    x: str  # the metric on this panel's x axis
    label: str  # the axis label
    invert: bool = False  # larger x to the left (so that "better" points the same way on every panel)


def write_scatter(rows: Iterable[Row], path: Path | str, y: str, y_label: str, panels: Sequence[Panel],
                  title: str, y_scale: float = 100.0, figsize: tuple[float, float] = (12, 5)) -> None:
    """One panel per x metric, every row a labelled point against ``y`` (times ``y_scale``: fractions as %); a
    row that lacks either metric is left out of that panel."""
    from matplotlib.figure import Figure

    rows = list(rows)
    fig = Figure(figsize=figsize)
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for row in rows:
            if row.get(panel.x) is None or row.get(y) is None:
                continue
            point = (row.get(panel.x), y_scale * row.get(y))
            ax.scatter(*point, s=40)
            ax.annotate(row.variant, point, fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(panel.label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        if panel.invert:
            ax.invert_xaxis()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


@dataclass(frozen=True)
class Report:
    """What a study's outputs are made of: its rows, its CSV columns, its doc's lines and its plot's axes."""

    names: Sequence[str]  # the variants, in the table's order
    read_row: Callable[[str], Row | None]  # a finished variant's row (None while it is not finished)
    base_row: Callable[[], Row | None]  # the base model's row, from any finished variant
    metrics: Sequence[str]  # the CSV's columns between `variant, label` and `measured`
    doc_lines: Callable[[list[Row], list[str], Path], list[str]]  # (rows, missing names, plot) -> the doc's lines
    y: str  # the plot's learn axis (a metric)
    y_label: str
    panels: Sequence[Panel]
    title: str = "Learn vs keep: up is learned, right is kept"
    placeholder: str = "(reading to be written when the rows are in)"


def write_report(report: Report, out: Path | str) -> None:
    """``OUT.csv``, ``OUT.png`` and ``OUT.md`` from the finished variants, carrying the rows of variants whose run
    is gone from the existing CSV and keeping the doc's hand-written reading."""
    out = Path(out)
    earlier = read_csv(out.with_suffix(".csv"))
    fresh = {name: row for name in report.names if (row := report.read_row(name))}
    rows = collect_rows(report.names, fresh.get, earlier)
    base = report.base_row() or earlier.get("base")
    table_rows = ([base] if base else []) + rows
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(table_rows, out.with_suffix(".csv"), report.metrics)
    if table_rows:
        write_scatter(table_rows, out.with_suffix(".png"), report.y, report.y_label, report.panels, report.title)
    missing = [name for name in report.names if not any(row.variant == name for row in rows)]
    write_doc(out.with_suffix(".md"), report.doc_lines(table_rows, missing, out.with_suffix(".png")),
              report.placeholder)
    logger.info("wrote %s, .csv, .png (%d variants: %d from the work dir, %d kept from the earlier CSV)",
                out.with_suffix(".md"), len(rows), len(fresh), len(rows) - len(fresh))


def doc_tail(missing: Sequence[str], plot: Path, command: str) -> list[str]:
    """The end of a study's generated lines: what is not measured yet, the plot, the command that made it."""
    lines = [] if not missing else ["", f"Not measured yet (rerun the study to add them): {', '.join(missing)}."]
    return lines + ["", f"![learn vs keep]({plot.name})", "", "Command:", "", f"    {command}", ""]
