"""Shared leading tokens once per batch.

Support dialogues all start with the same system prompt (100 of ~255 tokens in this project's data). Causal
attention makes those tokens' states the same in every row, so they run as one row whose KV cache (the model's
own) the other rows attend to: through the frozen prefix, and once per batch, with its graph, through the
trainable blocks. Same maths; the floating-point sums run in another order (``docs/fastpath.md`` has the measured
differences). Checked once against the full computation, and switched off with a log line if it differs.

**A batch's states depend on that batch only, never on the batches before it.** Its rows are split where they
part (their own common prefix, not the one an earlier batch left behind), and the shared rows kept for later
batches are only a lookup by their tokens. The same batch then gives the same states bit for bit whenever it
runs, which a resumed run relies on: it refills the prefix cache by running the batches its checkpoint had trained
on again (``FreezeTrainer``), and must get exactly what the interrupted run cached.

The functions take the ``PrefixRunner`` (``chatfreeze.fastpath.runner``) whose passes they reuse; its
``share_prefixes`` / ``share_top`` flags and shared rows record what is on.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch

from ..modeling.compat import stub_cache_layers, unsupported_cache
from .batch import right_padded_layout

logger = logging.getLogger(__name__)

# Shared leading tokens kept by their tokens for later batches, each with its KV cache (SmolLM2, 120 tokens: 4.4 MB).
# With batches of 2 from this project's data, 8 kept computes 28 shared rows in 800 batches (4 kept: 57).
# Batches of 8 all share the same 119 tokens: one.
SHARED_ROWS_KEPT = 8


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
    """The batch's boundary with the leading tokens all its rows share computed once. Depends on this batch only:
    the split is where its rows part, never where an earlier batch's did."""
    split = shared_split(runner, model_inputs)
    if split is None:
        return None
    length, real = split
    input_ids = model_inputs["input_ids"]
    shared = shared_row(runner, input_ids[0, :length])
    if shared is None:
        return None
    boundary = _after_shared(runner, shared, input_ids, model_inputs.get("attention_mask"))
    if not runner.shared_checked:
        runner.shared_checked = True
        full, _ = runner._run_prefix(model_inputs, grad=False)
        relative, absolute, largest = _difference(full, boundary, real)
        if not relative <= runner.shared_tolerance(full.dtype):
            stop_sharing(runner, f"the boundary states differ from the full computation by {relative:.3g} of a "
                                 "token's norm")
            return full
        logger.info("Fast path: rows that share their first tokens (e.g. a system prompt; %d here) run them "
                    "through the frozen prefix once (checked: %s).", shared.length,
                    _checked(f"boundary states (block {runner.num_prefix_blocks - 1}'s output)", "full computation",
                             relative, absolute, largest))
    return boundary


def _after_shared(runner, shared: SharedPrefix, input_ids: torch.Tensor, attention_mask) -> torch.Tensor:
    """Boundary of rows that start with ``shared``: their other tokens attend to its KV cache (a copy: the pass
    appends to it)."""
    batch = input_ids.shape[0]
    cache = copy.deepcopy(shared.cache)
    cache.batch_repeat_interleave(batch)
    suffix, _ = runner._run_prefix({
        "input_ids": input_ids[:, shared.length :],
        "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
        "cache": cache,
        "use_cache": True,
    }, grad=False)
    return torch.cat([shared.boundary.expand(batch, -1, -1), suffix], dim=1)


def shared_row(runner, token_ids: torch.Tensor) -> SharedPrefix | None:
    """``token_ids`` run through the frozen prefix as one row, kept by their tokens for later batches (a lookup:
    the same tokens always give the same states, so what is kept never changes a result)."""
    key = (str(token_ids.device), *token_ids.tolist())
    shared = runner.shared_rows.pop(key, None)
    if shared is None:
        shared = _share(runner, token_ids)
        if shared is None:
            return None
    runner.shared_rows[key] = shared  # most recently used last
    while len(runner.shared_rows) > SHARED_ROWS_KEPT:
        runner.shared_rows.pop(next(iter(runner.shared_rows)))
    runner.shared = shared
    return shared


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
    return SharedPrefix(token_ids.clone(), cache, boundary)


def stop_sharing(runner, why: str) -> None:
    runner.share_prefixes = False
    runner.shared = None
    runner.shared_rows.clear()
    logger.info("Fast path: leading tokens shared by a batch's rows are computed per row (%s).", why)


def final_hidden_shared(runner, model_inputs: dict, boundary: torch.Tensor, checked: str = "top_checked",
                        what: str = "the trainable blocks") -> torch.Tensor | None:
    """Final hidden states of a batch whose rows share leading tokens, those tokens run through the top blocks once
    (one row whose KV cache, with its graph, the other rows attend to); None where sharing does not apply.

    The same function runs the KL's frozen copy of the top (``FastPath.base_hidden``, under its forward
    replacements and ``no_grad``): ``checked`` names the runner's flag that records whether that pass was checked
    against its full computation, ``what`` names the blocks in the log."""
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
    if not getattr(runner, checked):
        setattr(runner, checked, True)
        with torch.no_grad():
            full = runner.top_pass(runner.model, model_inputs, boundary)[0]
        relative, absolute, largest = _difference(full, hidden, real)
        if not relative <= runner.shared_tolerance(full.dtype):
            stop_sharing_top(runner, f"the final hidden states of {what} differ from the full pass by "
                                     f"{relative:.3g} of a token's norm")
            return None
        logger.info("Fast path: the %d leading tokens the rows of a batch share also run through %s once per "
                    "batch (checked: %s).", length, what,
                    _checked("final hidden states", "full pass", relative, absolute, largest))
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


def _checked(what: str, against: str, relative: float, absolute: float, largest: float) -> str:
    return (f"{what} within {relative:.2g} of each token's norm of the {against}; largest absolute difference "
            f"{absolute:.2g}, where values reach {largest:.3g}")


def _difference(reference: torch.Tensor, other: torch.Tensor, real: torch.Tensor) -> tuple[float, float, float]:
    """At real positions: the largest difference relative to its token's state (``|a - b| / |a|`` per token, L2
    over the hidden size), the largest absolute difference, and the largest absolute value.

    Per token, because hidden states are far from uniform: SmolLM2's boundary reaches 2.5e4 in one channel of the
    first token while most values are below 10, so an absolute figure measures rounding at that one value (one
    fp32 ulp there is 0.002) and a tolerance relative to it would pass errors of 2.5 on values of 7."""
    reference, other = reference.detach()[real].float(), other.detach()[real].float()
    difference = reference - other
    norms = reference.norm(dim=-1).clamp_min(torch.finfo(torch.float32).tiny)
    return (float((difference.norm(dim=-1) / norms).max()), float(difference.abs().max()),
            float(reference.abs().max()))
