"""Every option of a chatfreeze run, as dataclasses that a YAML recipe and CLI flags both fill.

``parse_args`` reads ``--config FILE.yaml`` first, then lets any CLI flag override a field; an unknown
key in the YAML or on the CLI is an error that names it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .modeling import DEFAULT_MODEL

OVERLONG_POLICIES = ("drop_oldest_turns", "drop_example")
DATA_FORMATS = ("auto", "messages", "pairs", "bitext", "sgd", "abcd")
DEFAULT_OUTPUT_ROOT = "outputs"


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Hub id or local directory of the pretrained chat model to freeze-tune."},
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "Hub revision (branch, tag or commit) of the model."}
    )
    model_dtype: str = field(
        default="auto",
        metadata={
            "help": "Weights dtype: auto (float32 master weights; bf16 mixed precision on GPUs that support it), "
            "float32, bfloat16 or float16."
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom modelling code from the Hub."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel, e.g. sdpa, eager or flash_attention_2."}
    )

    def __post_init__(self):
        if self.model_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(
                f"--model_dtype {self.model_dtype!r}: choose auto, float32, bfloat16 or float16."
            )


@dataclass
class FreezeArguments:
    num_frozen_layers: str = field(
        default="0.8",
        metadata={
            "help": "Transformer blocks to freeze, counted from the bottom. N freezes blocks 0..N-1; -N trains "
            "only the top N blocks; a fraction 0<f<1 freezes floor(f * num_layers) blocks; 0 freezes none."
        },
    )
    freeze_embeddings: bool = field(
        default=True, metadata={"help": "Freeze the input embeddings (and a head tied to them)."}
    )
    freeze_final_norm: bool = field(
        default=False, metadata={"help": "Also freeze the final norm above the last block."}
    )
    train_lm_head: bool = field(
        default=False,
        metadata={
            "help": "Train the LM head. If it is tied to frozen embeddings it is untied (copied) first and the "
            "saved config says tie_word_embeddings=false."
        },
    )
    extra_frozen_patterns: list[str] = field(
        default_factory=list,
        metadata={"help": "Anchored regexes (re.fullmatch on parameter names) of further parameters to freeze."},
    )
    extra_trainable_patterns: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Anchored regexes of parameters to train even inside frozen blocks, e.g. "
            "'model\\.layers\\.\\d+\\.input_layernorm\\.weight'. Applied after extra_frozen_patterns."
        },
    )

    def __post_init__(self):
        self.num_frozen_layers = str(self.num_frozen_layers)
        parse_layer_count(self.num_frozen_layers)  # validates the form; the range is checked against the model


def parse_layer_count(value: str) -> int | float:
    """``"24"`` -> 24, ``"-6"`` -> -6, ``"0.8"`` -> 0.8; anything else is an error naming the option."""
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is None or not 0.0 < number < 1.0:
        raise ValueError(
            f"--num_frozen_layers {value!r}: give a whole number of blocks (negative = train only the top |N|) "
            "or a fraction strictly between 0 and 1."
        )
    return number


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

    def __post_init__(self):
        if self.overlong_policy not in OVERLONG_POLICIES:
            raise ValueError(f"--overlong_policy {self.overlong_policy!r}: choose one of {', '.join(OVERLONG_POLICIES)}.")
        if self.data_format not in DATA_FORMATS:
            raise ValueError(f"--data_format {self.data_format!r}: choose one of {', '.join(DATA_FORMATS)}.")
        if self.max_length < 16:
            raise ValueError(f"--max_length {self.max_length}: must be at least 16 tokens.")
        if not 0.0 <= self.validation_split_ratio < 1.0:
            raise ValueError(f"--validation_split_ratio {self.validation_split_ratio}: must be in [0, 1).")
        if self.eval_dataset in ("", "none", "None"):
            self.eval_dataset = None
        if self.general_text in ("", "none", "None"):
            self.general_text = None
        if self.general_window < 2 or not 1 <= self.general_stride <= self.general_window:
            raise ValueError(f"--general_window {self.general_window} / --general_stride {self.general_stride}: "
                             "need a window of at least 2 tokens and 1 <= stride <= window.")
        if (self.general_max_windows or 0) < 0 or self.generation_eval_samples < 0 or self.generation_max_new_tokens < 1:
            raise ValueError("--general_max_windows and --generation_eval_samples must be >= 0, "
                             "--generation_max_new_tokens >= 1.")


@dataclass
class FreezeTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with defaults suited to freeze-tuning a small chat model."""

    output_dir: str | None = field(
        default=f"{DEFAULT_OUTPUT_ROOT}/chatfreeze",
        metadata={"help": "Where the model, plan, metrics and checkpoints go."},
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak AdamW learning rate."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the training dialogues."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Batch size per device."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Eval batch size per device."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up: steps, or a fraction of the steps if < 1."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    logging_steps: float = field(default=5, metadata={"help": "Log every N steps."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: no, steps or epoch."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    seed: int = field(default=42, metadata={"help": "Random seed (data order, init of anything new)."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Allow writing over an output_dir that holds a finished run or other files."},
    )
    resume_from_checkpoint: str | None = field(
        default="auto",
        metadata={"help": "auto: resume from the newest checkpoint in output_dir if any; a path; or 'none'."},
    )
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "Training sampler: group_by_length (batches of similar length: less padding to compute), "
            "random, sequential or batch_rebalance.",
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    fast_path: bool = field(
        default=True,
        metadata={
            "help": "Freeze-aware fast path: the frozen prefix runs without autograd and the LM head + loss only "
            "at labelled positions (same loss). false = the plain Trainer path, for comparison."
        },
    )
    prefix_cache: str = field(
        default="auto",
        metadata={
            "help": "Cache the frozen prefix's output per example and train later epochs from it: auto (when the "
            "run has more than one epoch and the prefix is deterministic; RAM, or a disk memmap if RAM is "
            "short), ram, disk or off."
        },
    )
    prefix_cache_dtype: str = field(
        default="auto",
        metadata={
            "help": "Storage dtype of the prefix cache: auto (the model's dtype: exact), float32, bfloat16 or "
            "float16 (half the memory; approximate for a float32 model)."
        },
    )
    prefix_cache_max_gb: float = field(
        default=4.0, metadata={"help": "Largest prefix cache allowed (GB); a bigger one is switched off."}
    )
    prefix_cache_dir: str | None = field(
        default=None, metadata={"help": "Directory for a disk prefix cache (default: the system temp dir)."}
    )

    def __post_init__(self):
        import torch

        from .fastpath import PREFIX_CACHE_DTYPES, PREFIX_CACHE_MODES

        # Pinned host memory only helps copies to a GPU; on a CPU-only machine torch warns about it every epoch.
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False
        if self.prefix_cache not in PREFIX_CACHE_MODES:
            raise ValueError(f"--prefix_cache {self.prefix_cache!r}: choose {', '.join(PREFIX_CACHE_MODES)}.")
        if self.prefix_cache_dtype not in PREFIX_CACHE_DTYPES:
            raise ValueError(
                f"--prefix_cache_dtype {self.prefix_cache_dtype!r}: choose {', '.join(PREFIX_CACHE_DTYPES)}."
            )
        if not self.prefix_cache_max_gb > 0:
            raise ValueError(f"--prefix_cache_max_gb {self.prefix_cache_max_gb}: must be > 0 (use --prefix_cache "
                             "off to switch the cache off).")
        super().__post_init__()


ARGUMENT_CLASSES = (ModelArguments, DataArguments, FreezeArguments, FreezeTrainingArguments)


def make_parser() -> HfArgumentParser:
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.add_argument(
        "--config", default=None, help="YAML recipe; any field in it can be overridden by a CLI flag."
    )
    return parser


def load_recipe(path: str, parser: HfArgumentParser) -> dict:
    """Read a YAML recipe and convert its values with each option's own type; unknown keys are errors."""
    recipe_path = Path(path)
    if not recipe_path.is_file():
        raise ValueError(f"--config {path}: no such file.")
    try:
        recipe = yaml.safe_load(recipe_path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ValueError(f"{where}: not valid YAML ({getattr(err, 'problem', err)}).") from None
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe is a mapping of option: value.")
    actions = {action.dest: action for action in parser._actions}
    converted = {}
    for key, value in recipe.items():
        if key not in actions or key in ("help", "config"):
            raise ValueError(f"{path}: unknown option {key!r}. See `python scripts/train.py --help`.")
        converted[key] = _coerce(actions[key], value, path, key)
    return converted


def _coerce(action: argparse.Action, value, path: str, key: str):
    convert = action.type if callable(action.type) else None
    try:
        if isinstance(value, list):
            return [convert(v) if convert and isinstance(v, str) else v for v in value]
        if convert and isinstance(value, str):
            return convert(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: option {key!r} = {value!r} is not valid ({err}).") from None
    return value


def parse_args(argv: list[str] | None = None):
    """Return ``(model_args, data_args, freeze_args, training_args)`` from ``--config`` + CLI flags."""
    parser = make_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**load_recipe(known.config, parser))
    *parsed, remaining = parser.parse_args_into_dataclasses(
        args=rest, return_remaining_strings=True, look_for_args_file=False
    )
    if remaining:
        raise ValueError(f"unknown option(s): {' '.join(remaining)}. See `python scripts/train.py --help`.")
    dataclasses = [obj for obj in parsed if isinstance(obj, ARGUMENT_CLASSES)]
    model_args, data_args, freeze_args, training_args = dataclasses
    return model_args, data_args, freeze_args, training_args


def field_names(cls) -> set[str]:
    return {f.name for f in fields(cls)}
