"""The fast path of one ``FreezeTrainer``: the prefix runner, the loss and the cache, with their decisions.

Three things a plain ``Trainer`` does that freeze-tuning does not need, skipped with the same maths:

1. **An autograd-free frozen prefix** (``runner``): embeddings and frozen blocks ``0..k-1`` run under
   ``torch.no_grad()``; the graph starts at the boundary hidden state (the output of block ``k-1``).
2. **LM head and loss at labelled positions only** (``loss``).
3. **A frozen-prefix activation cache** (``cache``) for later epochs, and **shared leading tokens once per
   batch** (``shared_prefix``).

What may run is decided in ``policy``; each decision is logged once with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..common import text_config
from ..modeling.compat import LOGIT_PROCESSING
from ..progress import progress
from . import shared_prefix
from .batch import INDEX_COLUMN, KL_WEIGHT_COLUMN, example_lengths, right_padded_layout
from .cache import PrefixCache, allocate_cache
from .loss import labelled_positions_loss, shifted_labels
from .options import FastPathSettings
from .policy import TrainerSetup, cache_refusal, fast_path_refusal, prefix_randomness
from .runner import PrefixRunner, replaced_forwards

logger = logging.getLogger(__name__)



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
    setup: TrainerSetup = field(default_factory=TrainerSetup)
    base_top: object | None = None  # the base's trainable part, frozen, for --kl_to_base (retention.BaseTop)
    kl_weight: float = 0.0
    _said: set = field(default_factory=set)

    @classmethod
    def create(cls, model: nn.Module, plan, settings: FastPathSettings,
               setup: TrainerSetup | None = None) -> FastPath | None:
        """Decide whether the fast path can train ``model`` under ``plan`` in a trainer described by ``setup``;
        log why not."""
        setup = setup or TrainerSetup()
        why_not = fast_path_refusal(model, settings, setup)
        if why_not:
            logger.info("Fast path off (%s): plain Trainer loss over every position.", why_not)
            return None
        blocks = model.get_submodule(plan.blocks_prefix)
        num_prefix = plan.first_trainable_layer
        config, process = text_config(model.config), LOGIT_PROCESSING[model.config.model_type]
        fast = cls(
            model=model,
            runner=PrefixRunner(model, blocks, num_prefix),
            process_logits=lambda logits: process(logits, config),
            settings=settings,
            blocks_prefix=plan.blocks_prefix,
            skip_prefix=num_prefix > 0,
            prefix_label=f"embeddings + blocks 0-{num_prefix - 1}" if num_prefix > 1 else "embeddings + block 0",
            setup=setup,
        )
        fast._share_only_without_dropout(len(blocks))
        if not fast.skip_prefix:
            logger.info("Fast path: no frozen block at the bottom, so there is no prefix to skip; "
                        "loss at labelled positions only.")
        else:
            logger.info("Fast path on: %s run without autograd; LM head + loss at labelled positions only "
                        "(--fast_path false for the plain Trainer path).", fast.prefix_label)
        return fast

    def add_kl_to_base(self, base_top, weight: float) -> None:
        """Add ``weight · KL(p_base ‖ p)`` at the labelled positions, the base's distribution from ``base_top``
        (frozen copies of what trains, with ``replacements()``, ``head`` and ``parameters``) run on the same
        boundary states."""
        self.base_top, self.kl_weight = base_top, float(weight)
        logger.info("KL to the base (beta %g): a frozen copy of the %s parameters that train runs on the same "
                    "boundary states.", self.kl_weight, f"{base_top.parameters:,}")

    def _share_only_without_dropout(self, num_blocks: int) -> None:
        # Shared leading tokens computed once would give every row the same dropout draw.
        randomness = prefix_randomness(self.model, self.blocks_prefix, num_blocks)
        if randomness:
            self.runner.share_top = False
            self.runner.share_prefixes = prefix_randomness(
                self.model, self.blocks_prefix, self.runner.num_prefix_blocks) is None
            where = "trainable blocks" if self.runner.share_prefixes else "frozen prefix or trainable blocks"
            logger.info("Fast path: leading tokens shared by a batch's rows are computed per row in the %s "
                        "(%s: every row needs its own dropout draw).", where, randomness)

    def say_once(self, key: str, level: int, message: str, *args) -> None:
        if key not in self._said:
            self._said.add(key)
            logger.log(level, message, *args)

    # ---- cache life cycle ------------------------------------------------------------------------------

    def begin(self, train_dataset, collator, plan_epochs: float | None) -> None:
        """Allocate the cache if this run (``train_dataset`` batched by ``collator``) can use it and has none yet,
        printing its size up front."""
        if self.cache is not None:
            return
        refusal = cache_refusal(self, self.setup, collator, plan_epochs)
        if refusal:
            level = logging.WARNING if self.settings.prefix_cache in ("ram", "disk") else logging.INFO
            logger.log(level, "Prefix cache off: %s.", refusal)
            return
        lengths = example_lengths(train_dataset)
        if lengths is None:
            logger.warning("Prefix cache off: the training examples have no input_ids to measure.")
            return
        model_dtype = next(self.runner.blocks.parameters()).dtype
        self.cache = allocate_cache(self.settings, lengths, text_config(self.model.config).hidden_size,
                                    model_dtype, self.prefix_label)

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
        kl_rows = inputs.pop(KL_WEIGHT_COLUMN, None)
        labels = inputs.pop("labels")
        shift = inputs.pop("shift_labels", None)
        if shift is None:
            shift = shifted_labels(labels)
        model_inputs = {**inputs, "use_cache": False}
        if not self.probed:
            self.probe(model_inputs)
        boundary = self.boundary(model_inputs, indices)
        hidden = self.runner.final_hidden(model, model_inputs, boundary)
        base_hidden = self.base_hidden(model_inputs, boundary, kl_rows) if self.base_top is not None else None
        return labelled_positions_loss(hidden, shift, self.runner.head, self.process_logits, num_items_in_batch,
                                       base_hidden=base_hidden, base_head=self.base_top and self.base_top.head,
                                       kl_weight=self.kl_weight, kl_row_weights=kl_rows)

    def base_hidden(self, model_inputs: dict, boundary: torch.Tensor | None,
                    kl_rows: torch.Tensor | None = None) -> torch.Tensor | None:
        """The base model's final hidden states for this batch: its frozen top copy on the same boundary. With
        ``kl_rows`` (per-row KL weights), only the rows the KL applies to run (the others, e.g. drills, stay zero:
        their KL weight is 0); None when it applies to none."""
        rows = None
        if kl_rows is not None and not bool((kl_rows != 0).all()):
            rows = torch.nonzero(kl_rows != 0).flatten().to(model_inputs["input_ids"].device)
            if rows.numel() == 0:
                return None
        inputs, part = model_inputs, boundary
        if rows is not None:
            batch = model_inputs["input_ids"].shape[0]
            # Per-row tensors ([batch, tokens, ...]: ids, mask, position ids); a 1-D one (cache_position) is shared.
            inputs = {key: value.index_select(0, rows.to(value.device)) if torch.is_tensor(value) and
                      value.dim() >= 2 and value.shape[0] == batch else value for key, value in model_inputs.items()}
            part = None if boundary is None else boundary.index_select(0, rows.to(boundary.device))
        with torch.no_grad(), replaced_forwards(self.base_top.replacements()):
            hidden = None
            if part is not None and self.runner.share_top:
                # The rows' shared leading tokens (the system prompt) once through the base's copy too.
                hidden = shared_prefix.final_hidden_shared(self.runner, inputs, part, checked="base_top_checked",
                                                           what="the base's copy of the trainable blocks")
            if hidden is None:
                hidden = self.runner.top_pass(self.model, inputs, part)[0]
        if rows is None:
            return hidden
        full = hidden.new_zeros((model_inputs["input_ids"].shape[0], *hidden.shape[1:]))
        full[rows.to(hidden.device)] = hidden
        return full

    def fill(self, batches, to_device: Callable[[dict], dict]) -> int:
        """Compute and keep the boundary states of every example in ``batches`` (no training). Returns how many."""
        if self.cache is None:
            return 0
        filled = 0
        for batch in progress(batches, "Prefix cache", unit="batches"):
            batch = to_device(dict(batch))
            indices = batch.pop(INDEX_COLUMN)
            batch.pop(KL_WEIGHT_COLUMN, None)
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
