"""The LM head and loss at labelled positions only.

Dialogue data masks every system and user token, yet the plain loss projects every position onto the vocabulary
(49152 x 576 for SmolLM2), forward and backward. Here the final hidden states are gathered where the *shifted*
labels are set, then projected, post-processed as the model does (``modeling.compat.LOGIT_PROCESSING``) and reduced as
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
    base_hidden: torch.Tensor | None = None,
    base_head: nn.Module | None = None,
    kl_weight: float = 0.0,
    kl_row_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of ``process(head(hidden))`` where ``shift_labels != -100``, reduced like ``ForCausalLMLoss``.

    Mean over the labelled positions, or their sum divided by ``num_items_in_batch`` when the Trainer passes
    it (gradient accumulation). Positions whose label is -100 are never projected onto the vocabulary.
    With ``base_hidden`` (the base model's final hidden states, no grad) each labelled position also adds
    ``kl_weight · KL(p_base ‖ p)``, reduced the same way (``kl_from_base``, computed with the cross-entropy by ``cross_entropy_and_kl``; the base's copy is
    ``retention.kl_to_base.BaseTop``). ``kl_row_weights`` (one per row, e.g. 0 for the rows of a source the KL
    should not hold back) scales each row's KL term; positions of weight 0 never compute the base's logits (their
    ``base_hidden`` rows may be anything, e.g. zeros: ``FastPath.base_hidden`` skips them).
    """
    keep = shift_labels != IGNORE_INDEX
    states = hidden[keep.to(hidden.device)]
    targets = shift_labels[keep].to(hidden.device)
    base_states = None if base_hidden is None else base_hidden[keep.to(base_hidden.device)]
    position_weights = None
    if base_states is not None and kl_row_weights is not None:
        rows = kl_row_weights.to(device=hidden.device, dtype=torch.float32)
        position_weights = rows[:, None].expand(keep.shape)[keep.to(hidden.device)]
    vocab = getattr(head, "out_features", None) or head.weight.shape[0]
    chunk = max(1, chunk_elements // max(1, vocab))

    def summed(part: torch.Tensor, part_targets: torch.Tensor, base_part: torch.Tensor | None = None,
               weight_part: torch.Tensor | None = None) -> torch.Tensor:
        logits = process(head(part)).float()
        if base_part is None:
            return F.cross_entropy(logits, part_targets, reduction="sum")
        rows = None
        if weight_part is not None and not bool((weight_part != 0).all()):
            # The base's logits only where the KL applies (weight 0: a drill, say).
            rows = torch.nonzero(weight_part != 0).flatten()
            base_part, weight_part = base_part[rows], weight_part[rows]
        with torch.no_grad():
            base_logits = process((base_head or head)(base_part)).float()
        weights = kl_weight * (weight_part if weight_part is not None else logits.new_ones(base_logits.shape[0]))
        return cross_entropy_and_kl(logits, part_targets, base_logits, weights, rows)

    pieces = len(states.split(chunk))
    base_parts = base_states.split(chunk) if base_states is not None else [None] * pieces
    weight_parts = position_weights.split(chunk) if position_weights is not None else [None] * pieces
    if states.shape[0] <= chunk:
        total = summed(states, targets, base_states, position_weights)
    else:
        from torch.utils.checkpoint import checkpoint

        # Only one chunk's logits live at a time: each is recomputed in backward instead of stored.
        total = sum(
            checkpoint(summed, part, part_targets, base_part, weight_part, use_reentrant=False)
            for part, part_targets, base_part, weight_part in zip(states.split(chunk), targets.split(chunk),
                                                                  base_parts, weight_parts, strict=True)
        )
    if num_items_in_batch is None:
        return total / targets.numel()  # 0/0 = nan on a batch with no label, as the plain mean gives
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def labelled_nll(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(sum of next-token NLL where labels are set, how many)``, with the LM head applied at those positions
    only: the model's own forward with its head stubbed out, then ``labelled_positions_loss``. Architectures
    whose logit processing is not reproduced exactly (``modeling.compat.LOGIT_PROCESSING``) use the full logits."""
    from ..common import text_config
    from ..modeling.compat import LOGIT_PROCESSING
    from .runner import _empty_logits, replaced_forwards

    shift = shifted_labels(labels)
    count = int((shift != IGNORE_INDEX).sum())
    head, model_type = model.get_output_embeddings(), getattr(model.config, "model_type", None)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if head is None or model_type not in LOGIT_PROCESSING:
        logits = model(**inputs).logits
        keep = shift != IGNORE_INDEX
        return F.cross_entropy(logits[keep.to(logits.device)].float(), shift[keep].to(logits.device),
                               reduction="sum"), count
    captured = []

    def record(hidden_states, *args, **kwargs):
        captured.append(hidden_states)
        return _empty_logits(hidden_states)

    with replaced_forwards({head: record}):
        model(**inputs)
    config, process = text_config(model.config), LOGIT_PROCESSING[model_type]
    total = labelled_positions_loss(captured[0], shift, head, lambda logits: process(logits, config),
                                    num_items_in_batch=1)
    return total, count


def kl_from_base(logits: torch.Tensor, base_logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``sum over positions of KL(p_base ‖ p)`` (each position's term times ``weights`` when given): the base's
    distribution is the target, computed in float32."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_base = F.log_softmax(base_logits.float(), dim=-1)
    if weights is None:
        return (log_base.exp() * (log_base - log_p)).sum()
    return ((log_base.exp() * (log_base - log_p)).sum(dim=-1) * weights).sum()


class _CrossEntropyAndKL(torch.autograd.Function):
    """``sum_i CE(logits_i, target_i) + sum_{i in rows} w_i · KL(p_base,i ‖ softmax(logits_i))`` with its gradient
    computed in the forward pass: ``(1 + w_i)·p_i − onehot(target_i) − w_i·p_base,i`` (``p_i`` the softmax of the
    logits). Autograd would take two log-softmaxes of the logits and walk back through both, five passes over a
    [positions, vocabulary] tensor more than this; the values are the same up to float rounding (~1e-7)."""

    @staticmethod
    def forward(ctx, logits, targets, base_logits, weights, rows):
        log_z = torch.logsumexp(logits, dim=-1, keepdim=True)
        log_p = logits - log_z
        picked = torch.arange(logits.shape[0], device=logits.device)
        loss = -log_p[picked, targets].sum()
        grad = log_p.exp()  # p; becomes the gradient in place
        log_base = F.log_softmax(base_logits, dim=-1)
        base_probs = log_base.exp()
        kl_part = log_p if rows is None else log_p[rows]
        loss = loss + ((base_probs * (log_base - kl_part)).sum(dim=-1) * weights).sum()
        scaled = weights[:, None]
        if rows is None:
            grad.mul_(1 + scaled).sub_(scaled * base_probs)
        else:
            grad[rows] = grad[rows] * (1 + scaled) - scaled * base_probs
        grad[picked, targets] -= 1
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None, None


def cross_entropy_and_kl(logits: torch.Tensor, targets: torch.Tensor, base_logits: torch.Tensor,
                         weights: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """``F.cross_entropy(logits, targets, reduction="sum")`` plus ``weights[j] · KL(p_base ‖ p)`` of the logits'
    row ``rows[j]`` (every row, in order, when ``rows`` is None) against ``base_logits[j]``, all float32: the
    training loss of ``--kl_to_base``, one log-softmax of the logits for both terms (``_CrossEntropyAndKL``)."""
    return _CrossEntropyAndKL.apply(logits, targets, base_logits.float(), weights.float(), rows)
