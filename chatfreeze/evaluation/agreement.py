"""Self-agreement: how far a tuned model's behaviour drifted from its base, with no outside data.

The base model answers the skills probe greedily once; the tuned model's mean per-token NLL on those very replies
(teacher-forced, the reply tokens and the end-of-turn marker only, as training labels them), divided by the
base model's own NLL on them, is the *self-agreement ratio*: 1.0 for the base itself, larger the less likely the
tuned model finds what the base would have said.
"""

from __future__ import annotations

import logging

import torch

from ..data import DataError, DialogueCollator, tokenize_dialogue
from ..progress import progress
from .perplexity import _EvalMode, _model_device, target_nll

logger = logging.getLogger(__name__)

MAX_REPLY_TOKENS = 1024  # prompt + reply; probe prompts are short and replies capped far below this


def reply_examples(tokenizer, conversations: list[list[dict]], replies: list[str]) -> list[dict]:
    """``{"input_ids", "labels"}`` of each conversation followed by its reply, labels on the reply only. Empty
    replies (nothing to score) are left out."""
    examples = []
    for index, (messages, reply) in enumerate(zip(conversations, replies, strict=True)):
        if not reply.strip():
            continue
        try:
            encoded = tokenize_dialogue([*messages, {"role": "assistant", "content": reply}], tokenizer,
                                        MAX_REPLY_TOKENS, "drop_example", where=f"probe reply {index}")
        except DataError as err:
            logger.debug("Self-agreement: %s", err)
            continue
        if encoded is not None:
            examples.append(encoded)
    return examples


@torch.inference_mode()
def reply_nll(model, tokenizer, examples: list[dict], batch_size: int = 8, prefix_states=None,
              what: str | None = "Self-agreement") -> dict:
    """Token-weighted mean NLL of ``model`` on the labelled (reply) tokens of ``examples`` (``what`` names the
    phase in the progress shown)."""
    if not examples:
        raise ValueError("self-agreement: no non-empty reply to score.")
    collator = DialogueCollator(tokenizer)
    total, tokens = 0.0, 0
    device = _model_device(model)
    with _EvalMode(model):
        for start in progress(range(0, len(examples), batch_size), what, unit="batches"):
            batch = {k: v.to(device) for k, v in collator(examples[start : start + batch_size]).items()}
            nll, count = (prefix_states.nll(model, ("agreement", start), batch) if prefix_states is not None
                          else target_nll(model, batch))
            total, tokens = total + nll, tokens + count
    return {"nll": total / tokens, "tokens": tokens, "replies": len(examples)}
