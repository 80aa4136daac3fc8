"""Every option of a chatfreeze run, collected: each concern defines its own dataclass next to the code that owns
it (``ModelArguments`` in modeling, ``DataArguments`` in data, ``EvaluationArguments`` in evaluation,
``FreezeArguments`` in freezing; ``FastPathArguments``, ``RetentionArguments`` and ``MethodArguments`` are mixed into
``FreezeTrainingArguments``); here they meet ``transformers.TrainingArguments``.

``parse_args`` reads ``--config FILE.yaml`` first, then lets any CLI flag override a field; an unknown key in the
YAML or on the CLI is an error that names it. Relative paths in a recipe (``dataset``, ``eval_dataset``,
``general_text``) resolve against the recipe file's folder, so a recipe works from any directory. A run that
replaces the packaged recipes' company (Kestrel & Co.: dialogues, system prompt) must also choose its facts sheet
and facts probe (``check_company``). ``help_text`` is ``chatfreeze train --help``: the options by topic
(``HELP_TOPICS``), one line each, with the value the run would use.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from transformers import HfArgumentParser, TrainingArguments

from ..common import LiteralPercentDefaultsHelpFormatter, expand_help, one_line_help
from ..data.options import DataArguments
from ..evaluation.options import EvaluationArguments
from ..facts.options import FactsArguments
from ..fastpath.options import FastPathArguments
from ..freezing.options import FreezeArguments
from ..modeling.options import ModelArguments
from ..retention.options import RetentionArguments
from ..rundir import OUTPUTS_ROOT
from .methods.options import MethodArguments

# The default recipe ships inside the package, so `chatfreeze train` works from any directory. The quick recipe
# (the default until 2026-12-06, no drills) is what the retention and facts studies start from.
DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "default.yaml"
QUICK_RECIPE = DEFAULT_RECIPE.with_name("quick.yaml")


def recipe_file(name: str) -> Path:
    """A packaged recipe by its name (``default``, ``quick``, ``facts``, ``faq``), else ``name`` as a file path."""
    packaged = DEFAULT_RECIPE.parent / f"{name}.yaml"
    return packaged if "/" not in name and packaged.is_file() else Path(name)


# Recipe keys that hold data paths: a relative one resolves against the recipe file's folder. (output_dir is
# not one of them: a run writes where it is started, never next to a recipe that may sit inside the package.)
PATH_KEYS = ("dataset", "eval_dataset", "general_text", "facts_probe", "skills_probe", "lm_eval_include_path", "facts",
             "text_replay", "faq", "faq_catalogue")
BUILTIN_VALUES = ("builtin", "none")  # values of those keys that name something built in, not a path

# Options of which a run takes one: the layer that sets one of them (a recipe over the recipe it extends, the CLI
# over the recipe) drops the other one inherited from below, so `--facts_ratio 0.5` works on the default recipe
# (which sets facts_per_fact). Both in one layer stay an error (FactsArguments says so).
ONE_OF = (("facts_per_fact", "facts_ratio"),)

# The packaged recipes are Kestrel & Co.'s: its dialogues and system prompt (COMPANY_DATA), its facts sheet and
# facts probe (COMPANY_FACTS). A run that replaces the former must choose the latter itself, or it would drill
# Kestrel's facts into another company's bot and grade that bot on Kestrel's questions.
COMPANY_DATA = ("dataset", "system_prompt")
COMPANY_FACTS = ("facts", "facts_probe")


@dataclass
class FreezeTrainingArguments(TrainingArguments, RetentionArguments, FastPathArguments, MethodArguments):
    """``TrainingArguments`` with defaults suited to freeze-tuning a small chat model."""

    output_dir: str | None = field(
        default=f"{OUTPUTS_ROOT}/chatfreeze",
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
    save_trained_only: bool = field(
        default=False,
        metadata={"help": "Save only the tensors training changed (delta.safetensors) and a manifest pinning the "
                  "base by a SHA-256 of every frozen tensor: about 1/6 of the full model for the default plan. "
                  "chatfreeze loads it on its base (checked) like a full model; `chatfreeze merge` makes it one."},
    )

    def __post_init__(self):
        import torch

        # Pinned host memory only helps copies to a GPU; on a CPU-only machine torch warns about it every epoch.
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False
        self.validate_fast_path()
        self.validate_method()
        self.validate_retention()
        validate_trainer_ranges(self)
        super().__post_init__()


ARGUMENT_CLASSES = (ModelArguments, DataArguments, EvaluationArguments, FreezeArguments, FreezeTrainingArguments,
                    FactsArguments)


class RunArguments(NamedTuple):
    """Every option of a run, one dataclass per concern (``run_training(*args)`` takes them in this order)."""

    model: ModelArguments
    data: DataArguments
    evaluation: EvaluationArguments
    freeze: FreezeArguments
    training: FreezeTrainingArguments
    facts: FactsArguments | None = None


def validate_trainer_ranges(args: TrainingArguments) -> None:
    """The Trainer's numeric options, checked before anything is loaded or written: transformers and torch take
    some out-of-range values silently (a negative --max_grad_norm switches clipping off, --max_steps -5 trains by
    epochs) and refuse others only once the model is loaded, in words that do not name the flag ("Invalid
    learning rate: -1.0"), or with a ZeroDivisionError (--gradient_accumulation_steps 0)."""
    checks = (
        ("learning_rate", args.learning_rate > 0, "must be > 0, e.g. 1e-4"),
        ("num_train_epochs", args.num_train_epochs > 0 or (args.num_train_epochs == 0 and args.max_steps > 0),
         "must be > 0 (0 only with --max_steps > 0)"),
        ("max_steps", args.max_steps == -1 or args.max_steps > 0,
         "give a number of optimizer steps > 0, or -1 to train --num_train_epochs"),
        ("per_device_train_batch_size", args.per_device_train_batch_size >= 1, "must be >= 1"),
        ("per_device_eval_batch_size", args.per_device_eval_batch_size >= 1, "must be >= 1"),
        ("gradient_accumulation_steps", args.gradient_accumulation_steps >= 1, "must be >= 1 (1 = no accumulation)"),
        ("eval_accumulation_steps", args.eval_accumulation_steps is None or args.eval_accumulation_steps >= 1,
         "must be >= 1, or unset"),
        ("warmup_steps", args.warmup_steps >= 0, "give steps >= 0, or a fraction of the steps below 1"),
        ("logging_steps", args.logging_steps > 0, "give steps > 0, or a fraction of the steps below 1"),
        ("save_steps", args.save_steps > 0, "give steps > 0, or a fraction of the steps below 1"),
        ("eval_steps", args.eval_steps is None or args.eval_steps > 0,
         "give steps > 0, or a fraction of the steps below 1"),
        ("save_total_limit", args.save_total_limit is None or args.save_total_limit >= 0,
         "give how many checkpoints to keep, >= 1 (0 keeps them all)"),
        ("weight_decay", args.weight_decay >= 0, "must be >= 0 (0 = none)"),
        ("max_grad_norm", args.max_grad_norm >= 0, "must be >= 0 (0 = no clipping)"),
        ("adam_beta1", 0 <= args.adam_beta1 < 1, "must be in [0, 1), e.g. 0.9"),
        ("adam_beta2", 0 <= args.adam_beta2 < 1, "must be in [0, 1), e.g. 0.999"),
        ("adam_epsilon", args.adam_epsilon >= 0, "must be >= 0, e.g. 1e-8"),
        ("label_smoothing_factor", 0 <= args.label_smoothing_factor < 1, "must be in [0, 1) (0 = none)"),
        ("seed", 0 <= args.seed < 2**32, "must be in [0, 2**32)"),
        ("data_seed", args.data_seed is None or 0 <= args.data_seed < 2**32, "must be in [0, 2**32), or unset"),
        ("dataloader_num_workers", args.dataloader_num_workers >= 0, "must be >= 0 (0 = load in the main process)"),
    )
    for name, ok, what in checks:
        if not ok:
            raise ValueError(f"--{name} {getattr(args, name)}: {what}.")


def make_parser(classes: tuple[type, ...] = ARGUMENT_CLASSES) -> HfArgumentParser:
    # Help strings are plain text ("0.02 = 2%"): the formatter keeps argparse from %-formatting them.
    parser = HfArgumentParser(classes, prog="chatfreeze train", formatter_class=LiteralPercentDefaultsHelpFormatter)
    parser.add_argument(
        "--config", default=None, help="YAML recipe; any field in it can be overridden by a CLI flag."
    )
    return parser


EXTENDS_KEY = "extends"  # a recipe that extends another: that one's options first, then its own on top


def is_packaged(recipe: Path) -> bool:
    """Whether ``recipe`` is one of the recipes shipped inside chatfreeze (Kestrel & Co.'s)."""
    return recipe.resolve().parent == DEFAULT_RECIPE.parent


def merge_layer(below: dict, layer: dict) -> dict:
    """``below`` overridden by ``layer``; an option of a ``ONE_OF`` pair that ``layer`` sets drops its partner
    inherited from ``below`` (unless ``layer`` sets both: then the options' own check refuses them)."""
    merged = dict(below)
    for pair in ONE_OF:
        for key, other in (pair, pair[::-1]):
            if key in layer and other not in layer:
                merged.pop(other, None)
    merged.update(layer)
    return merged


def load_recipe(path: str, parser: HfArgumentParser, _seen: tuple[Path, ...] = (),
                origins: dict[str, list[tuple[Path, Any]]] | None = None) -> dict:
    """Read a YAML recipe and convert its values with each option's own type; unknown keys are errors. A recipe
    with ``extends: OTHER.yaml`` (relative to its own folder) starts from OTHER's options and overrides them.
    ``origins``, when given, receives for each option the recipes that set it, in order, with their values."""
    recipe_path = Path(path)
    if recipe_path.is_dir():
        recipes = sorted(recipe_path.glob("*.yaml")) + sorted(recipe_path.glob("*.yml"))
        example = f", e.g. {recipes[0]}" if recipes else ""
        raise ValueError(f"--config {path}: a directory, not a recipe; give a YAML recipe file{example}.")
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
    if EXTENDS_KEY in recipe:
        parent = recipe.pop(EXTENDS_KEY)
        if not isinstance(parent, str) or not parent:
            raise ValueError(f"{path}: '{EXTENDS_KEY}' names the recipe this one extends, e.g. default.yaml.")
        parent_path = (recipe_path.parent / parent).resolve()
        if parent_path in _seen or parent_path == recipe_path.resolve():
            raise ValueError(f"{path}: '{EXTENDS_KEY}: {parent}' goes round in a circle.")
        if not parent_path.is_file():
            raise ValueError(f"{path}: '{EXTENDS_KEY}: {parent}': no such recipe ({parent_path}).")
        converted = load_recipe(str(parent_path), parser, (*_seen, recipe_path.resolve()), origins)
    own = {}
    for key, value in recipe.items():
        if key not in actions or key in ("help", "config"):
            raise ValueError(f"{path}: unknown option {key!r}. See `chatfreeze train --help`.")
        own[key] = _coerce(actions[key], value, path, key)
        if key in PATH_KEYS and isinstance(own[key], str) and own[key] not in BUILTIN_VALUES:
            own[key] = resolve_recipe_path(own[key], recipe_path.parent)
        if origins is not None:
            origins.setdefault(key, []).append((recipe_path, own[key]))
    return merge_layer(converted, own)


def resolve_recipe_path(value: str, recipe_dir: Path) -> str:
    """``value`` resolved against ``recipe_dir`` when it is a relative path; a Hub id (``ORG/NAME``) that is no
    file there, an absolute path and ``~/...`` stay as they are."""
    path = Path(value)
    if not value or path.is_absolute() or value.startswith("~"):
        return value
    candidate = recipe_dir / path
    looks_like_path = value.startswith(".") or path.suffix.lower() in (".jsonl", ".json", ".csv", ".txt", ".raw", ".yaml")
    return str(candidate.resolve()) if candidate.exists() or looks_like_path else value



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


def split_config(argv: list[str] | None) -> tuple[str | None, list[str]]:
    """(the ``--config`` recipe or None, the other arguments)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    return known.config, rest


def given_on_cli(parser: HfArgumentParser, argv: list[str]) -> dict[str, Any]:
    """The options ``argv`` sets, converted by their own types; options it does not name are absent (a value
    equal to the default is still "given": the user chose it)."""
    saved = {action: action.default for action in parser._actions}
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS  # argparse then leaves an option it did not see out of the namespace
        given, _ = parser.parse_known_args(argv)
    finally:
        for action, default in saved.items():
            action.default = default
    return {key: value for key, value in vars(given).items() if key != "config"}


def run_values(parser: HfArgumentParser, config: str | None, rest: list[str],
               origins: dict[str, list[tuple[Path, Any]]] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the recipe's options with the CLI's on top, the CLI's alone): what the parser's defaults become."""
    recipe = load_recipe(config, parser, origins=origins) if config else {}
    cli = given_on_cli(parser, rest)
    return merge_layer(recipe, cli), cli


def parse_args(argv: list[str] | None = None) -> RunArguments:
    """Every option of a run (``RunArguments``) from ``--config`` + CLI flags."""
    parser = make_parser()
    config, rest = split_config(argv)
    origins: dict[str, list[tuple[Path, Any]]] = {}
    values, cli = run_values(parser, config, rest, origins)
    # The merged values become the defaults, so a ONE_OF option the CLI replaced is gone from them; the flags
    # themselves are then parsed again on top (the same values: the dataclasses validate them).
    parser.set_defaults(**values)
    *parsed, remaining = parser.parse_args_into_dataclasses(
        args=rest, return_remaining_strings=True, look_for_args_file=False
    )
    if remaining:
        raise ValueError(f"unknown option(s): {' '.join(remaining)}. See `chatfreeze train --help`.")
    args = RunArguments(*(obj for obj in parsed if isinstance(obj, ARGUMENT_CLASSES)))
    # A FAQ (--faq, or a FAQ file given as --facts) is drafted into the run's facts sheet and probe at its start;
    # FactsArguments has recognised it by now.
    check_company(values, cli, origins, faq=bool(args.facts and (args.facts.faq or args.facts.faq_catalogue)))
    return args


def _same(a: Any, b: Any) -> bool:
    """Equal values; two strings naming the same file (relative to here, or resolved from a recipe) count as one."""
    if a == b:
        return True
    return isinstance(a, str) and isinstance(b, str) and bool(a) and bool(b) and Path(a).resolve() == Path(b).resolve()


def check_company(values: dict[str, Any], cli: dict[str, Any],
                  origins: dict[str, list[tuple[Path, Any]]], faq: bool = False) -> None:
    """Refuse, in one line, a run that replaces a packaged recipe's dialogues or system prompt (on the CLI or in
    the user's own recipe) but keeps its facts sheet or facts probe, which are Kestrel & Co.'s; and a run from a
    FAQ (``faq``: it drafts its own sheet and probe) that keeps Kestrel & Co.'s dialogues or system prompt."""
    def packaged_value(key: str) -> tuple[bool, Any]:
        shipped = [value for recipe, value in origins.get(key, []) if is_packaged(recipe)]
        return bool(shipped), (shipped[-1] if shipped else None)

    def kestrels(key: str) -> bool:  # a packaged recipe's facts sheet or probe, not its "none" (recipes/faq.yaml)
        shipped, value = packaged_value(key)
        return shipped and value not in (None, "", *BUILTIN_VALUES)

    def chosen_by_user(key: str) -> bool:
        return key in cli or (key in origins and not is_packaged(origins[key][-1][0]))

    if faq:  # another company's facts: Kestrel & Co.'s dialogues and system prompt must not train with them
        still = [key for key in COMPANY_DATA if kestrels(key) and not chosen_by_user(key)]
        if still:
            raise ValueError(f"--faq: the recipe's {' and '.join(f'--{key}' for key in still)} "
                             f"{'is' if len(still) == 1 else 'are'} Kestrel & Co.'s; train a FAQ with --config "
                             "chatfreeze/recipes/faq.yaml, or set them to yours (--dataset none: the FAQ alone).")
        return
    changed = [key for key in COMPANY_DATA if chosen_by_user(key)
               and not (packaged_value(key)[0] and _same(values.get(key), packaged_value(key)[1]))]
    kept = [key for key in COMPANY_FACTS if kestrels(key) and not chosen_by_user(key)]
    if changed and kept:
        replaced = " and ".join(f"--{key}" for key in changed)
        flags = " and ".join(f"--{key}" for key in kept)
        nones = " ".join(f"--{key} none" for key in kept)
        raise ValueError(f"{replaced} {'is' if len(changed) == 1 else 'are'} not Kestrel & Co.'s (the packaged "
                         f"recipe's), but {flags} still {'is' if len(kept) == 1 else 'are'}: set "
                         f"{'it' if len(kept) == 1 else 'them'} too: your own file{'s' if len(kept) > 1 else ''}, "
                         f"a FAQ (--faq FILE), or {nones} (README: your own company).")


def field_names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


def _names(*classes: type) -> tuple[str, ...]:
    return tuple(f.name for cls in classes for f in fields(cls))


# `chatfreeze train --help`, by topic: chatfreeze's own options (each dataclass where its code lives) and the
# Trainer options chatfreeze sets a default for (FreezeTrainingArguments' own fields) or its recipes set; every
# other TrainingArguments field goes under the Trainer's own heading. A test holds each of our fields to one topic.
TRAINING_TOPIC = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                  "gradient_accumulation_steps", "per_device_eval_batch_size", "warmup_steps", "lr_scheduler_type",
                  "weight_decay", "max_grad_norm", "train_sampling_strategy", "seed", "logging_steps",
                  "eval_strategy", "eval_steps", "metric_for_best_model", "load_best_model_at_end")
