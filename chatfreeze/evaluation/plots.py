"""PNG plots of a run: loss curves (``trainer_state.json``) and before/after metrics (``evaluation.json``).

    chatfreeze plots OUTPUT_DIR        # (re)draw the plots of a finished run (chatfreeze.cli.plots)

Figures are drawn with matplotlib's object API on the Agg canvas, so plotting never touches pyplot's global
backend or needs a display.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..rundir import (
    BEFORE_AFTER_PLOT,
    EVALUATION_FILENAME,
    LEARN_KEEP_PLOT,
    LEARNING_CURVES_FILENAME,
    LEARNING_CURVES_PLOT,
    LOSS_CURVES_PLOT,
    TRAINER_STATE_FILENAME,
    read_json,
)
from .metrics_table import (
    BY_KEY,
    CURVE,
    FRACTION,
    HEADLINE,
    TRAINER_METRICS,
    format_change,
    format_value,
    learned_key,
)

logger = logging.getLogger(__name__)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def loss_series(log_history: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """``{"train": (steps, losses), "eval": (steps, losses)}`` from a Trainer ``log_history``."""
    series: dict[str, tuple[list[int], list[float]]] = {"train": ([], []), "eval": ([], [])}
    for entry in log_history:
        for name, key in (("train", "loss"), ("eval", "eval_loss")):
            if key in entry and "step" in entry:
                series[name][0].append(entry["step"])
                series[name][1].append(float(entry[key]))
    return series


def plot_loss_curves(log_history: list[dict], path: str | Path) -> Path | None:
    """Training and evaluation loss against the optimizer step; None if nothing was logged."""
    series = loss_series(log_history)
    if not series["train"][0] and not series["eval"][0]:
        return None
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    if series["train"][0]:
        ax.plot(*series["train"], label="training loss", color="tab:blue")
    if series["eval"][0]:
        ax.plot(*series["eval"], "o-", label="evaluation loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean NLL per assistant token, nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path)
    return Path(path)


def plot_before_after(evaluation: dict, path: str | Path) -> Path | None:
    """One bar pair (before, after) per metric in ``evaluation.json``; None if no metric has both."""
    before, after = evaluation.get("before") or {}, evaluation.get("after") or {}
    metrics = [m for m in HEADLINE if m.plotted and m.key in before and m.key in after]
    if not metrics:
        return None
    fig = _figure(3.0 * len(metrics), 3.6)
    for index, metric in enumerate(metrics, start=1):
        ax = fig.add_subplot(1, len(metrics), index)
        values = [before[metric.key], after[metric.key]]
        bars = ax.bar(["before", "after"], values, color=["tab:gray", "tab:green"])
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values])
        change = format_change(metric.key, *values) or "n/a"
        ax.set_title(f"{metric.plot_title}\nchange {change}", fontsize=9)
        ax.set_ylim(0, max(values) * 1.2 or 1.0)
    fig.suptitle("before vs after training")
    fig.savefig(path)
    return Path(path)


def learn_keep_points(evaluation: dict) -> tuple[str, str, dict[str, tuple[float, float]]] | None:
    """``(keep key, learn key, {"base": (x %, y %), "tuned": ...})``: short answers against the "learned" figure
    (``metrics_table.learned_key``: the facts probe's test half, as the log and the card report it); None without
    both sides of both."""
    before, after = evaluation.get("before") or {}, evaluation.get("after") or {}
    keep, learn = "skills_accuracy", learned_key(before, after)
    if learn is None or not all(keep in values for values in (before, after)):
        return None
    return keep, learn, {label: (100 * values[keep], 100 * values[learn])
                         for label, values in (("base", before), ("tuned", after))}


def plot_learn_keep(evaluation: dict, path: str | Path) -> Path | None:
    """Learn (the facts probe's test half) against keep (short-answer accuracy), base and tuned marked; None
    without both."""
    found = learn_keep_points(evaluation)
    if found is None:
        return None
    keep, learn, points = found
    after = evaluation["after"]
    fig = _figure(5.2, 4.4)
    ax = fig.add_subplot()
    for (label, (x, y)), color in zip(points.items(), ("tab:gray", "tab:green"), strict=True):
        ax.scatter([x], [y], s=80, color=color, zorder=3, label=label)
        ax.annotate(f"{label}\n({x:.0f}%, {y:.0f}%)", (x, y), textcoords="offset points", xytext=(8, -4), fontsize=8)
    ax.annotate("", xy=points["tuned"], xytext=points["base"], arrowprops={"arrowstyle": "->", "color": "tab:blue"})
    ratio, value = BY_KEY["self_agreement_ratio"], after.get("self_agreement_ratio")
    subtitle = f"{ratio.name} {format_value(ratio.key, value)}" if value is not None else ""
    ax.set_xlim(0, 105)
    ax.set_ylim(0, 105)
    for set_label, metric in ((ax.set_xlabel, BY_KEY[keep]), (ax.set_ylabel, BY_KEY[learn])):
        set_label(f"{metric.side}: {metric.name} ({metric.source} probe, %)")
    ax.set_title(f"learn vs keep\n{subtitle}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.savefig(path)
    return Path(path)


def plot_learning_curves(points: list[dict], path: str | Path) -> Path | None:
    """Each learning-curve measure against the optimizer step (the training wall time on the top axis); None
    without points."""
    # The table's learning-curve measures, then the Trainer's own held-out loss.
    panels = [key for key in [m.key for m in CURVE] + ["eval_loss"] if any(key in point for point in points)]
    if not points or not panels:
        return None
    columns = min(4, len(panels))  # a grid, four panels a row at most
    rows = -(-len(panels) // columns)
    fig = _figure(3.2 * columns, 3.4 * rows)
    for index, key in enumerate(panels):
        ax = fig.add_subplot(rows, columns, index + 1)
        shown = [point for point in points if key in point]
        metric = BY_KEY.get(key)
        scale = 100 if metric is not None and metric.unit == FRACTION else 1
        ax.plot([p["step"] for p in shown], [scale * p[key] for p in shown], "o-", color="tab:blue")
        ax.set_title(metric.plot_title if metric else f"{TRAINER_METRICS.get(key, key)}\n(lower is better)", fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        top = ax.secondary_xaxis("top", functions=_step_to_seconds(shown))
        top.set_xlabel("training wall time, s", fontsize=8)
    fig.savefig(path)
    return Path(path)


def _step_to_seconds(points: list[dict]):
    """Both directions of a linear interpolation between step and training seconds (for the top axis)."""
    import numpy as np

    steps = np.array([0.0] + [float(p["step"]) for p in points])
    seconds = np.array([0.0] + [float(p["train_seconds"]) for p in points])
    return (lambda x: np.interp(x, steps, seconds), lambda y: np.interp(y, seconds, steps))


def write_plots(output_dir: str | Path) -> list[Path]:
    """Draw whatever the run directory has data for; returns the PNGs written."""
    out, written = Path(output_dir), []
    state = read_json(out / TRAINER_STATE_FILENAME)
    if state is not None:
        written.append(plot_loss_curves(state.get("log_history", []), out / LOSS_CURVES_PLOT))
    curves = read_json(out / LEARNING_CURVES_FILENAME)
    if curves:
        written.append(plot_learning_curves(curves.get("points", []), out / LEARNING_CURVES_PLOT))
    evaluation = read_json(out / EVALUATION_FILENAME)
    if evaluation is not None:
        written.append(plot_before_after(evaluation, out / BEFORE_AFTER_PLOT))
        written.append(plot_learn_keep(evaluation, out / LEARN_KEEP_PLOT))
    written = [p for p in written if p is not None]
    if written:
        logger.info("Plots: %s", ", ".join(str(p) for p in written))
    return written

