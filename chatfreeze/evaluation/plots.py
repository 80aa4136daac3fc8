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
    LOSS_CURVES_PLOT,
    TRAINER_STATE_FILENAME,
    read_json,
)

logger = logging.getLogger(__name__)
METRIC_TITLES = {
    "support_perplexity": "support perplexity\n(held-out, lower is better)",
    "general_perplexity": "general-text perplexity\n(forgetting, lower is better)",
    "rougeL": "ROUGE-L\n(higher is better)",
    "chrf": "chrF\n(higher is better)",
    "facts_accuracy": "company facts right\n(learn, higher is better)",
    "skills_accuracy": "general short answers right\n(keep, higher is better)",
}


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
    keys = [k for k in METRIC_TITLES if k in before and k in after]
    if not keys:
        return None
    fig = _figure(3.0 * len(keys), 3.6)
    for index, key in enumerate(keys, start=1):
        ax = fig.add_subplot(1, len(keys), index)
        values = [before[key], after[key]]
        bars = ax.bar(["before", "after"], values, color=["tab:gray", "tab:green"])
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values])
        change = (f"{100 * (values[1] / values[0] - 1):+.1f}%" if key.endswith("perplexity") and values[0]
                  else f"{values[1] - values[0]:+.3g}")
        ax.set_title(f"{METRIC_TITLES[key]}\nchange {change}", fontsize=9)
        ax.set_ylim(0, max(values) * 1.2 or 1.0)
    fig.suptitle("before vs after training")
    fig.savefig(path)
    return Path(path)


def plot_learn_keep(evaluation: dict, path: str | Path) -> Path | None:
    """Learn (facts accuracy) against keep (short-answer accuracy), base and tuned marked; None without both."""
    before, after = evaluation.get("before") or {}, evaluation.get("after") or {}
    keys = ("skills_accuracy", "facts_accuracy")
    if not all(k in before and k in after for k in keys):
        return None
    fig = _figure(5.2, 4.4)
    ax = fig.add_subplot()
    points = {"base": before, "tuned": after}
    for (label, values), color in zip(points.items(), ("tab:gray", "tab:green"), strict=True):
        x, y = 100 * values["skills_accuracy"], 100 * values["facts_accuracy"]
        ax.scatter([x], [y], s=80, color=color, zorder=3, label=label)
        ax.annotate(f"{label}\n({x:.0f}%, {y:.0f}%)", (x, y), textcoords="offset points", xytext=(8, -4), fontsize=8)
    ax.annotate("", xy=(100 * after["skills_accuracy"], 100 * after["facts_accuracy"]),
                xytext=(100 * before["skills_accuracy"], 100 * before["facts_accuracy"]),
                arrowprops={"arrowstyle": "->", "color": "tab:blue"})
    ratio = after.get("self_agreement_ratio")
    subtitle = f"self-agreement ratio {ratio:.3f}" if ratio is not None else ""
    ax.set_xlim(0, 105)
    ax.set_ylim(0, 105)
    ax.set_xlabel("keep: general short answers right (skills probe, %)")
    ax.set_ylabel("learn: company facts right (facts probe, %)")
    ax.set_title(f"learn vs keep\n{subtitle}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.savefig(path)
    return Path(path)


def write_plots(output_dir: str | Path) -> list[Path]:
    """Draw whatever the run directory has data for; returns the PNGs written."""
    out, written = Path(output_dir), []
    state = read_json(out / TRAINER_STATE_FILENAME)
    if state is not None:
        written.append(plot_loss_curves(state.get("log_history", []), out / LOSS_CURVES_PLOT))
    evaluation = read_json(out / EVALUATION_FILENAME)
    if evaluation is not None:
        written.append(plot_before_after(evaluation, out / BEFORE_AFTER_PLOT))
        written.append(plot_learn_keep(evaluation, out / LEARN_KEEP_PLOT))
    written = [p for p in written if p is not None]
    if written:
        logger.info("Plots: %s", ", ".join(str(p) for p in written))
    return written

