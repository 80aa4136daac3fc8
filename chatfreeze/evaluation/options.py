"""The before/after evaluation's options, declared once: ``chatfreeze train`` collects them (a recipe and the CLI
fill them) and ``BeforeAfterEvaluator`` reads them as its settings, with the same names."""

from __future__ import annotations

from dataclasses import dataclass, field

NONE_VALUES = ("", "none", "None")


@dataclass
class EvaluationArguments:
    eval_before_after: bool = field(
        default=False,
        metadata={"help": "Measure the model before and after training (support perplexity on the held-out "
                  "dialogues, --general_text perplexity, ROUGE-L/chrF of greedy replies); writes evaluation.json."},
    )
    general_text: str | None = field(
        default=None,
        metadata={"help": "Plain-text file or Hub dataset id of general text for measuring forgetting "
                  "(perplexity before vs after). A file that does not exist is skipped with a log line."},
    )
    general_text_config: str | None = field(default=None, metadata={"help": "Hub configuration of --general_text."})
    general_text_split: str = field(default="test", metadata={"help": "Split of a Hub --general_text dataset."})
    general_window: int = field(default=512, metadata={"help": "General-text perplexity window, tokens."})
    general_stride: int = field(
        default=512, metadata={"help": "Start a window every N tokens; < --general_window scores with overlap context."}
    )
    general_max_windows: int | None = field(
        default=40, metadata={"help": "Score only the first N windows of --general_text (0: all of it)."}
    )
    generation_eval_samples: int = field(
        default=8, metadata={"help": "Held-out prompts answered greedily for ROUGE-L/chrF (0: skip)."}
    )
    generation_max_new_tokens: int = field(default=96, metadata={"help": "Reply length cap for those prompts."})
    facts_probe: str | None = field(
        default=None,
        metadata={"help": "Facts probe (JSONL of {question, expect: [regex], reject: [regex], fact}): greedy replies "
                  "with the run's system prompt, scored before and after (learn). The default recipe ships one."},
    )
    skills_probe: str | None = field(
        default="builtin",
        metadata={"help": "General skills probe for keep: 'builtin' (the prompt set shipped with chatfreeze), a "
                  "JSONL file of the same format, or 'none'. Gives short-answer accuracy and self-agreement."},
    )
    lm_eval_tasks: str | None = field(
        default=None,
        metadata={"help": "Comma-separated lm-evaluation-harness tasks (e.g. hellaswag,arc_easy) measured before and "
                  "after (keep); needs the optional lm-eval package and, for public tasks, the Hub."},
    )
    lm_eval_limit: int | None = field(default=None, metadata={"help": "Examples per lm-eval task (default: all)."})
    lm_eval_include_path: str | None = field(
        default=None, metadata={"help": "A folder of your own lm-eval task YAMLs (local data works offline)."}
    )
    probe_max_new_tokens: int = field(default=48, metadata={"help": "Reply length cap for probe questions."})
    probe_batch_size: int = field(
        default=64,
        metadata={"help": "Probe questions answered per generate call (on a 2-core CPU a batch of 64 decodes "
                  "~2x faster per reply than one of 16)."},
    )
    cache_base_measurements: bool = field(
        default=True,
        metadata={"help": "Cache the base model's before-training measurements (keyed by its weights, the inputs "
                  "and the settings) under $CHATFREEZE_CACHE, so the next run on the same base skips them."},
    )


    def __post_init__(self):
        if self.general_text in NONE_VALUES:
            self.general_text = None
        if self.facts_probe in NONE_VALUES:
            self.facts_probe = None
        if self.skills_probe in NONE_VALUES:
            self.skills_probe = None
        if self.general_window < 2 or not 1 <= self.general_stride <= self.general_window:
            raise ValueError(f"--general_window {self.general_window} / --general_stride {self.general_stride}: "
                             "need a window of at least 2 tokens and 1 <= stride <= window.")
        if self.probe_max_new_tokens < 1 or self.probe_batch_size < 1:
            raise ValueError(f"--probe_max_new_tokens {self.probe_max_new_tokens} / --probe_batch_size "
                             f"{self.probe_batch_size}: both must be >= 1.")
        if (self.general_max_windows or 0) < 0 or self.generation_eval_samples < 0 or self.generation_max_new_tokens < 1:
            raise ValueError("--general_max_windows and --generation_eval_samples must be >= 0, "
                             "--generation_max_new_tokens >= 1.")
        if self.lm_eval_limit is not None and self.lm_eval_limit < 1:
            raise ValueError(f"--lm_eval_limit {self.lm_eval_limit}: must be >= 1 (leave it unset for every example).")

    @property
    def max_windows(self) -> int | None:
        """``--general_max_windows`` as the scorer takes it: None (every window) for 0 or unset."""
        return self.general_max_windows or None