OUTPUT_TOPIC = ("output_dir", "overwrite_output_dir", "resume_from_checkpoint", "save_trained_only",
                "save_strategy", "save_steps", "save_total_limit", "push_to_hub", "hub_model_id")
HELP_TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", _names(ModelArguments)),
    ("data", _names(DataArguments)),
    ("freeze (what trains: --method picks freeze, full or LoRA)", _names(FreezeArguments, MethodArguments)),
    ("facts (drills of a company's facts sheet)", _names(FactsArguments)),
    ("retention (keeping the base model's skills)", _names(RetentionArguments)),
    ("evaluation (learn vs keep, before and after)", _names(EvaluationArguments)),
    ("fast path (the frozen prefix without autograd, its cache)", _names(FastPathArguments)),
    ("training", TRAINING_TOPIC),
    ("output", OUTPUT_TOPIC),
)
TRAINER_HEADING = "the Trainer's other options (transformers.TrainingArguments; --help_all for their whole help)"
VALUE_WIDTH = 26  # characters of a value shown beside its option; a longer one is cut with "…"


def show_value(value: Any) -> str:
    """A value as the help shows it: a path relative to here where it lies below, lists comma-joined."""
    if value is None or value == "":
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(show_value, value)) or "(unset)"
    text = str(getattr(value, "value", value))  # enums (IntervalStrategy.EPOCH) by their value
    if os.path.isabs(text) and os.path.exists(text):
        relative = os.path.relpath(text)
        text = relative if not relative.startswith("..") else text
        if len(text) > VALUE_WIDTH:
            return "…" + text[-(VALUE_WIDTH - 1):]  # a path's end says most
    text = " ".join(text.split())
    return text if len(text) <= VALUE_WIDTH else text[:VALUE_WIDTH - 1] + "…"


