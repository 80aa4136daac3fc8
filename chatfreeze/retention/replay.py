"""Self-distillation replay: training batches mix the support dialogues with the base model's own greedy replies
to general prompts, so the trained top blocks keep answering general questions as the base did.

The prompts are the *pool* half of the skills set (``chatfreeze/evaluation/probes/skills.jsonl``); the scored
*probe* half is never trained on, so the skills probe stays a held-out measurement. The base's replies are
generated once per base model (greedy, the evaluation's decoding) and cached, keyed by a fingerprint of its
weights, the prompts and the settings. A replay example is a single-turn dialogue labelled like every other:
loss on the reply tokens (and the end-of-turn marker) only, through the same collator and fast path.
"""

from __future__ import annotations

import logging
import math

from ..data import build_dataset
from ..evaluation import probes
from ..evaluation.generation_metrics import greedy_replies
from ..evaluation.measurement_cache import MeasurementCache, inputs_fingerprint, weights_fingerprint

logger = logging.getLogger(__name__)


def replay_prompts(source: str = "builtin") -> list[probes.ProbeItem]:
    """The pool half of the skills set (or of a file of the same format): prompts that are never scored."""
    items = probes.load_skills_probe(probes.SKILLS_FILE if source == "builtin" else source, "pool")
    if not items:
        raise ValueError(f"--replay_prompts {source}: no 'pool' prompts to replay.")
    return items


def base_replies(model, tokenizer, items: list[probes.ProbeItem], max_new_tokens: int, batch_size: int = 64,
                 cache: MeasurementCache | None = None) -> list[str]:
    """The base model's greedy replies to ``items`` (from the cache when this base answered them before)."""
    conversations = probes.conversations(items)
    keys = (weights_fingerprint(model), inputs_fingerprint("replay", conversations, max_new_tokens,
                                                           tokenizer.chat_template))
    cached = cache.get(*keys) if cache else None
    if cached is not None:
        logger.info("Replay: the base model's replies to %d pool prompts come from the cache.", len(items))
        return cached["replies"]
    replies = greedy_replies(model, tokenizer, conversations, max_new_tokens, batch_size)
    if cache:
        cache.put(*keys, {"replies": replies})
    return replies


def replay_dataset(model, tokenizer, num_support: int, ratio: float, *, source: str = "builtin",
                   max_new_tokens: int = 96, max_length: int = 1024, seed: int = 0, cache: bool = True):
    """``(datasets.Dataset, report)`` of ``round(ratio * num_support)`` replay examples, or ``(None, None)`` for
    ``ratio == 0``. The pool prompts are taken in a seeded order and only as many are answered by the base as the
    run uses (all of them, repeated, when more examples are asked for than there are prompts); a prompt the base
    answers with nothing is replaced by the next one."""
    import random

    if ratio <= 0:
        return None, None
    items = replay_prompts(source)
    random.Random(seed).shuffle(items)
    wanted = max(1, round(ratio * num_support))
    measurement_cache = MeasurementCache() if cache else None
    usable: list[tuple[probes.ProbeItem, str]] = []
    answered = 0
    while len(usable) < wanted and answered < len(items):
        batch = items[answered:answered + wanted - len(usable)]
        replies = base_replies(model, tokenizer, batch, max_new_tokens, cache=measurement_cache)
        usable += [(item, reply) for item, reply in zip(batch, replies, strict=True) if reply.strip()]
        answered += len(batch)
    if not usable:
        raise ValueError("replay: the base model gave an empty reply to every pool prompt; nothing to replay.")
    picked = [usable[i % len(usable)] for i in range(wanted)]
    dialogues = [[{"role": "user", "content": item.prompt}, {"role": "assistant", "content": reply}]
                 for item, reply in picked]
    dataset, report = build_dataset(dialogues, tokenizer, max_length=max_length, overlong_policy="drop_example",
                                    source="replay (base model's replies to the skills pool)")
    repeats = math.ceil(wanted / len(usable))
    logger.info("Replay: %d examples from %d of %d pool prompts (each used up to %d time(s)) mixed into %d "
                "support dialogues.", len(dataset), len(usable), len(items), repeats, num_support)
    return dataset, report
