"""Run a causal LM in two passes: the frozen prefix without autograd, and the trainable top from a boundary state.

How the model is driven, generically: every pass is the model's own ``forward`` (so attention masks, position
ids and rotary embeddings are the model's own), with some modules' ``forward`` temporarily replaced:

* the *prefix pass* (no grad) replaces the trainable blocks by stubs and the LM head by an empty stub, and
  records the output of block ``k-1``;
* the *top pass* replaces every frozen block by a stub returning the boundary state (computed or cached)
  and the LM head by a stub that records the final hidden states; the labelled-positions loss follows.

Rows that share leading tokens run them once (``chatfreeze.fastpath.shared_prefix``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from . import shared_prefix

_NO_FORWARD = object()


@contextlib.contextmanager
def replaced_forwards(replacements: dict[nn.Module, Callable]) -> Iterator[None]:
    """Temporarily give modules another ``forward`` (instance attribute; hooks and wrappers still run)."""
    saved = []
    try:
        for module, forward in replacements.items():
            saved.append((module, module.__dict__.get("forward", _NO_FORWARD)))
            module.forward = forward
        yield
    finally:
        for module, previous in reversed(saved):
            if previous is _NO_FORWARD:
                module.__dict__.pop("forward", None)
            else:
                module.forward = previous


def _hidden_of(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _empty_logits(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    # The model's own logit post-processing (soft-capping, scaling, .contiguous()) runs on this and costs nothing.
    return hidden_states.new_empty((*hidden_states.shape[:-1], 0))



class PrefixRunner:
    """Runs a causal LM in two passes: the frozen prefix (no grad) and the trainable top from a boundary state.

    Rows of a batch that start with the same tokens (dialogues share their system prompt: 100 of ~255 tokens
    in this project's data) run those tokens through the frozen blocks once, as one row whose KV cache the
    other rows attend to, through the model's own cache; the first time, the result is checked against the
    full computation, and sharing is switched off (with a log line) if it differs.
    """

    MIN_SHARED_TOKENS = 16  # below this, a separate pass for the shared tokens costs more than it saves
    # The largest difference allowed between shared-token and full states, per token, relative to its state's norm
    # (``shared_prefix._difference``). SmolLM2's 24 frozen blocks, 8 support dialogues: 2.0e-6 in fp32 (17 eps; a
    # row computed alone instead of padded in its batch: 1.3e-6), 0.033 in bf16 (alone: 0.043) and 0.0038 in fp16,
    # about 4 eps (docs/fastpath.md). A wrong position or mask gives O(1). So 1e-4, or 32 eps of a 16-bit dtype.
    SHARED_TOLERANCE = 1e-4
    SHARED_TOLERANCE_EPS = 32

    def __init__(self, model: nn.Module, blocks: nn.ModuleList, num_prefix_blocks: int):
        self.model = model
        self.blocks = blocks
        self.num_prefix_blocks = num_prefix_blocks
        self.head = model.get_output_embeddings()
        self.output_arity = 0  # 0: blocks return a tensor (transformers 5); n: a tuple of n, hidden state first
        self.boundary_dtype: torch.dtype | None = None  # what the prefix produced (autocast may differ from weights)
        self.share_prefixes = True  # shared leading tokens through the frozen prefix once
        self.share_top = True  # ... and through the trainable blocks once (with their graph)
        self.shared: shared_prefix.SharedPrefix | None = None  # the last shared leading tokens used
        self.shared_rows: dict[tuple, shared_prefix.SharedPrefix] = {}  # a few, by their tokens
        self.shared_checked = self.top_checked = self.base_top_checked = False

    def shared_tolerance(self, dtype: torch.dtype) -> float:
        return max(self.SHARED_TOLERANCE, self.SHARED_TOLERANCE_EPS * torch.finfo(dtype).eps)

    def _as_block_output(self, hidden: torch.Tensor):
        return hidden if not self.output_arity else (hidden,) + (None,) * (self.output_arity - 1)

    def _run_prefix(self, model_inputs: dict, grad: bool):
        """One forward with the trainable blocks and the head stubbed: (boundary state, the model's output)."""
        last = self.blocks[self.num_prefix_blocks - 1]
        captured = []

        def record(module, args, output):
            captured.append(output)

        def skip(*args, **kwargs):
            return captured[-1]

        replacements = {block: skip for block in self.blocks[self.num_prefix_blocks :]}
        replacements[self.head] = _empty_logits
        handle = last.register_forward_hook(record)
        try:
            with torch.set_grad_enabled(grad), replaced_forwards(replacements):
                output = self.model(**model_inputs)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"block {self.num_prefix_blocks - 1} ran {len(captured)} times in one forward")
        block_output = captured[0]
        self.output_arity = len(block_output) if isinstance(block_output, (tuple, list)) else 0
        hidden = _hidden_of(block_output)
        self.boundary_dtype = hidden.dtype
        return (hidden if grad else hidden.detach()), output

    def prefix(self, model_inputs: dict, grad: bool = False) -> torch.Tensor:
        """The boundary hidden state ``[batch, seq, hidden]``: the output of the last frozen block, detached."""
        if not grad and self.share_prefixes:
            boundary = shared_prefix.prefix_with_shared_tokens(self, model_inputs)
            if boundary is not None:
                return boundary
        return self._run_prefix(model_inputs, grad)[0]

    def final_hidden(self, model: nn.Module, model_inputs: dict, boundary: torch.Tensor | None) -> torch.Tensor:
        """Hidden states the LM head would see, with the graph starting at ``boundary`` (if given).

        ``model`` is what the Trainer calls (possibly a DDP wrapper around ``self.model``), so gradient
        synchronisation works as in a plain step. Rows that share leading tokens run them through the
        trainable blocks once (one row whose KV cache, with its graph, the other rows attend to; its outputs
        are expanded, so gradients sum over the rows exactly as if each had computed them) when that is safe:
        the unwrapped model, no activation checkpointing (its recomputation would append to the cache again),
        no randomness in the blocks, a plain full-attention cache; checked once against the full pass.
        """
        if boundary is not None and self.share_top and model is self.model:
            hidden = shared_prefix.final_hidden_shared(self, model_inputs, boundary)
            if hidden is not None:
                return hidden
        return self.top_pass(model, model_inputs, boundary)[0]

    def top_pass(self, model: nn.Module, model_inputs: dict, boundary: torch.Tensor | None):
        """``(final hidden states, the model's output)`` with the frozen blocks stubbed to return ``boundary``."""
        captured = []

        def record_head_input(hidden_states, *args, **kwargs):
            captured.append(hidden_states)
            return _empty_logits(hidden_states)

        replacements: dict[nn.Module, Callable] = {self.head: record_head_input}
        if boundary is not None:
            output = self._as_block_output(boundary)
            for block in self.blocks[: self.num_prefix_blocks]:
                replacements[block] = lambda *args, **kwargs: output
        with replaced_forwards(replacements):
            model_output = model(**model_inputs)
        if len(captured) != 1:
            raise RuntimeError(f"the LM head ran {len(captured)} times in one forward")
        return captured[0], model_output
