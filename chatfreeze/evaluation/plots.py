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


def write_plots(output_dir: str | Path) -> list[Path]:
    """Draw whatever the run directory has data for; returns the PNGs written."""
    out, written = Path(output_dir), []
    state = read_json(out / TRAINER_STATE_FILENAME)
    if state is not None:
        written.append(plot_loss_curves(state.get("log_history", []), out / LOSS_CURVES_PLOT))
    evaluation = read_json(out / EVALUATION_FILENAME)
    if evaluation is not None:
        written.append(plot_before_after(evaluation, out / BEFORE_AFTER_PLOT))
    written = [p for p in written if p is not None]
    if written:
        logger.info("Plots: %s", ", ".join(str(p) for p in written))
    return written

