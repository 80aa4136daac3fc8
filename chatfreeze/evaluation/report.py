"""The learn-vs-keep report: one view of what a run learned (company facts, support perplexity) and what it kept
(short-answer accuracy, self-agreement, general-text perplexity), before vs after, for the log, the CLI,
``evaluation.json`` and the model card. Which metric goes where, and how its change is written, is
``metrics_table``'s."""

from __future__ import annotations

from .metrics_table import HEADLINE, KEEP, RATIO, change_of, describe, format_change, format_value, is_lm_eval


def learn_keep(before: dict, after: dict) -> dict:
    """``{"learn": {metric: {before, after, change_*}}, "keep": {...}}`` for the metrics both sides have (a ratio
    needs only its after: the base is 1.0), then the lm-evaluation-harness metrics under keep."""
    report: dict = {"learn": {}, "keep": {}}
    for metric in HEADLINE:
        if metric.key in after and (metric.key in before or metric.kind == RATIO):
            report[metric.side][metric.key] = change_of(metric.key, before.get(metric.key), after[metric.key])
    for key in sorted(k for k in after if is_lm_eval(k) and k in before):
        report[KEEP][key] = change_of(key, before[key], after[key])
    return report


def _line(key: str, entry: dict) -> str:
    label, before, after = describe(key).label, entry.get("before"), entry["after"]
    if before is None or describe(key).kind == RATIO:
        return f"{label}: {format_value(key, after)}"
    change = format_change(key, before, after)
    return f"{label}: {format_value(key, before)} -> {format_value(key, after)}" + (f" ({change})" if change else "")


def format_report(report: dict, not_measured: list[str] | None = None) -> str:
    """``Learned:`` and ``Kept:`` lines, then what was not measured."""
    lines = []
    for section, title in (("learn", "Learned"), ("keep", "Kept")):
        entries = report.get(section) or {}
        lines.append(f"{title}:" if entries else f"{title}: nothing measured")
        lines += [f"  {_line(key, entry)}" for key, entry in entries.items()]
    lines += [f"Not measured: {what}" for what in not_measured or []]
    return "\n".join(lines)
