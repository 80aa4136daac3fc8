"""The options of the data path (and, for now, of the before/after evaluation that reads the same held-out data),
as a dataclass a recipe and the CLI fill."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..common import check_choice

OVERLONG_POLICIES = ("drop_oldest_turns", "drop_example")

DATA_FORMATS = ("auto", "messages", "pairs", "bitext", "sgd", "abcd")


@dataclass
class DataArguments:
    dataset: str = field(
        default="data/train.jsonl",
        metadata={"help": "Training dialogues: a .jsonl/.json/.csv file, a directory of them, or a Hub dataset id."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub dataset to train on."})
    eval_dataset: str | None = field(
        default="data/validation.jsonl",
        metadata={"help": "Held-out dialogues (same formats as --dataset). Empty: carve --validation_split_ratio."},
    )
    eval_split: str = field(default="validation", metadata={"help": "Split of a Hub eval dataset."})
    validation_split_ratio: float = field(
        default=0.0,
        metadata={"help": "Without --eval_dataset, hold out this fraction of --dataset (seeded by --seed)."},
    )
    data_format: str = field(
        default="auto",
        metadata={"help": f"Input format: {', '.join(DATA_FORMATS)}. auto detects from file type and columns."},
    )
    messages_column: str = field(default="messages", metadata={"help": "Column holding a list of messages."})
    prompt_column: str | None = field(
        default=None, metadata={"help": "Column of the user's turn for prompt/response data (auto-detected if unset)."}
    )
    response_column: str | None = field(
        default=None, metadata={"help": "Column of the assistant's reply for prompt/response data (auto-detected)."}
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System prompt added to every dialogue that has none (and used by the chat)."}
    )
    max_length: int = field(default=1024, metadata={"help": "Maximum tokens per rendered dialogue."})
    overlong_policy: str = field(
        default="drop_oldest_turns",
        metadata={
            "help": "What to do with a dialogue longer than --max_length: drop_oldest_turns (keep the system "
            "prompt, drop the oldest user/assistant exchanges) or drop_example. Counts are reported."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training dialogues."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many eval dialogues."})
    # Before/after evaluation (chatfreeze.evaluation): support perplexity, forgetting, generation metrics.
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
        check_choice("overlong_policy", self.overlong_policy, OVERLONG_POLICIES)
        check_choice("data_format", self.data_format, DATA_FORMATS)
        if self.max_length < 16:
            raise ValueError(f"--max_length {self.max_length}: must be at least 16 tokens.")
        if not 0.0 <= self.validation_split_ratio < 1.0:
            raise ValueError(f"--validation_split_ratio {self.validation_split_ratio}: must be in [0, 1).")
        for name in ("max_train_samples", "max_eval_samples", "lm_eval_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} {getattr(self, name)}: give a count >= 1, or leave it unset for all.")
        if self.eval_dataset in ("", "none", "None"):
            self.eval_dataset = None
        if self.general_text in ("", "none", "None"):
            self.general_text = None
        if self.general_window < 2 or not 1 <= self.general_stride <= self.general_window:
            raise ValueError(f"--general_window {self.general_window} / --general_stride {self.general_stride}: "
                             "need a window of at least 2 tokens and 1 <= stride <= window.")
        if self.facts_probe in ("", "none", "None"):
            self.facts_probe = None
        if self.probe_max_new_tokens < 1 or self.probe_batch_size < 1:
            raise ValueError(f"--probe_max_new_tokens {self.probe_max_new_tokens} / --probe_batch_size "
                             f"{self.probe_batch_size}: both must be >= 1.")
        if (self.general_max_windows or 0) < 0 or self.generation_eval_samples < 0 or self.generation_max_new_tokens < 1:
            raise ValueError("--general_max_windows and --generation_eval_samples must be >= 0, "
                             "--generation_max_new_tokens >= 1.")
