"""What a run learned and what it kept: its options (``options.EvaluationArguments``), perplexity (``perplexity``),
reply quality (``generation_metrics``), before vs after (``before_after``), the table of metrics (``metrics_table``),
one checkpoint (``checkpoint``), plots (``plots``), local ``evaluate`` modules (``metrics/``)."""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "perplexity": (
        "support_dataset", "support_perplexity", "general_perplexity", "load_general_text",
        "tokenize_general_text", "window_spans",
    ),
    "generation_metrics": ("load_metric", "greedy_config", "generation_metrics"),
    "options": ("EvaluationArguments",),
    "before_after": ("BeforeAfterEvaluator", "evaluator_for_run", "frozen_prefix_states"),
    "checkpoint": ("evaluate_checkpoint", "compare_models"),
    "probes": ("ProbeItem", "ProbeError", "load_facts_probe", "load_skills_probe"),
    "metrics_table": ("Metric", "METRICS", "format_change", "format_value"),
    "report": ("learn_keep", "format_report"),
    "plots": ("write_plots",),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
