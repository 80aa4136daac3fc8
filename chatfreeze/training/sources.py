"""Where a run's training examples come from, as the recipe's ``data`` step assembles them: the support dialogues
(with a held-out split when asked), the base model's replay replies, the plain-text replay passages, the facts
drills, and their mix (with the per-source KL weights of ``--kl_sources``). Each function reads and fills a ``recipe.RecipeRun``."""

from __future__ import annotations

import logging
import random

from accelerate import PartialState

from ..data import build_dataset, load_dialogues_from_args
from ..data.options import DataArguments
from ..data.schema import IGNORE_INDEX
from ..facts import common_system_prompt, count_exposures, facts_dataset
from ..facts.exposure import DRILLS_SOURCE, SUPPORT_SOURCE
from ..fastpath import KL_WEIGHT_COLUMN
from ..retention.replay import replay_dataset
from ..retention.text_replay import text_replay_dataset

logger = logging.getLogger(__name__)


def split_held_out(dialogues: list, ratio: float, seed: int) -> tuple[list, list]:
    """``(train, held_out)``: a seeded random ``ratio`` of ``dialogues`` held out (at least one)."""
    order = list(range(len(dialogues)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(len(order) * ratio))
    return [dialogues[i] for i in order[cut:]], [dialogues[i] for i in order[:cut]]


def prepare_datasets(data_args: DataArguments, tokenizer, seed: int):
    """Tokenized train/eval datasets and their reports (counts of dialogues, turns, tokens, drops)."""
    train_dialogues = load_dialogues_from_args(data_args)
    eval_dialogues = load_dialogues_from_args(data_args, eval=True) if data_args.eval_dataset else []
    if not eval_dialogues and data_args.validation_split_ratio > 0:
        train_dialogues, eval_dialogues = split_held_out(train_dialogues, data_args.validation_split_ratio, seed)
    common = dict(max_length=data_args.max_length, overlong_policy=data_args.overlong_policy)
    train_ds, train_report = build_dataset(train_dialogues, tokenizer, source=data_args.dataset,
                                           **common) if train_dialogues else (None, None)  # None: drills alone
    eval_ds, eval_report = None, None
    if eval_dialogues:
        eval_ds, eval_report = build_dataset(
            eval_dialogues, tokenizer, source=data_args.eval_dataset or f"{data_args.dataset} (held out)", **common
        )
    return train_ds, eval_ds, train_report, eval_report, eval_dialogues, train_dialogues


def mix_sources(run):
    """The training set: the support dialogues, then the replay examples, the plain-text passages and the facts
    drills (the sampler
    shuffles them together). Where ``--kl_sources`` leaves a source present in the run out of the KL term, each
    example carries its KL weight (``KL_WEIGHT_COLUMN``: 1 or 0)."""
    import datasets

    parts = {"support": run.train_dataset, "replay": run.replay_dataset, "text": run.text_replay_dataset,
             DRILLS_SOURCE: run.facts.dataset if run.facts is not None else None}
    parts = {source: part for source, part in parts.items() if part is not None}
    args = run.training_args
    if args.kl_to_base and not all(args.kl_covers(source) for source in parts):
        parts = {source: part.add_column(KL_WEIGHT_COLUMN, [float(args.kl_covers(source))] * len(part))
                 for source, part in parts.items()}
        if run.is_main_process:
            logger.info("KL to the base on the %s examples only (--kl_sources %s).",
                        " and ".join(s for s in parts if args.kl_covers(s)) or "no", args.kl_sources)
    return datasets.concatenate_datasets(list(parts.values())) if len(parts) > 1 else next(iter(parts.values()))


def replay_base(run) -> int:
    """How many examples the replay ratios are relative to: the support dialogues, or the drills in a run
    without any (a FAQ alone)."""
    if run.train_dataset is not None:
        return len(run.train_dataset)
    return len(run.facts.dataset) if run.facts is not None and run.facts.dataset is not None else 0


def add_facts(run, num_support: int):
    """The facts sheet's drills for the training data (``facts.drills``), asked with the support dialogues' own
    system prompt, and how many training examples state each fact (``facts.exposure``)."""
    system_prompt = run.data_args.system_prompt or common_system_prompt(run.train_dialogues)
    # --facts_plan need tops the drills up against the support dialogues only: the plan is then the one
    # `chatfreeze facts` prints before any model exists (the base's replay replies, counted in the report below,
    # rarely state a company fact: 4 exposures, on 2 of Kestrel & Co.'s 41 facts, in the default run).
    counted = {SUPPORT_SOURCE: run.train_dialogues}
    run.facts = facts_dataset(run.facts_args, run.tokenizer, num_support, system_prompt=system_prompt,
                              max_length=run.data_args.max_length, seed=run.training_args.seed, counted=counted)
    replay = {} if run.replay_dataset is None else {"replay": trained_texts(run.replay_dataset, run.tokenizer)}
    sources = {SUPPORT_SOURCE: run.train_dialogues, DRILLS_SOURCE: run.facts.dialogues(system_prompt), **replay}
    run.exposure = count_exposures(run.facts.sheet, sources, run.facts_args.facts_min_exposures,
                                   warn=run.is_main_process, planned=run.facts.planned)
    if run.is_main_process:
        logger.info("Facts: how many training examples state each fact's value\n%s", run.exposure.format_table())
    return run


def trained_texts(dataset, tokenizer) -> list[list[dict]]:
    """Each example's trained tokens decoded, as a one-message dialogue (what the exposure count reads)."""
    return [[{"role": "assistant", "content": tokenizer.decode(
        [token for token, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE_INDEX])}]
        for row in dataset]


def add_replay(run):
    """The base model's own replies to the skills pool, for the training data (``retention.replay``). The main
    process generates them first; the others read them from the cache."""
    args = run.training_args
    with PartialState().main_process_first():
        replay, run.replay_report = replay_dataset(
            run.model, run.tokenizer, replay_base(run), args.replay_ratio, source=args.replay_prompts,
            max_new_tokens=args.replay_max_new_tokens, max_length=run.data_args.max_length, seed=args.seed,
            cache=run.eval_args.cache_base_measurements)
    run.replay_dataset = replay
    return run


def add_text_replay(run):
    """Plain text the base model wrote (or the user's general text) for the training data
    (``retention.text_replay``). The main process generates it first; the others read it from the cache."""
    args = run.training_args
    with PartialState().main_process_first():
        run.text_replay_dataset, run.text_replay_report = text_replay_dataset(
            run.model, run.tokenizer, replay_base(run), args.text_replay_ratio, source=args.text_replay,
            tokens=args.text_replay_tokens, seed=args.seed, cache=run.eval_args.cache_base_measurements)
    return run
