"""Shared leading tokens once per batch.

Support dialogues all start with the same system prompt (100 of ~255 tokens in this project's data). Causal
attention makes those tokens' states the same in every row, so they run as one row whose KV cache (the model's
own) the other rows attend to: once per training run through the frozen prefix, once per batch (with its graph)
through the trainable blocks. Same maths; the floating-point sums run in another order (~1e-7 on the loss).
Checked once against the full computation, and switched off with a log line if it differs.

The functions take the ``PrefixRunner`` (``chatfreeze.fastpath.runner``) whose passes they reuse; its
``share_prefixes`` / ``share_top`` flags and ``shared`` state record what is on.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch

from ..modeling.compat import stub_cache_layers, unsupported_cache
from .batch import right_padded_layout

logger = logging.getLogger(__name__)


@dataclass
class SharedPrefix:
    """Leading tokens that the rows of batches share (typically the system prompt), run through the prefix once."""

    token_ids: torch.Tensor  # [P]
    cache: object  # the model's own KV cache of the frozen blocks for those tokens, batch 1
    boundary: torch.Tensor  # [1, P, hidden]

    @property
    def length(self) -> int:
        return self.token_ids.numel()


def common_prefix_length(input_ids: torch.Tensor, real: torch.Tensor) -> int:
    """How many leading tokens all rows share, leaving every row at least one token of its own."""
    limit = int(real.sum(dim=1).min()) - 1
    if limit <= 0:
        return 0
    same = (input_ids[:, :limit] == input_ids[:1, :limit]).all(dim=0)
    return limit if bool(same.all()) else int((~same).int().argmax())


def prefix_with_shared_tokens(runner, model_inputs: dict) -> torch.Tensor | None:
    split = shared_split(runner, model_inputs)
    if split is None:
        return None
    length, real = split
    input_ids = model_inputs["input_ids"]
    shared = runner.shared
    if (shared is None or shared.length > length or shared.boundary.device != input_ids.device
            or not torch.equal(input_ids[0, : shared.length], shared.token_ids)):
        shared = _share(runner, input_ids[0, :length])
        if shared is None:
            return None
    batch = input_ids.shape[0]
    cache = copy.deepcopy(shared.cache)
    cache.batch_repeat_interleave(batch)
    attention_mask = model_inputs.get("attention_mask")
    suffix_inputs = {
        "input_ids": input_ids[:, shared.length :],
        "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
        "cache": cache,
        "use_cache": True,
    }
    suffix, _ = runner._run_prefix(suffix_inputs, grad=False)
    boundary = torch.cat([shared.boundary.expand(batch, -1, -1), suffix], dim=1)
    if not runner.shared_checked:
        runner.shared_checked = True
        full, _ = runner._run_prefix(model_inputs, grad=False)
        difference, scale = _difference(full, boundary, real)
        if not difference <= runner.SHARED_TOLERANCE * scale:
            stop_sharing(runner, f"the result differs from the full computation by {difference:.3g}")
            return full
        logger.info("Fast path: rows that share their first tokens (e.g. a system prompt; %d here) run them "
                    "through the frozen prefix once (checked: max difference %.2g from the full "
                    "computation).", shared.length, difference)
    return boundary


def _share(runner, token_ids: torch.Tensor) -> SharedPrefix | None:
    row = token_ids.unsqueeze(0)
    boundary, output = runner._run_prefix(
        {"input_ids": row, "attention_mask": torch.ones_like(row), "use_cache": True}, grad=False
    )
    cache = getattr(output, "cache", None)
    why_not = unsupported_cache(cache, runner.num_prefix_blocks)
    if why_not:
        stop_sharing(runner, why_not)
        return None
    runner.shared = SharedPrefix(token_ids.clone(), cache, boundary)
    return runner.shared


def stop_sharing(runner, why: str) -> None:
    runner.share_prefixes = False
    runner.shared = None
    logger.info("Fast path: leading tokens shared by a batch's rows are computed per row (%s).", why)


def final_hidden_shared(runner, model_inputs: dict, boundary: torch.Tensor) -> torch.Tensor | None:
    split = shared_split(runner, model_inputs)
    if split is None:
        return None
    length, real = split
    if any(getattr(block, "gradient_checkpointing", False) for block in runner.blocks):
        stop_sharing_top(runner, "activation checkpointing recomputes blocks, which would grow their KV cache")
        return None
    input_ids = model_inputs["input_ids"]
    batch = input_ids.shape[0]
    row = input_ids[:1, :length]
    shared, output = runner.top_pass(
        runner.model, {"input_ids": row, "attention_mask": torch.ones_like(row), "use_cache": True},
        boundary[:1, :length],
    )
    cache = getattr(output, "cache", None)
    why_not = unsupported_cache(cache, len(runner.blocks))
    if why_not:
        stop_sharing_top(runner, why_not)
        return None
    stub_cache_layers(cache, runner.num_prefix_blocks, length, like=boundary)
    cache.batch_repeat_interleave(batch)
    attention_mask = model_inputs.get("attention_mask")
    suffix, _ = runner.top_pass(runner.model, {
        "input_ids": input_ids[:, length:],
        "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
        "cache": cache,
        "use_cache": True,
    }, boundary[:, length:])
    hidden = torch.cat([shared.expand(batch, -1, -1), suffix], dim=1)
    if not runner.top_checked:
        runner.top_checked = True
        with torch.no_grad():
            full = runner.top_pass(runner.model, model_inputs, boundary)[0]
        difference, scale = _difference(full, hidden, real)
        if not difference <= runner.SHARED_TOLERANCE * scale:
            stop_sharing_top(runner, f"the result differs from the full pass by {difference:.3g}")
            return None
        logger.info("Fast path: the %d leading tokens the rows of a batch share also run through the "
                    "trainable blocks once per batch (checked: max difference %.2g from the full pass).",
                    length, difference)
    return hidden


def shared_split(runner, model_inputs: dict) -> tuple[int, torch.Tensor] | None:
    """(shared leading tokens, real-token mask) if this batch's rows share enough leading tokens."""
    if set(model_inputs) - {"input_ids", "attention_mask", "use_cache"}:
        return None  # other per-token inputs would need splitting too
    real = right_padded_layout(model_inputs)
    if real is None or model_inputs["input_ids"].shape[0] < 2:
        return None
    length = common_prefix_length(model_inputs["input_ids"], real)
    return (length, real) if length >= runner.MIN_SHARED_TOKENS else None


def stop_sharing_top(runner, why: str) -> None:
    runner.share_top = False
    logger.info("Fast path: leading tokens shared by a batch's rows run through the trainable blocks per "
                "row (%s).", why)


def _difference(reference: torch.Tensor, other: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """Largest absolute difference at real positions, and the scale to judge it by (at least 1)."""
    reference, other = reference.detach(), other.detach()
    return float((reference - other)[real].abs().max()), max(1.0, float(reference[real].abs().max()))

