"""The options of the data path, as a dataclass a recipe and the CLI fill. (The before/after evaluation's options,
which read the same held-out data, are ``evaluation.options.EvaluationArguments``.)"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..common import check_choice

OVERLONG_POLICIES = ("drop_oldest_turns", "drop_example")

DATA_FORMATS = ("auto", "messages", "pairs", "bitext", "sgd", "abcd")


@dataclass
class DataArguments:
    dataset: str | None = field(
        default="data/train.jsonl",
        metadata={"help": "Training dialogues: a .jsonl/.json/.csv file, a directory of them, or a Hub dataset id. "
                  "'none': no dialogues (a run on --faq drills alone)."},
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

    def __post_init__(self):
        check_choice("overlong_policy", self.overlong_policy, OVERLONG_POLICIES)
        check_choice("data_format", self.data_format, DATA_FORMATS)
        if self.max_length < 16:
            raise ValueError(f"--max_length {self.max_length}: must be at least 16 tokens.")
        if not 0.0 <= self.validation_split_ratio < 1.0:
            raise ValueError(f"--validation_split_ratio {self.validation_split_ratio}: must be in [0, 1).")
        for name in ("max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} {getattr(self, name)}: give a count >= 1, or leave it unset for all.")
        if self.eval_dataset in ("", "none", "None"):
            self.eval_dataset = None
        if self.dataset in ("", "none", "None"):
            self.dataset = None

