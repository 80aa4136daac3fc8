"""Freeze-aware training fast path: skip the work a frozen bottom makes unnecessary, with the same maths.

Three things a plain ``Trainer`` does that freeze-tuning does not need:

1. **An autograd-free frozen prefix.** The embeddings and frozen blocks ``0..k-1`` run under
   ``torch.no_grad()``; the boundary hidden state (the output of block ``k-1``) is detached and the graph
   starts there, whatever hooks (``enable_input_require_grads``) are installed.
2. **LM head and loss at labelled positions only.** Dialogue data masks every system and user token, yet
   the plain loss projects every position onto the vocabulary (49152 x 576 for SmolLM2), forward and
   backward. Here the final hidden states are gathered where the *shifted* labels are set, then projected,
   post-processed as the model does (e.g. Gemma-2's soft-capping) and reduced as ``ForCausalLMLoss`` does
   (mean over labelled tokens, or sum / ``num_items_in_batch`` under gradient accumulation). Chunked (and
   recomputed in backward) when the logits would be large.
3. **A frozen-prefix activation cache.** The boundary states of each example are kept (RAM or a disk
   memmap, optionally half precision) during the first epoch; later epochs feed the trainable blocks from
   the cache and never run the prefix.
4. **Shared leading tokens once per batch.** Support dialogues all start with the same system prompt (100 of
   ~255 tokens in this project's data). Causal attention makes those tokens' states the same in every row,
   so they run as one row whose KV cache (the model's own) the other rows attend to: once per training run
   through the frozen prefix, once per batch (with its graph) through the trainable blocks. Same maths; the
   floating-point sums run in another order (~1e-7 on the loss). Checked once against the full computation.

How the model is driven, generically: every pass is the model's own ``forward`` (so attention masks, position
ids and rotary embeddings are the model's own), with some modules' ``forward`` temporarily replaced:

* the *prefix pass* (no grad) replaces the trainable blocks by stubs and the LM head by an empty stub, and
  records the output of block ``k-1``;
* the *top pass* replaces every frozen block by a stub returning the boundary state (computed or cached)
  and the LM head by a stub that records the final hidden states; the labelled-positions loss follows.

Everything that cannot be exact is switched off with a log line saying why: architectures whose logit
processing is not verified here, DeepSpeed/FSDP, label smoothing (whole fast path); a prefix that holds a
trainable parameter (no prefix skipping); randomness in the prefix, collators not known to be deterministic,
left-padded or packed batches (cache); dropout, activation checkpointing, DDP, sliding-window caches (sharing
of leading tokens).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
INDEX_COLUMN = "chatfreeze_example_index"
PREFIX_CACHE_MODES = ("auto", "ram", "disk", "off")
PREFIX_CACHE_DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Logits of more than this many elements are computed in chunks, each recomputed in backward:
# 2^26 fp32 logits = 256 MiB, i.e. ~1365 labelled positions at SmolLM2's 49152-token vocabulary.
LOSS_CHUNK_ELEMENTS = 1 << 26
# ``auto`` keeps the cache in RAM while it needs at most this share of the memory available now.
RAM_SHARE_FOR_CACHE = 0.5


# ----------------------------------------------------------------------------------------------------------
# What each verified architecture does to its LM head's output (transformers 5.x ``*ForCausalLM.forward``)
# ----------------------------------------------------------------------------------------------------------


def _identity(logits: torch.Tensor, config) -> torch.Tensor:
    return logits


def _softcap(logits: torch.Tensor, config) -> torch.Tensor:
    cap = getattr(config, "final_logit_softcapping", None)
    return logits if cap is None else torch.tanh(logits / cap) * cap


def _times_logit_scale(logits: torch.Tensor, config) -> torch.Tensor:
    return logits * config.logit_scale


def _over_logits_scaling(logits: torch.Tensor, config) -> torch.Tensor:
    return logits / config.logits_scaling


# Only models whose forward is "hidden = decoder(...); logits = post(lm_head(hidden)); loss = ForCausalLMLoss"
# belong here: MoE models (router aux loss added to the loss) and anything unread fall back to the plain path.
LOGIT_PROCESSING: dict[str, Callable] = {
    **dict.fromkeys(
        ("llama", "mistral", "qwen2", "qwen3", "gemma", "phi", "phi3", "gpt2", "gpt_neox", "opt", "smollm3",
         "olmo", "olmo2", "stablelm", "starcoder2"),
        _identity,
    ),
    "gemma2": _softcap,
    "gemma3_text": _softcap,
    "cohere": _times_logit_scale,
    "granite": _over_logits_scaling,
}

# Config fields that turn on randomness inside blocks or embeddings when > 0 (functional dropout in
# attention is invisible as a module); heads for classification/summary tasks are not part of a causal LM.
_RANDOM_CONFIG_FIELD = re.compile(r"(dropout|pdrop|layerdrop)")
_UNRELATED_CONFIG_FIELD = re.compile(r"^(classifier|summary|cls)_")


# ----------------------------------------------------------------------------------------------------------
# Driving the model's own forward with some modules replaced
# ----------------------------------------------------------------------------------------------------------

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


class PrefixRunner:
    """Runs a causal LM in two passes: the frozen prefix (no grad) and the trainable top from a boundary state.

    Rows of a batch that start with the same tokens (dialogues share their system prompt: 100 of ~255 tokens
    in this project's data) run those tokens through the frozen blocks once, as one row whose KV cache the
    other rows attend to, through the model's own cache; the first time, the result is checked against the
    full computation, and sharing is switched off (with a log line) if it differs.
    """

    MIN_SHARED_TOKENS = 16  # below this, a separate pass for the shared tokens costs more than it saves
    SHARED_TOLERANCE = 1e-4  # relative to the largest boundary value; fp32 kernels differ by ~1e-6

    def __init__(self, model: nn.Module, blocks: nn.ModuleList, num_prefix_blocks: int):
        self.model = model
        self.blocks = blocks
        self.num_prefix_blocks = num_prefix_blocks
        self.head = model.get_output_embeddings()
        self.output_arity = 0  # 0: blocks return a tensor (transformers 5); n: a tuple of n, hidden state first
        self.boundary_dtype: torch.dtype | None = None  # what the prefix produced (autocast may differ from weights)
        self.share_prefixes = True  # shared leading tokens through the frozen prefix once
        self.share_top = True  # ... and through the trainable blocks once (with their graph)
        self.shared: SharedPrefix | None = None
        self.shared_checked = self.top_checked = False

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
            boundary = self._prefix_with_shared_tokens(model_inputs)
            if boundary is not None:
                return boundary
        return self._run_prefix(model_inputs, grad)[0]

    def _prefix_with_shared_tokens(self, model_inputs: dict) -> torch.Tensor | None:
        split = self._shared_split(model_inputs)
        if split is None:
            return None
        length, real = split
        input_ids = model_inputs["input_ids"]
        shared = self.shared
        if (shared is None or shared.length > length or shared.boundary.device != input_ids.device
                or not torch.equal(input_ids[0, : shared.length], shared.token_ids)):
            shared = self._share(input_ids[0, :length])
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
        suffix, _ = self._run_prefix(suffix_inputs, grad=False)
        boundary = torch.cat([shared.boundary.expand(batch, -1, -1), suffix], dim=1)
        if not self.shared_checked:
            self.shared_checked = True
            full, _ = self._run_prefix(model_inputs, grad=False)
            difference, scale = _difference(full, boundary, real)
            if not difference <= self.SHARED_TOLERANCE * scale:
                self._stop_sharing(f"the result differs from the full computation by {difference:.3g}")
                return full
            logger.info("Fast path: rows that share their first tokens (e.g. a system prompt; %d here) run them "
                        "through the frozen prefix once (checked: max difference %.2g from the full "
                        "computation).", shared.length, difference)
        return boundary

    def _share(self, token_ids: torch.Tensor) -> SharedPrefix | None:
        row = token_ids.unsqueeze(0)
        boundary, output = self._run_prefix(
            {"input_ids": row, "attention_mask": torch.ones_like(row), "use_cache": True}, grad=False
        )
        cache = getattr(output, "cache", None)
        why_not = _unsupported_cache(cache, self.num_prefix_blocks)
        if why_not:
            self._stop_sharing(why_not)
            return None
        self.shared = SharedPrefix(token_ids.clone(), cache, boundary)
        return self.shared

    def _stop_sharing(self, why: str) -> None:
        self.share_prefixes = False
        self.shared = None
        logger.info("Fast path: leading tokens shared by a batch's rows are computed per row (%s).", why)

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
            hidden = self._final_hidden_shared(model_inputs, boundary)
            if hidden is not None:
                return hidden
        return self._top_pass(model, model_inputs, boundary)[0]

    def _top_pass(self, model: nn.Module, model_inputs: dict, boundary: torch.Tensor | None):
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

    def _final_hidden_shared(self, model_inputs: dict, boundary: torch.Tensor) -> torch.Tensor | None:
        split = self._shared_split(model_inputs)
        if split is None:
            return None
        length, real = split
        if any(getattr(block, "gradient_checkpointing", False) for block in self.blocks):
            self._stop_sharing_top("activation checkpointing recomputes blocks, which would grow their KV cache")
            return None
        input_ids = model_inputs["input_ids"]
        batch = input_ids.shape[0]
        row = input_ids[:1, :length]
        shared, output = self._top_pass(
            self.model, {"input_ids": row, "attention_mask": torch.ones_like(row), "use_cache": True},
            boundary[:1, :length],
        )
        cache = getattr(output, "cache", None)
        why_not = _unsupported_cache(cache, len(self.blocks))
        if why_not:
            self._stop_sharing_top(why_not)
            return None
        # The stubbed frozen blocks never attend; their cache entries only have to report the shared length,
        # from which the model derives position ids and the attention mask.
        placeholder = boundary.new_empty((1, 1, length, 1))
        for layer in cache.layers[: self.num_prefix_blocks]:
            layer.lazy_initialization(placeholder, placeholder)
            layer.keys = layer.values = placeholder
        cache.batch_repeat_interleave(batch)
        attention_mask = model_inputs.get("attention_mask")
        suffix, _ = self._top_pass(self.model, {
            "input_ids": input_ids[:, length:],
            "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
            "cache": cache,
            "use_cache": True,
        }, boundary[:, length:])
        hidden = torch.cat([shared.expand(batch, -1, -1), suffix], dim=1)
        if not self.top_checked:
            self.top_checked = True
            with torch.no_grad():
                full = self._top_pass(self.model, model_inputs, boundary)[0]
            difference, scale = _difference(full, hidden, real)
            if not difference <= self.SHARED_TOLERANCE * scale:
                self._stop_sharing_top(f"the result differs from the full pass by {difference:.3g}")
                return None
            logger.info("Fast path: the %d leading tokens the rows of a batch share also run through the "
                        "trainable blocks once per batch (checked: max difference %.2g from the full pass).",
                        length, difference)
        return hidden

    def _shared_split(self, model_inputs: dict) -> tuple[int, torch.Tensor] | None:
        """(shared leading tokens, real-token mask) if this batch's rows share enough leading tokens."""
        if set(model_inputs) - {"input_ids", "attention_mask", "use_cache"}:
            return None  # other per-token inputs would need splitting too
        real = right_padded_layout(model_inputs)
        if real is None or model_inputs["input_ids"].shape[0] < 2:
            return None
        length = common_prefix_length(model_inputs["input_ids"], real)
        return (length, real) if length >= self.MIN_SHARED_TOKENS else None

    def _stop_sharing_top(self, why: str) -> None:
        self.share_top = False
        logger.info("Fast path: leading tokens shared by a batch's rows run through the trainable blocks per "
                    "row (%s).", why)


def _unsupported_cache(cache, num_layers: int) -> str | None:
    from transformers.cache_utils import DynamicCache, DynamicLayer

    layers = getattr(cache, "layers", [])
    if type(cache) is not DynamicCache or len(layers) < num_layers:
        return f"the model keeps a {type(cache).__name__} cache, not a plain per-layer one"
    if any(type(layer) is not DynamicLayer for layer in layers):
        return "the model has sliding-window or other non-full-attention layers"
    return None


def _difference(reference: torch.Tensor, other: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """Largest absolute difference at real positions, and the scale to judge it by (at least 1)."""
    reference, other = reference.detach(), other.detach()
    return float((reference - other)[real].abs().max()), max(1.0, float(reference[real].abs().max()))


# ----------------------------------------------------------------------------------------------------------
# The loss at labelled positions only
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# The frozen-prefix activation cache
# ----------------------------------------------------------------------------------------------------------


def _numpy_storage_dtype(dtype: torch.dtype):
    # numpy has no bfloat16: store its bits as int16 and view them as bfloat16 in torch.
    return {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.int16}[dtype]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


class PrefixCache:
    """Boundary states of every example, unpadded, in one flat ``[total_tokens, hidden]`` array.

    Example ``i`` owns rows ``offsets[i]:offsets[i+1]``; its token ids are kept beside the states (4 bytes a
    token against 2304 for SmolLM2's fp32 states) and checked on every read, so a changed example is never
    served stale states.
    """

    def __init__(self, lengths: list[int], hidden_size: int, dtype: torch.dtype, storage: str,
                 directory: str | None = None):
        self.lengths = torch.tensor(lengths, dtype=torch.long)
        self.offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
        self.offsets[1:] = torch.cumsum(self.lengths, 0)
        total = int(self.offsets[-1])
        self.dtype, self.storage, self.hidden_size = dtype, storage, hidden_size
        self.filled = torch.zeros(len(lengths), dtype=torch.bool)
        self.directory = None
        if storage == "ram":
            # torch.empty commits no memory until rows are written: RSS grows as epoch 1 fills the cache.
            self.states = torch.empty((total, hidden_size), dtype=dtype)
            self.token_ids = torch.empty(total, dtype=torch.int32)
        else:
            self.directory = tempfile.mkdtemp(prefix="chatfreeze-prefix-cache-", dir=directory)
            states = np.memmap(os.path.join(self.directory, "states.bin"), mode="w+",
                               dtype=_numpy_storage_dtype(dtype), shape=(max(total, 1), hidden_size))
            ids = np.memmap(os.path.join(self.directory, "token_ids.bin"), mode="w+", dtype=np.int32,
                            shape=(max(total, 1),))
            self.states = torch.from_numpy(states).view(dtype)[:total]
            self.token_ids = torch.from_numpy(ids)[:total]
        self.hits = self.misses = 0

    @staticmethod
    def estimate_bytes(num_tokens: int, hidden_size: int, dtype: torch.dtype) -> int:
        return num_tokens * (hidden_size * torch.empty((), dtype=dtype).element_size() + 4)

    @property
    def nbytes(self) -> int:
        return self.estimate_bytes(int(self.offsets[-1]), self.hidden_size, self.dtype)

    def lookup(self, indices: torch.Tensor, rows: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """Cached states of each example (in the cache dtype), or None unless all are cached and unchanged.

        Raises ``ValueError`` if an example's tokens differ from those it was cached with.
        """
        if not bool(self.filled[indices].all()):
            return None
        states = []
        for index, ids in zip(indices.tolist(), rows, strict=True):
            start, end = int(self.offsets[index]), int(self.offsets[index + 1])
            if ids.numel() != end - start or not torch.equal(self.token_ids[start:end], ids.to(torch.int32)):
                raise ValueError(f"example {index} has other tokens than when it was cached")
            states.append(self.states[start:end])
        return states

    def store(self, indices: torch.Tensor, rows: list[torch.Tensor], states: list[torch.Tensor]) -> None:
        """Keep each example's states; raises ``ValueError`` if one is not as long as the dataset said."""
        for index, ids, row_states in zip(indices.tolist(), rows, states, strict=True):
            if self.filled[index]:
                continue
            start, end = int(self.offsets[index]), int(self.offsets[index + 1])
            if ids.numel() != end - start:
                raise ValueError(
                    f"example {index} reached the model with {ids.numel()} tokens but has {end - start} in the "
                    "dataset (the collator truncates or adds tokens)"
                )
            self.states[start:end] = row_states.to(device="cpu", dtype=self.dtype)
            self.token_ids[start:end] = ids.to(device="cpu", dtype=torch.int32)
            self.filled[index] = True

    def release(self) -> None:
        self.states = self.token_ids = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def right_padded_layout(model_inputs: dict) -> torch.Tensor | None:
    """``[batch, seq]`` bool mask of the real tokens if the batch is laid out as the cache needs, else None.

    Needed: right padding (each row's tokens first, so their positions and causal context do not depend on
    the batch width) and no caller-supplied position ids or embeddings (packed rows keyed by one index).
    """
    if any(key in model_inputs for key in ("position_ids", "inputs_embeds", "cache", "past_key_values")):
        return None
    input_ids = model_inputs.get("input_ids")
    if input_ids is None or input_ids.dim() != 2:
        return None
    mask = model_inputs.get("attention_mask")
    if mask is None:
        return torch.ones_like(input_ids, dtype=torch.bool)
    if mask.shape != input_ids.shape or not bool(((mask == 0) | (mask == 1)).all()):
        return None
    if mask.shape[1] > 1 and not bool((mask[:, 1:] <= mask[:, :-1]).all()):
        return None
    return mask.bool()


# ----------------------------------------------------------------------------------------------------------
# Decisions
# ----------------------------------------------------------------------------------------------------------


def prefix_randomness(model: nn.Module, blocks_prefix: str, num_prefix_blocks: int) -> str | None:
    """Why embeddings + blocks ``0..num_prefix_blocks-1`` are not deterministic in training, or None if they are."""
    config = getattr(model, "config", None)
    if config is not None:
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        for key, value in sorted(text_config.to_dict().items()):
            if (_RANDOM_CONFIG_FIELD.search(key) and not _UNRELATED_CONFIG_FIELD.match(key)
                    and isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                return f"config {key}={value} (dropout in the blocks or embeddings)"
    trainable_block = re.compile(re.escape(blocks_prefix) + r"\.(\d+)(\.|$)")
    head = model.get_output_embeddings()
    head_names = {name for name, module in model.named_modules() if module is head}
    for name, module in model.named_modules():
        match = trainable_block.match(name)
        if match and int(match.group(1)) >= num_prefix_blocks:
            continue
        if any(name == h or name.startswith(h + ".") for h in head_names):
            continue
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"{name} is {type(module).__name__}(p={module.p})"
    return None


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def collator_is_deterministic(collator) -> bool:
    """Known to give each example the same tokens every epoch (padding aside)."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, default_data_collator

    from .data import DialogueCollator

    collator = getattr(collator, "collator", collator)  # our IndexedCollator
    if getattr(collator, "deterministic", False):
        return True  # a user collator can declare it
    return collator is default_data_collator or isinstance(
        collator, (DialogueCollator, DataCollatorWithPadding, DataCollatorForSeq2Seq)
    )


class IndexedCollator:
    """Carries each example's dataset index (``INDEX_COLUMN``) past the user's collator as a tensor."""

    def __init__(self, collator: Callable):
        self.collator = collator

    def __call__(self, features: list[dict]) -> dict:
        if not features or INDEX_COLUMN not in features[0]:
            return self.collator(features)
        indices = torch.tensor([int(f[INDEX_COLUMN]) for f in features], dtype=torch.long)
        batch = self.collator([{k: v for k, v in f.items() if k != INDEX_COLUMN} for f in features])
        batch[INDEX_COLUMN] = indices
        return batch


class _IndexedDataset(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], INDEX_COLUMN: index}


def with_example_index(dataset):
    """The dataset with an ``INDEX_COLUMN`` per example, or None if it is not a map-style dataset of dicts."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        if INDEX_COLUMN in dataset.column_names:
            return dataset
        return dataset.add_column(INDEX_COLUMN, list(range(len(dataset))))
    if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
        return None
    return _IndexedDataset(dataset)


def example_lengths(dataset) -> list[int] | None:
    import datasets

    try:
        if isinstance(dataset, datasets.Dataset):
            return [len(ids) for ids in dataset["input_ids"]]
        return [len(dataset[i]["input_ids"]) for i in range(len(dataset))]
    except (KeyError, TypeError, IndexError):
        return None


@dataclass
class FastPathSettings:
    prefix_cache: str = "auto"
    prefix_cache_dtype: str = "auto"
    prefix_cache_max_gb: float = 4.0
    prefix_cache_dir: str | None = None

    @classmethod
    def from_args(cls, args) -> FastPathSettings:
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__ if hasattr(args, name)})


@dataclass
class FastPath:
    """The fast path of one ``FreezeTrainer``: the prefix runner, the loss and the cache, with their decisions."""

    model: nn.Module
    runner: PrefixRunner
    process_logits: Callable[[torch.Tensor], torch.Tensor]
    settings: FastPathSettings
    blocks_prefix: str
    skip_prefix: bool
    prefix_label: str
    cache: PrefixCache | None = None
    cache_wanted: bool = False  # the dataset carries example indices; begin() decides whether a cache is used
    probed: bool = False
    last_cache_stats: dict | None = None  # hits/misses/bytes of the cache when the last train() ended
    _said: set = field(default_factory=set)

    @classmethod
    def create(cls, trainer, plan) -> FastPath | None:
        """Decide whether the fast path can run for this trainer; log why not."""
        args, model = trainer.args, trainer.model
        why_not = None
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if not getattr(args, "fast_path", True):
            why_not = "--fast_path false"
        elif trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
            why_not = "DeepSpeed/FSDP shard the model; their engines run the plain forward"
        elif trainer.label_smoother is not None or trainer.compute_loss_func is not None:
            why_not = "label smoothing or a custom compute_loss_func needs logits at every position"
        elif model_type not in LOGIT_PROCESSING:
            why_not = (f"model type {model_type!r} is not among those whose LM-head processing is reproduced "
                       f"exactly ({', '.join(sorted(LOGIT_PROCESSING))})")
        elif model.get_output_embeddings() is None:
            why_not = "the model exposes no output embeddings (LM head)"
        if why_not:
            logger.info("Fast path off (%s): plain Trainer loss over every position.", why_not)
            return None
        blocks = model.get_submodule(plan.blocks_prefix)
        num_prefix = plan.first_trainable_layer
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        fast = cls(
            model=model,
            runner=PrefixRunner(model, blocks, num_prefix),
            process_logits=lambda logits: LOGIT_PROCESSING[model_type](logits, config),
            settings=FastPathSettings.from_args(args),
            blocks_prefix=plan.blocks_prefix,
            skip_prefix=num_prefix > 0,
            prefix_label=f"embeddings + blocks 0-{num_prefix - 1}" if num_prefix > 1 else "embeddings + block 0",
        )
        # Shared leading tokens computed once would give every row the same dropout draw.
        randomness = prefix_randomness(model, plan.blocks_prefix, len(blocks))
        if randomness:
            fast.runner.share_top = False
            fast.runner.share_prefixes = prefix_randomness(model, plan.blocks_prefix, num_prefix) is None
            where = "trainable blocks" if fast.runner.share_prefixes else "frozen prefix or trainable blocks"
            logger.info("Fast path: leading tokens shared by a batch's rows are computed per row in the %s "
                        "(%s: every row needs its own dropout draw).", where, randomness)
        if not fast.skip_prefix:
            logger.info("Fast path: no frozen block at the bottom, so there is no prefix to skip; "
                        "loss at labelled positions only.")
        else:
            logger.info("Fast path on: %s run without autograd; LM head + loss at labelled positions only "
                        "(--fast_path false for the plain Trainer path).", fast.prefix_label)
        return fast

    def say_once(self, key: str, level: int, message: str, *args) -> None:
        if key not in self._said:
            self._said.add(key)
            logger.log(level, message, *args)

    # ---- cache life cycle ------------------------------------------------------------------------------

    def cache_refusal(self, trainer, plan_epochs: float | None) -> str | None:
        """Why the prefix cache cannot (or, under ``auto``, should not) be used in this run; None if it can."""
        mode = self.settings.prefix_cache
        if mode == "off":
            return "--prefix_cache off"
        if not self.skip_prefix:
            return "no frozen prefix to cache"
        if not self.cache_wanted:
            return "the training dataset is not a map-style dataset whose examples can be indexed"
        randomness = prefix_randomness(self.model, self.blocks_prefix, self.runner.num_prefix_blocks)
        if randomness:
            return f"the frozen prefix is random in training: {randomness}; cached states would freeze one draw"
        if not collator_is_deterministic(trainer.data_collator):
            inner = getattr(trainer.data_collator, "collator", trainer.data_collator)
            return (f"the data collator {type(inner).__name__} is not known to give the same tokens every epoch "
                    "(set `deterministic = True` on it if it does)")
        if mode == "auto" and plan_epochs is not None and plan_epochs <= 1:
            return f"this run covers {plan_epochs:.3g} epoch(s), so no example is seen twice"
        return None

    def begin(self, trainer, plan_epochs: float | None) -> None:
        """Allocate the cache if this run can use it (and has none yet), printing its size up front."""
        if self.cache is not None:
            return
        refusal = self.cache_refusal(trainer, plan_epochs)
        if refusal:
            level = logging.WARNING if self.settings.prefix_cache in ("ram", "disk") else logging.INFO
            logger.log(level, "Prefix cache off: %s.", refusal)
            return
        lengths = example_lengths(trainer.train_dataset)
        if lengths is None:
            logger.warning("Prefix cache off: the training examples have no input_ids to measure.")
            return
        config = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") \
            else self.model.config
        hidden_size = config.hidden_size
        model_dtype = next(self.runner.blocks.parameters()).dtype
        dtype = PREFIX_CACHE_DTYPES[self.settings.prefix_cache_dtype] or model_dtype
        size = PrefixCache.estimate_bytes(sum(lengths), hidden_size, dtype)
        cap = self.settings.prefix_cache_max_gb * 1e9
        gb = size / 1e9
        if size > cap:
            logger.warning("Prefix cache off: it would need %.2f GB (%d tokens x %d x %s) > --prefix_cache_max_gb "
                           "%.2f.", gb, sum(lengths), hidden_size, _dtype_name(dtype), self.settings.prefix_cache_max_gb)
            return
        storage = self.settings.prefix_cache
        if storage == "auto":
            available = available_memory_bytes()
            storage = "ram" if available is None or size <= RAM_SHARE_FOR_CACHE * available else "disk"
        exact = "exact" if dtype == model_dtype or dtype == torch.float32 else \
            f"approximate: {_dtype_name(dtype)} states for a {_dtype_name(model_dtype)} model"
        self.cache = PrefixCache(lengths, hidden_size, dtype, storage, self.settings.prefix_cache_dir)
        where = "RAM" if storage == "ram" else f"a disk memmap in {self.cache.directory}"
        logger.info(
            "Prefix cache: %d examples, %d tokens x %d x %s = %.2f GB in %s (cap %.2f GB; %s). The first epoch "
            "fills it; later epochs skip %s.", len(lengths), sum(lengths), hidden_size, _dtype_name(dtype), gb,
            where, self.settings.prefix_cache_max_gb, exact, self.prefix_label,
        )

    def end(self) -> None:
        if self.cache is not None:
            cache = self.cache
            self.last_cache_stats = {"hits": cache.hits, "misses": cache.misses, "bytes": cache.nbytes}
            logger.info("Prefix cache: %d batches served from the cache, %d computed the prefix.",
                        cache.hits, cache.misses)
            cache.release()
            self.cache = None

    def drop_cache(self, why: str) -> None:
        logger.warning("Prefix cache off from now on: %s; the prefix is computed for every batch.", why)
        if self.cache is not None:
            self.cache.release()
            self.cache = None

    # ---- per batch ----------------------------------------------------------------------------------

    def probe(self, model_inputs: dict) -> None:
        """Once: check on a few tokens that nothing in the prefix is trainable (its output needs no grad)."""
        self.probed = True
        if not self.skip_prefix:
            return
        tokens = model_inputs["input_ids"][:1, :8]
        probe_inputs = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens), "use_cache": False}
        if self.runner.prefix(probe_inputs, grad=True).requires_grad:
            self.skip_prefix = False
            if self.cache is not None:
                self.drop_cache("the prefix holds a trainable parameter")
            logger.warning(
                "Fast path: %s produce an output that requires grad (a trainable parameter below block %d, e.g. "
                "from --extra_trainable_patterns or an unfrozen embedding/projection, or an input-grad hook); "
                "running them with autograd. Loss still at labelled positions only.",
                self.prefix_label, self.runner.num_prefix_blocks,
            )

    def boundary(self, model_inputs: dict, indices: torch.Tensor | None) -> torch.Tensor | None:
        """The boundary state for this batch: from the cache if every example is in it, else computed."""
        if not self.skip_prefix:
            return None
        if self.cache is None or indices is None:
            return self.runner.prefix(model_inputs)
        layout = right_padded_layout(model_inputs)
        if layout is None:
            self.say_once("layout", logging.WARNING, "Prefix cache: a batch is not right-padded (or carries position "
                          "ids / packing), so its states depend on the batch; computing the prefix for such batches.")
            return self.runner.prefix(model_inputs)
        input_ids = model_inputs["input_ids"]
        rows = [input_ids[r][layout[r]] for r in range(input_ids.shape[0])]
        try:
            cached = self.cache.lookup(indices.cpu(), [row.cpu() for row in rows])
        except ValueError as err:
            self.drop_cache(str(err))
            return self.runner.prefix(model_inputs)
        if cached is not None:
            self.cache.hits += 1
            dtype = self.runner.boundary_dtype
            boundary = input_ids.new_zeros((*input_ids.shape, self.cache.hidden_size), dtype=dtype)
            # Positions outside `layout` (padding) stay zero: no real token attends to them (right padding +
            # mask), and their labels are -100, so they reach neither the loss nor any gradient.
            boundary[layout] = torch.cat(cached).to(device=boundary.device, dtype=dtype)
            return boundary
        self.cache.misses += 1
        boundary = self.runner.prefix(model_inputs)
        try:
            self.cache.store(indices.cpu(), [row.cpu() for row in rows], [boundary[r][layout[r]] for r in range(len(rows))])
        except ValueError as err:
            self.drop_cache(str(err))
        return boundary

    def loss(self, model: nn.Module, inputs: dict, indices: torch.Tensor | None,
             num_items_in_batch: torch.Tensor | int | None) -> torch.Tensor:
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        shift = inputs.pop("shift_labels", None)
        if shift is None:
            shift = shifted_labels(labels)
        model_inputs = {**inputs, "use_cache": False}
        if not self.probed:
            self.probe(model_inputs)
        boundary = self.boundary(model_inputs, indices)
        hidden = self.runner.final_hidden(model, model_inputs, boundary)
        return labelled_positions_loss(hidden, shift, self.runner.head, self.process_logits, num_items_in_batch)

    def fill(self, batches, to_device: Callable[[dict], dict]) -> int:
        """Compute and keep the boundary states of every example in ``batches`` (no training). Returns how many."""
        if self.cache is None:
            return 0
        filled = 0
        for batch in batches:
            batch = to_device(dict(batch))
            indices = batch.pop(INDEX_COLUMN)
            batch.pop("labels", None)
            batch.pop("shift_labels", None)
            model_inputs = {**batch, "use_cache": False}
            if not self.probed:
                self.probe(model_inputs)
            if self.cache is None or not self.skip_prefix:
                break
            self.boundary(model_inputs, indices)
            filled += len(indices)
        if self.cache is not None:
            self.cache.hits = self.cache.misses = 0  # count training batches only
        return filled


def planned_epochs(args, num_examples: int) -> float | None:
    """How many passes over the data this run makes (None if unknown)."""
    if num_examples <= 0:
        return None
    if args.max_steps is not None and args.max_steps > 0:
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        return args.max_steps * per_step / num_examples
    return float(args.num_train_epochs)


__all__ = [
    "INDEX_COLUMN",
    "LOGIT_PROCESSING",
    "PREFIX_CACHE_DTYPES",
    "PREFIX_CACHE_MODES",
    "FastPath",
    "IndexedCollator",
    "PrefixCache",
    "PrefixRunner",
    "labelled_positions_loss",
    "planned_epochs",
    "prefix_randomness",
    "replaced_forwards",
    "shifted_labels",
    "with_example_index",
]
