"""The metrics a run reports, in one table, and the one way a before/after change is computed and written.

Every reader of a metric -- the learn-vs-keep report (``evaluation.json``, the log, ``chatfreeze evaluate``), the
``change`` section and ``all_results.json``, the plots, the model card and the web chat's panel -- takes its side
(learn or keep), labels, direction and kind of change from ``METRICS``; none guesses them from the metric's name.
Adding a metric is one row here (and its measurement in ``before_after``).

Pure data: no torch, so the card, ``push --help`` and the web chat read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lm_eval import PREFIX as LM_EVAL_PREFIX

LEARN, KEEP = "learn", "keep"
DEV, TEST = "dev", "test"  # a probe's halves: choices (a checkpoint, an alpha) read the dev half only
HIGHER, LOWER = "higher", "lower"

# How a change from before to after is measured (``kind``), and the field it has in evaluation.json:
POINTS = "points"  # a fraction 0..1 (shown as %): after - before in percentage points, "change_points"
RELATIVE = "relative"  # after / before - 1, in %, "change_pct"
ABSOLUTE = "absolute"  # after - before, "change"
RATIO = "ratio"  # already the tuned model over the base (1.0 = the base): no change of its own
CHANGE_FIELDS = {POINTS: "change_points", RELATIVE: "change_pct", ABSOLUTE: "change"}

FRACTION = "fraction"  # the unit shown as a percentage


@dataclass(frozen=True)
class Metric:
    """One row: what a metric is and how each reader shows it."""

    key: str  # its name in evaluation.json's before/after
    side: str  # LEARN or KEEP: the report section it goes under
    kind: str  # POINTS, RELATIVE, ABSOLUTE or RATIO: how its change is measured
    direction: str | None  # HIGHER or LOWER is better (None: not known, an lm-eval metric)
    unit: str  # what the number is; FRACTION values are shown as percentages
    name: str  # short: plot panels, the CLI, the card's alpha table
    label: str  # the report's line (log, CLI, the card's learned-vs-kept block)
    card_label: str  # the card's results table and the model-index metric name
    hub_type: str  # the model-index metric type
    source: str  # what it is measured on: "support", "general", "facts", "skills" (the model-index dataset)
    plot_note: str = ""  # before the direction in the plot panel's title
    headline: bool = True  # False: recorded in evaluation.json only (not reported, plotted or on the card)
    curve: bool = False  # measured at each evaluation during training too (the learning curves; no test half)
    half: str = ""  # DEV or TEST: measured on that half of its probe only ("": the whole probe, or no halves)

    def __post_init__(self):
        if self.kind == POINTS and self.unit != FRACTION:
            raise ValueError(f"{self.key}: a change in points needs a fraction (0..1)")

    @property
    def plotted(self) -> bool:
        """A before/after bar pair; a ratio has no before of its own (the base is 1.0 by definition)."""
        return self.headline and self.kind != RATIO

    @property
    def plot_title(self) -> str:
        note = f"{self.plot_note}, " if self.plot_note else ""
        return f"{self.name}\n({note}{self.direction} is better)"

    @property
    def direction_text(self) -> str:
        if self.direction is None:
            return ""
        return ("1.0 = unchanged; " if self.kind == RATIO else "") + f"{self.direction} is better"


METRICS: tuple[Metric, ...] = (
    # learn
    Metric("facts_accuracy", LEARN, POINTS, HIGHER, FRACTION, "company facts right",
           "company facts right (facts probe)", "Company facts right (facts probe, learn)", "accuracy", "facts",
           plot_note="learn"),
    # The facts probe's halves (facts.probe_split): choices (a checkpoint, an alpha) may read the dev half only; the
    # test half is what a run reports as learned.
    Metric("facts_test_accuracy", LEARN, POINTS, HIGHER, FRACTION, "company facts right (test half)",
           "company facts right, test half (no choice read it)", "Company facts right (facts probe test half, learn)",
           "accuracy", "facts", plot_note="learn, test half", half=TEST),
    Metric("facts_dev_accuracy", LEARN, POINTS, HIGHER, FRACTION, "company facts right (dev half)",
           "company facts right, dev half (choices read it)", "Company facts right (facts probe dev half)",
           "accuracy", "facts", headline=False, curve=True, half=DEV),
    # Questions of a half answered with a wrong value (a reject regex of the probe: a wrong price, a wrong window),
    # and with a neighbour fact's value (every value pattern of a confusable fact of the sheet; with --facts).
    Metric("facts_test_wrong_values", LEARN, ABSOLUTE, LOWER, "questions", "wrong values stated (test half)",
           "facts questions answered with a wrong value, test half", "Wrong values stated (facts probe test half)",
           "count", "facts", half=TEST),
    Metric("facts_dev_wrong_values", LEARN, ABSOLUTE, LOWER, "questions", "wrong values stated (dev half)",
           "facts questions answered with a wrong value, dev half", "Wrong values stated (facts probe dev half)",
           "count", "facts", headline=False, half=DEV),
    Metric("facts_test_neighbour_errors", LEARN, ABSOLUTE, LOWER, "questions", "neighbour's value stated (test half)",
           "facts questions answered with a neighbour fact's value, test half",
           "Neighbour fact's value stated (facts probe test half)", "count", "facts", half=TEST),
    Metric("facts_dev_neighbour_errors", LEARN, ABSOLUTE, LOWER, "questions", "neighbour's value stated (dev half)",
           "facts questions answered with a neighbour fact's value, dev half",
           "Neighbour fact's value stated (facts probe dev half)", "count", "facts", headline=False, half=DEV),
    # With --facts: questions the drills asked, verbatim. Below facts_dev_accuracy's level of learning it says the
    # drills were not fitted (train more); well above it, that new phrasings are the gap (more varied questions).
    Metric("facts_drilled_accuracy", LEARN, POINTS, HIGHER, FRACTION, "company facts right (drilled questions)",
           "company facts right on questions the drills asked (fitted?)",
           "Company facts right (questions the drills asked)", "accuracy", "facts", headline=False, curve=True),
    # What --metric_for_best_model facts_dev_accuracy_if_kept ranks (training.curves): the dev half's accuracy when
    # the general text's dev split stayed within --alpha_tolerance of the base's, else minus the relative excess.
    Metric("facts_dev_accuracy_if_kept", LEARN, ABSOLUTE, HIGHER, "", "company facts right (dev half) if kept",
           "company facts right, dev half, if general text's dev split kept (else minus its excess)",
           "Company facts right (facts probe dev half) if kept", "accuracy", "facts", headline=False, curve=True,
           half=DEV),
    Metric("support_perplexity", LEARN, RELATIVE, LOWER, "perplexity (exp of NLL per assistant token)",
           "support perplexity", "support perplexity (held-out dialogues)", "Support perplexity (held-out dialogues)",
           "perplexity", "support", plot_note="held-out", curve=True),
    Metric("rougeL", LEARN, ABSOLUTE, HIGHER, "F-measure 0..1", "ROUGE-L", "ROUGE-L of held-out replies",
           "ROUGE-L of replies", "rouge", "support"),
    Metric("chrf", LEARN, ABSOLUTE, HIGHER, "score 0..100", "chrF", "chrF of held-out replies", "chrF of replies",
           "chrf", "support"),
    # keep
    Metric("skills_accuracy", KEEP, POINTS, HIGHER, FRACTION, "general short answers right",
           "general short answers right (skills probe)", "General short answers right (skills probe, keep)",
           "accuracy", "skills", plot_note="keep", curve=True),
    Metric("self_agreement_ratio", KEEP, RATIO, LOWER, "tuned NLL / base NLL", "self-agreement ratio",
           "self-agreement ratio (NLL on the base's own replies, tuned / base)",
           "Self-agreement ratio (NLL on the base's own replies, tuned / base)", "ratio", "skills", curve=True),
    Metric("general_perplexity", KEEP, RELATIVE, LOWER, "perplexity (exp of NLL per token)",
           "general-text perplexity", "general-text perplexity (forgetting)", "General-text perplexity (forgetting)",
           "perplexity", "general", plot_note="forgetting", curve=True),
    # The general text after the reported windows (perplexity.split_general_ids): what
    # --metric_for_best_model facts_dev_accuracy_if_kept holds checkpoints to, so general_perplexity stays unchosen.
    Metric("general_dev_perplexity", KEEP, RELATIVE, LOWER, "perplexity (exp of NLL per token)",
           "general-text perplexity (dev split)", "general-text perplexity, dev split (choices read it)",
           "General-text perplexity (dev split)", "perplexity", "general", headline=False, curve=True, half=DEV),
    # the number behind the ratio, kept for the record
    Metric("self_agreement_nll", KEEP, RELATIVE, LOWER, "nats per token", "self-agreement NLL",
           "self-agreement NLL (the model's, on the base's own replies)",
           "Self-agreement NLL (the model's, on the base's own replies)", "nll", "skills", headline=False),
)
BY_KEY: dict[str, Metric] = {metric.key: metric for metric in METRICS}
CURVE: tuple[Metric, ...] = tuple(metric for metric in METRICS if metric.curve)
HEADLINE: tuple[Metric, ...] = tuple(metric for metric in METRICS if metric.headline)
# The Trainer's own held-out metrics (not before/after measurements: no row), as the card, the learning curves and
# their plot name them.
TRAINER_METRICS = {"eval_loss": "held-out support loss (the Trainer's)",
                   "eval_perplexity": "held-out support perplexity (the Trainer's)"}
# What a run reports as "learned": the facts probe's test half, which no choice read. A probe too small to split
# (fewer than two questions, so no halves) falls back to the whole probe.
LEARNED, LEARNED_FALLBACK = "facts_test_accuracy", "facts_accuracy"


def learned_key(*measurements: dict) -> str | None:
    """The key of the "learned" figure every one of ``measurements`` has (the test half first), or None."""
    for key in (LEARNED, LEARNED_FALLBACK):
        if all(key in values for values in measurements):
            return key
    return None


def is_lm_eval(key: str) -> bool:
    return key.startswith(LM_EVAL_PREFIX)


def describe(key: str) -> Metric:
    """The row of ``key``; an lm-evaluation-harness metric (``lm_eval:<task>:<metric>``) or a key the table does
    not know gets one made up: kept, absolute change, its key as its card label."""
    if key in BY_KEY:
        return BY_KEY[key]
    label = f"{key.removeprefix(LM_EVAL_PREFIX)} (lm-eval)" if is_lm_eval(key) else key
    return Metric(key, KEEP, ABSOLUTE, None, "", key, label, key, key, "lm-eval" if is_lm_eval(key) else "")


def change(key: str, before: float | None, after: float | None) -> dict:
    """``{"change_points" | "change_pct" | "change": value}``, or ``{}`` (a ratio, a side missing, a relative
    change from zero)."""
    kind = describe(key).kind
    if before is None or after is None or kind == RATIO or (kind == RELATIVE and not before):
        return {}
    if kind == POINTS:
        value = 100.0 * (after - before)
    elif kind == RELATIVE:
        value = 100.0 * (after / before - 1.0)
    else:
        value = after - before
    return {CHANGE_FIELDS[kind]: value}


def change_of(key: str, before: float | None, after: float | None) -> dict:
    """A report entry: ``{"before", "after"}`` and the change."""
    return {"before": before, "after": after} | change(key, before, after)


def format_value(key: str, value: float) -> str:
    """``30.0%`` for a fraction, ``1.070`` for a ratio, else 4 significant digits."""
    metric = describe(key)
    if metric.unit == FRACTION:
        return f"{100 * value:.1f}%"
    return f"{value:.3f}" if metric.kind == RATIO else f"{value:.4g}"


def format_change(key: str, before: float | None, after: float | None) -> str:
    """``+60.0 points``, ``-75.0%``, ``+0.2`` (3 significant digits); ``""`` where there is no change."""
    entry = change(key, before, after)
    if not entry:
        return ""
    value, kind = next(iter(entry.values())), describe(key).kind
    if kind == POINTS:
        return f"{value:+.1f} points"
    return f"{value:+.1f}%" if kind == RELATIVE else f"{value:+.3g}"


__all__ = ["ABSOLUTE", "BY_KEY", "HEADLINE", "KEEP", "TRAINER_METRICS", "LEARN", "METRICS", "POINTS", "RATIO", "RELATIVE", "Metric",
           "change", "change_of", "describe", "format_change", "format_value", "is_lm_eval",
           "learned_key"]