def help_text(argv: list[str] | None = None, width: int | None = None) -> str:
    """``chatfreeze train --help``: every option on one line under its topic, beside the value this run would use
    (the ``--config`` recipe's, else the default recipe's, with any flags given before ``--help`` on top)."""
    parser = make_parser()
    argv = [arg for arg in (argv or []) if arg not in ("-h", "--help")]
    config, rest = split_config(argv)
    config = config or str(DEFAULT_RECIPE)
    values, _ = run_values(parser, config, rest)
    width = width or max(100, shutil.get_terminal_size((120, 24)).columns)
    actions: dict[str, argparse.Action] = {}
    for action in parser._actions:  # a bool option's --no_X complement comes after --X: keep --X
        if action.option_strings and action.dest != "help":
            actions.setdefault(action.dest, action)
    trainer = field_names(TrainingArguments)

    def line(dest: str) -> tuple[str, str, str]:
        action = actions[dest]
        value = values.get(dest, action.default)
        return action.option_strings[0], show_value(value), expand_help(action, parser.prog)

    listed = {name for _, names in HELP_TOPICS for name in names}
    sections = [(title, [line(name) for name in names if name in actions]) for title, names in HELP_TOPICS]
    others = [dest for dest in actions if dest not in listed and dest != "config"]
    sections.append((TRAINER_HEADING, [line(dest) for dest in others if dest in trainer]))
    extra = [line(dest) for dest in others if dest not in trainer]
    if extra:
        sections.append(("other options", extra))
    shown = os.path.relpath(config) if not os.path.relpath(config).startswith("..") else config
    head = [
        f"usage: {parser.prog} [--config RECIPE.yaml] [--OPTION VALUE ...]",
        "",
        "Freeze-tune a chat model on support dialogues, evaluate it before and after, and save it. Any option can",
        "be set in a recipe (--config) or on the command line (the command line wins).",
        f"Beside each option: the value this run would use: {shown} with the flags given.",
        "The first sentence of each help; --help_all prints every option's whole help.",
        "",
        "  --config RECIPE.yaml   a recipe (YAML: option: value; `extends: OTHER.yaml` starts from another);",
        "                         default: the packaged recipe (chatfreeze/recipes/default.yaml, Kestrel & Co.'s)",
    ]
    return "\n".join(head) + "\n" + one_line_help(sections, width) + "\n"
