"""The learn-vs-keep report: one view of what a run learned (company facts, support perplexity) and what it kept
(short-answer accuracy, self-agreement, general-text perplexity), before vs after, for the log, the CLI,
``evaluation.json`` and the model card."""

from __future__ import annotations

LM_EVAL_PREFIX = "lm_eval:"  # lm-evaluation-harness metrics: "lm_eval:<task>:<metric>", reported under keep

# metric: (section, label, kind). kind: "accuracy" (0..1, change in points), "perplexity" (change in %),
# "ratio" (after only; 1.0 = the base itself), "score" (absolute change).
REPORTED = {
    "facts_accuracy": ("learn", "company facts right (facts probe)", "accuracy"),
    "support_perplexity": ("learn", "support perplexity (held-out dialogues)", "perplexity"),
    "skills_accuracy": ("keep", "general short answers right (skills probe)", "accuracy"),
    "self_agreement_ratio": ("keep", "self-agreement ratio (NLL on the base's own replies, tuned / base)", "ratio"),
    "general_perplexity": ("keep", "general-text perplexity (forgetting)", "perplexity"),
    "rougeL": ("learn", "ROUGE-L of held-out replies", "score"),
    "chrf": ("learn", "chrF of held-out replies", "score"),
}


def change_of(key: str, before: float | None, after: float | None) -> dict:
    kind = REPORTED[key][2]
    entry = {"before": before, "after": after}
    if before is None or after is None:
        return entry
    if kind == "accuracy":
        entry["change_points"] = 100.0 * (after - before)
    elif kind == "perplexity":
        entry["change_pct"] = 100.0 * (after / before - 1.0)
    elif kind == "score":
        entry["change"] = after - before
    return entry


def learn_keep(before: dict, after: dict) -> dict:
    """``{"learn": {metric: {before, after, change_*}}, "keep": {...}}`` for the metrics both sides have."""
    report: dict = {"learn": {}, "keep": {}}
    for key, (section, _, _) in REPORTED.items():
        if key in after and (key in before or REPORTED[key][2] == "ratio"):
            report[section][key] = change_of(key, before.get(key), after[key])
    for key in sorted(k for k in after if k.startswith(LM_EVAL_PREFIX) and k in before):
        report["keep"][key] = {"before": before[key], "after": after[key], "change": after[key] - before[key]}
    return report


def _line(key: str, entry: dict) -> str:
    _, label, kind = REPORTED.get(key, ("keep", f"{key.removeprefix(LM_EVAL_PREFIX)} (lm-eval)", "score"))
    before, after = entry.get("before"), entry["after"]
    if kind == "accuracy":
        return f"{label}: {100 * before:.1f}% -> {100 * after:.1f}% ({entry['change_points']:+.1f} points)"
    if kind == "perplexity":
        return f"{label}: {before:.4g} -> {after:.4g} ({entry['change_pct']:+.1f}%)"
    if kind == "ratio":
        return f"{label}: {after:.3f}"
    return f"{label}: {before:.4g} -> {after:.4g} ({entry['change']:+.3g})"


def format_report(report: dict, not_measured: list[str] | None = None) -> str:
    """``Learned:`` and ``Kept:`` lines, then what was not measured."""
    lines = []
    for section, title in (("learn", "Learned"), ("keep", "Kept")):
        entries = report.get(section) or {}
        lines.append(f"{title}:" if entries else f"{title}: nothing measured")
        lines += [f"  {_line(key, entry)}" for key, entry in entries.items()]
    lines += [f"Not measured: {what}" for what in not_measured or []]
    return "\n".join(lines)
