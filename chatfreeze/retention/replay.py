"""Self-distillation replay: training batches mix the support dialogues with the base model's own greedy replies
to general prompts, so the trained top blocks keep answering general questions as the base did.

The prompts are the *pool* half of the skills set (``chatfreeze/evaluation/probes/skills.jsonl``); the scored
*probe* half is never trained on, so the skills probe stays a held-out measurement. The base's replies are
generated once per base model (greedy, the evaluation's decoding) and cached per prompt, keyed by a fingerprint
of its weights, the pool and the settings: a later run that uses more of the pool answers only the new prompts.
A replay example is a single-turn dialogue labelled like every other: loss on the reply tokens (and the
end-of-turn marker) only, through the same collator and fast path.

A reply the base did not end (it ran into ``--replay_max_new_tokens``; open-ended prompts such as "write an
email" often do) is trained on its tokens but *not* on the end-of-turn marker after them: otherwise the model
would learn to stop mid-sentence wherever the cap cut the base off.
"""

from __future__ import annotations

import logging
import math

from .. import timings
from ..data import build_dataset
from ..data.schema import IGNORE_INDEX
from ..evaluation import probes
from ..evaluation.generation_metrics import greedy_replies
from ..evaluation.measurement_cache import MeasurementCache, inputs_fingerprint, weights_fingerprint
from ..generation import Reply

logger = logging.getLogger(__name__)

REPLAY_SOURCE = "replay (base model's replies to the skills pool)"


def replay_prompts(source: str = "builtin") -> list[probes.ProbeItem]:
    """The pool half of the skills set (or of a file of the same format): prompts that are never scored."""
    items = probes.load_skills_probe(probes.SKILLS_FILE if source == "builtin" else source, "pool")
    if not items:
        raise ValueError(f"--replay_prompts {source}: no 'pool' prompts to replay.")
    return items


class BaseReplies:
    """The base model's greedy replies to pool prompts, answered on demand and cached per prompt (text and
    whether the base ended it) under one entry per (base weights, pool, decoding settings)."""

    def __init__(self, model, tokenizer, pool: list[probes.ProbeItem], max_new_tokens: int, batch_size: int = 64,
                 cache: MeasurementCache | None = None):
        self.model, self.tokenizer, self.max_new_tokens, self.batch_size = model, tokenizer, max_new_tokens, batch_size
        self.cache = cache
        self.keys = None if cache is None else (weights_fingerprint(model), inputs_fingerprint(
            "replay-v2", sorted(item.prompt for item in pool), max_new_tokens, tokenizer.chat_template))
        stored = (cache.get(*self.keys) if cache else None) or {}
        self.known: dict[str, Reply] = {prompt: Reply(text, finished)
                                        for prompt, (text, finished) in (stored.get("replies") or {}).items()}

    def __call__(self, items: list[probes.ProbeItem]) -> list[Reply]:
        missing = [item for item in items if item.prompt not in self.known]
        if missing:
            logger.info("Replay: the base model answers %d pool prompt(s) now (greedy, up to %d new tokens each; "
                        "%s).", len(missing), self.max_new_tokens, "no cache" if self.cache is None else
                        f"{len(items) - len(missing)} of {len(items)} from the cache")
            replies = greedy_replies(self.model, self.tokenizer, probes.conversations(missing), self.max_new_tokens,
                                     self.batch_size, "Replay generation")
            for item, reply in zip(missing, replies, strict=True):
                self.known[item.prompt] = reply if isinstance(reply, Reply) else Reply(reply)
            if self.cache:
                self.cache.put(*self.keys, {"replies": {prompt: [str(reply), reply.finished]
                                                        for prompt, reply in self.known.items()}})
        elif self.cache:
            logger.info("Replay: the base model's replies to %d pool prompts come from the cache.", len(items))
            timings.note_cached("Replay generation", replies=len(items))
        return [self.known[item.prompt] for item in items]


def replay_dataset(model, tokenizer, num_support: int, ratio: float, *, source: str = "builtin",
                   max_new_tokens: int = 96, max_length: int = 1024, seed: int = 0, cache: bool = True):
    """``(datasets.Dataset, report)`` of ``round(ratio * num_support)`` replay examples, or ``(None, None)`` for
    ``ratio == 0``. The pool prompts are taken in a seeded order and only as many are answered by the base as the
    run uses (all of them, repeated, when more examples are asked for than there are prompts); a prompt the base
    answers with nothing is replaced by the next one."""
    import random

    if ratio <= 0:
        return None, None
    pool = replay_prompts(source)
    items = list(pool)
    random.Random(seed).shuffle(items)
    wanted = max(1, round(ratio * num_support))
    answer = BaseReplies(model, tokenizer, pool, max_new_tokens, cache=MeasurementCache() if cache else None)
    usable: list[tuple[probes.ProbeItem, Reply]] = []
    answered = 0
    while len(usable) < wanted and answered < len(items):
        # Ask for what is missing, scaled by how many replies so far were empty (all of them: grow the batch
        # geometrically), so a base that often answers with nothing costs a few batches, not one per missing reply.
        missing = wanted - len(usable)
        size = missing if not answered else math.ceil(missing * answered / max(1, len(usable)))
        batch = items[answered:answered + size]
        usable += [(item, reply) for item, reply in zip(batch, answer(batch), strict=True) if reply.strip()]
        answered += len(batch)
    if not usable:
        raise ValueError("replay: the base model gave an empty reply to every pool prompt; nothing to replay.")
    picked = [usable[i % len(usable)] for i in range(wanted)]
    dataset, report = build_dataset(
        [[{"role": "user", "content": item.prompt}, {"role": "assistant", "content": str(reply)}]
         for item, reply in picked], tokenizer, max_length=max_length, overlong_policy="drop_example",
        source=REPLAY_SOURCE, keep_index=True)
    open_ended = {index for index, (_, reply) in enumerate(picked) if not reply.finished}
    if open_ended:
        dataset = dataset.map(lambda row: {"labels": untrained_end(row["labels"]) if row["index"] in open_ended
                                           else row["labels"]})
        report.trained_tokens -= sum(row["index"] in open_ended for row in dataset)
    dataset = dataset.remove_columns("index")
    repeats = math.ceil(wanted / len(usable))
    cut = sum(not reply.finished for _, reply in usable)
    logger.info("Replay: %d examples from %d of %d pool prompts (each used up to %d time(s)) mixed into %d "
                "support dialogues; %d of those replies ran into --replay_max_new_tokens %d (their end-of-turn "
                "marker is not trained).", len(dataset), len(usable), len(items), repeats, num_support, cut,
                max_new_tokens)
    return dataset, report


def untrained_end(labels: list[int]) -> list[int]:
    """``labels`` with the last trained token (an unfinished reply's end-of-turn marker) set to -100."""
    labels = list(labels)
    last = max(index for index, label in enumerate(labels) if label != IGNORE_INDEX)
    labels[last] = IGNORE_INDEX
    return labels
