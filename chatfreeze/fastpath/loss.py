"""The LM head and loss at labelled positions only.

Dialogue data masks every system and user token, yet the plain loss projects every position onto the vocabulary
(49152 x 576 for SmolLM2), forward and backward. Here the final hidden states are gathered where the *shifted*
labels are set, then projected, post-processed as the model does (``compat.LOGIT_PROCESSING``) and reduced as
``ForCausalLMLoss`` does (mean over labelled tokens, or sum / ``num_items_in_batch`` under gradient
accumulation). Chunked (and recomputed in backward) when the logits would be large.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.schema import IGNORE_INDEX

# Logits of more than this many elements are computed in chunks, each recomputed in backward:
# 2^26 fp32 logits = 256 MiB, i.e. ~1365 labelled positions at SmolLM2's 49152-token vocabulary.
LOSS_CHUNK_ELEMENTS = 1 << 26


def shifted_labels(labels: torch.Tensor) -> torch.Tensor:
    """Targets aligned with the positions that predict them, as ``ForCausalLMLoss`` shifts: ``-100`` at the end."""
    return F.pad(labels[..., 1:], (0, 1), value=IGNORE_INDEX)


def labelled_positions_loss(
    hidden: torch.Tensor,
    shift_labels: torch.Tensor,
    head: nn.Module,
    process: Callable[[torch.Tensor], torch.Tensor],
    num_items_in_batch: torch.Tensor | int | None = None,
    chunk_elements: int = LOSS_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """Cross-entropy of ``process(head(hidden))`` where ``shift_labels != -100``, reduced like ``ForCausalLMLoss``.

    Mean over the labelled positions, or their sum divided by ``num_items_in_batch`` when the Trainer passes
    it (gradient accumulation). Positions whose label is -100 are never projected onto the vocabulary.
    """
    keep = shift_labels != IGNORE_INDEX
    states = hidden[keep.to(hidden.device)]
    targets = shift_labels[keep].to(hidden.device)
    vocab = getattr(head, "out_features", None) or head.weight.shape[0]
    chunk = max(1, chunk_elements // max(1, vocab))

    def summed(part: torch.Tensor, part_targets: torch.Tensor) -> torch.Tensor:
        logits = process(head(part)).float()
        return F.cross_entropy(logits, part_targets, reduction="sum")

    if states.shape[0] <= chunk:
        total = summed(states, targets)
    else:
        from torch.utils.checkpoint import checkpoint

        # Only one chunk's logits live at a time: each is recomputed in backward instead of stored.
        total = sum(
            checkpoint(summed, part, part_targets, use_reentrant=False)
            for part, part_targets in zip(states.split(chunk), targets.split(chunk), strict=True)
        )
    if num_items_in_batch is None:
        return total / targets.numel()  # 0/0 = nan on a batch with no label, as the plain mean gives
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
