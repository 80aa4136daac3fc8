"""``FreezeTrainer``: a ``transformers.Trainer`` that trains only what a ``FreezePlan`` leaves trainable."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import get_last_checkpoint

from ..common import is_sharded
from ..fastpath import (
    INDEX_COLUMN,
    KL_WEIGHT_COLUMN,
    FastPath,
    FastPathSettings,
    IndexedCollator,
    planned_epochs,
    with_example_index,
)
from ..fastpath.loss import labelled_nll
from ..fastpath.policy import TrainerSetup
from ..freezing import (
    FreezePlan,
    apply_plan,
    changed_frozen_tensors,
    frozen_fingerprints,
)
from ..retention.kl_to_base import BaseTop
from . import compat

logger = logging.getLogger(__name__)


class FrozenWeightsGuard(TrainerCallback):
    """Proves, at the end of training, that no frozen tensor moved (bit for bit), on every process.

    Fingerprints are taken when the trainer is built, before any wrapper. Under FSDP and DeepSpeed the
    wrapper re-lays the parameters out (shards, flat parameters, a bf16 copy), so ``sharded`` guards
    retake them from what each process holds when training begins, before the first optimizer step. Under
    several processes the verdict is shared: every process fails together instead of one dying while the
    others save a model.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.sharded = False
        self.fingerprints = frozen_fingerprints(model)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.sharded:
            self.model = model if model is not None else self.model
            self.fingerprints = frozen_fingerprints(self.model, local=True)

    def on_train_end(self, args, state, control, **kwargs):
        changed = changed_frozen_tensors(self.model, self.fingerprints, local=self.sharded)
        changed_anywhere = len(changed)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            count = torch.tensor([len(changed)], device=args.device)
            torch.distributed.all_reduce(count)
            changed_anywhere = int(count.item())
        if changed_anywhere:
            where = f"first {changed[0]!r}" if changed else "on another process"
            raise RuntimeError(
                f"{changed_anywhere} frozen tensor(s) changed during training ({where}): something outside "
                "the optimizer wrote to them (a custom callback, weight decay on a re-created optimizer, or a "
                "gradual-unfreezing hook that did not rebuild the plan)."
            )
        logger.info("Verified: all %d frozen tensors are bit-identical to before training.", len(self.fingerprints))


def enable_trainable_checkpointing(model: nn.Module, plan: FreezePlan, kwargs: dict | None = None) -> None:
    """Activation checkpointing on the trainable blocks only, non-reentrant.

    Reentrant checkpointing needs an input that requires grad, which a frozen bottom never produces, so its
    blocks would silently get no gradients; transformers' workaround (``enable_input_require_grads``) makes
    autograd record a graph through every frozen block instead. Frozen blocks keep no activations for
    backward anyway, so checkpointing them would only recompute for nothing.
    """
    options = dict(kwargs or {})
    if options.get("use_reentrant"):
        logger.warning("use_reentrant=True ignored: with frozen lower blocks it yields no gradients; using False.")
    options["use_reentrant"] = False
    every_n_layers = options.pop("every_n_layers", 1)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs=options, every_n_layers=every_n_layers)
    blocks = model.get_submodule(plan.blocks_prefix)
    for index in plan.frozen_layers:
        blocks[index].gradient_checkpointing = False
    model.disable_input_require_grads()


def trained_batches(loader, steps: int, accumulation: int, cache) -> Iterator[dict]:
    """The micro-batches of the first ``steps`` optimizer steps, epoch by epoch in training's order (``steps`` counts
    ``ceil(len(loader) / accumulation)`` per epoch, as Trainer does), while ``cache`` lacks an example."""
    per_epoch = len(loader)
    updates_per_epoch = max(math.ceil(per_epoch / accumulation), 1)
    epoch = 0
    while steps > 0 and not bool(cache.filled.all()):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        take = per_epoch if steps >= updates_per_epoch else steps * accumulation
        batches = iter(loader)
        try:
            for index, batch in enumerate(batches):
                if index < take and not bool(cache.filled.all()):
                    yield batch
        finally:
            for _ in batches:  # to the end: only there does accelerate's loader leave the gradient state
                pass
        steps, epoch = steps - updates_per_epoch, epoch + 1


class FreezeTrainer(Trainer):
    """A ``Trainer`` that applies a ``FreezePlan`` before the optimizer (or any DDP/FSDP wrapper) exists.

    The optimizer sees only trainable parameters (``Trainer.create_optimizer`` keeps ``requires_grad``
    ones), DDP is told that no parameter goes unused, and at the end every frozen tensor is checked to be
    bit-identical to the pretrained one.

    Training steps take the freeze-aware fast path (``chatfreeze.fastpath``; ``--fast_path false`` for the
    plain one): the frozen prefix without autograd, the LM head and loss at labelled positions only, the
    prefix cache for later epochs. Evaluation and ``return_outputs`` calls use the plain ``compute_loss``.
    """

    def __init__(self, model: nn.Module, args, freeze_plan: FreezePlan, **kwargs):
        apply_plan(model, freeze_plan)
        self.freeze_plan = freeze_plan
        # A fixed freeze means every trainable parameter gets a gradient every step; letting DDP search
        # for unused ones costs a graph traversal per step and breaks with activation checkpointing.
        if args.ddp_find_unused_parameters is None:
            args.ddp_find_unused_parameters = False
        self.frozen_guard = FrozenWeightsGuard(model)
        callbacks = list(kwargs.pop("callbacks", None) or []) + [self.frozen_guard]
        super().__init__(model=model, args=args, callbacks=callbacks, **kwargs)
        self.frozen_guard.sharded = is_sharded(self)
        self.fast_path = FastPath.create(model, freeze_plan, FastPathSettings.from_args(args), self.trainer_setup())
        kl_weight = getattr(args, "kl_to_base", 0.0) or 0.0
        if kl_weight and self.fast_path is None:
            raise ValueError("--kl_to_base: needs the fast path, which is off for this run (the log says why); "
                             "drop --kl_to_base or enable the fast path.")
        if kl_weight:
            self.fast_path.add_kl_to_base(BaseTop(model, freeze_plan.trainable_parameter_names), kl_weight)
        self._index_training_examples()

    def trainer_setup(self) -> TrainerSetup:
        """What the fast path needs to know about this trainer, as plain values."""
        from transformers.training_args import ParallelMode

        args = self.args
        data_parallel = (getattr(args, "n_gpu", 1) > 1
                         and getattr(args, "parallel_mode", None) != ParallelMode.DISTRIBUTED)
        return TrainerSetup(sharded=is_sharded(self), data_parallel_gpus=args.n_gpu if data_parallel else 0,
                            needs_all_logits=self.label_smoother is not None or self.compute_loss_func is not None,
                            world_size=getattr(args, "world_size", 1) or 1)

    def _index_training_examples(self) -> None:
        """Give each training example its dataset index, carried to ``compute_loss``, for the prefix cache; carry
        the per-example KL weights (``KL_WEIGHT_COLUMN``, from ``--kl_sources``) the same way."""
        if self.fast_path is None or self.train_dataset is None:
            return
        weighted = KL_WEIGHT_COLUMN in (getattr(self.train_dataset, "column_names", None) or ())
        indexed = None if self.fast_path.settings.prefix_cache == "off" else with_example_index(self.train_dataset)
        if indexed is not None:
            self.train_dataset = indexed
            self.fast_path.cache_wanted = True
        if indexed is not None or weighted:
            self.data_collator = IndexedCollator(self.data_collator)

    def _get_train_sampler(self, train_dataset=None):
        # A run resumed mid-epoch must draw that epoch's order as the uninterrupted run did (compat explains).
        return compat.seeded_by_epoch(super()._get_train_sampler(train_dataset), self.args)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for column in (INDEX_COLUMN, KL_WEIGHT_COLUMN):  # remove_unused_columns must keep them
            compat.keep_signature_column(self, column)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        indices = inputs.pop(INDEX_COLUMN, None)
        fast = self.fast_path
        if fast is None or return_outputs or not model.training or "labels" not in inputs:
            inputs.pop(KL_WEIGHT_COLUMN, None)
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        # The same reduction as the model's own loss: sum / num_items_in_batch when the Trainer passes it.
        num_items = num_items_in_batch if self.model_accepts_loss_kwargs else None
        with self.accelerator.autocast():
            loss = fast.loss(model, inputs, indices, num_items)
        return compat.scale_loss_like_trainer(self, loss, num_items)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation loss with the LM head at labelled positions only (``fastpath.loss.labelled_nll``) when only
        the loss is wanted (no ``compute_metrics``): the same mean over labelled tokens as the model's own loss."""
        if not prediction_loss_only or self.fast_path is None or "labels" not in inputs:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        inputs = compat.prepare_inputs(self, inputs)
        inputs.pop(INDEX_COLUMN, None)
        inputs.pop(KL_WEIGHT_COLUMN, None)
        with torch.no_grad(), self.compute_loss_context_manager():
            total, count = labelled_nll(self.accelerator.unwrap_model(model), inputs["input_ids"],
                                        inputs.get("attention_mask"), inputs["labels"])
        return (total / count).detach(), None, None

    def fill_prefix_cache(self) -> int:
        """Compute the frozen prefix of every training example into the cache now (no training step).

        Training does this during its first epoch anyway; calling it first makes every step, including the
        first epoch's, train from the cache. Returns the number of examples cached (0 if there is no cache).
        """
        if self.fast_path is None:
            return 0
        self.fast_path.begin(self.train_dataset, self.data_collator, plan_epochs=None)
        if self.fast_path.cache is None:
            return 0
        dataset, collator = compat.training_loader_parts(self, self.train_dataset, self.data_collator)
        loader = torch.utils.data.DataLoader(dataset, batch_size=self.args.per_device_train_batch_size,
                                             collate_fn=collator, shuffle=False)
        # Same autocast as training steps, so the cached states are the ones a step would compute.
        with torch.no_grad(), self.accelerator.autocast():
            return self.fast_path.fill(loader, lambda batch: compat.prepare_inputs(self, batch))

    def _refill_prefix_cache(self, checkpoint: str | bool | None) -> None:
        """On resuming, put back into the prefix cache exactly what the interrupted run had cached by ``checkpoint``:
        the batches its steps trained on, drawn again in their order, run through the prefix again as they ran then.

        A state's last bits depend on the batch it was computed in (padding, batch size, the leading tokens its rows
        share: ~1e-6 of a token's norm in fp32), and the cache serves the first batch's states to every later epoch;
        filled from the resumed run's own, later batches instead, it made another run (tests/test_resume.py's: 1.7e-6
        apart on the weights after 60 steps). The sampler draws each epoch's order from the seed
        (``compat.seeded_by_epoch``), and a batch's states depend on that batch alone (``fastpath.shared_prefix``),
        so the same batches give the same bits.
        """
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
        cache = self.fast_path.cache
        state_file = os.path.join(checkpoint, TRAINER_STATE_NAME) if checkpoint else ""
        if cache is None or not os.path.isfile(state_file) or bool(cache.filled.all()):
            return
        steps = TrainerState.load_from_json(state_file).global_step
        batches = trained_batches(self.get_train_dataloader(), steps, self.args.gradient_accumulation_steps, cache)
        # The same autocast as a training step; the global RNG as it was (the loader draws from it).
        with torch.random.fork_rng(devices=[]), torch.no_grad(), self.accelerator.autocast():
            self.fast_path.fill(batches, lambda batch: compat.prepare_inputs(self, batch))
        if self.fast_path.cache is not None:
            logger.info("Prefix cache: %d of %d examples put back, from the batches of the %d steps %s had trained "
                        "on (computed as they were then).", int(cache.filled.sum()), len(cache.filled), steps,
                        os.path.basename(os.path.normpath(checkpoint)))

    def train(self, *args, **kwargs):
        wants_checkpointing = bool(self.args.activation_checkpointing)
        if wants_checkpointing:
            enable_trainable_checkpointing(self.model, self.freeze_plan, self.args.activation_checkpointing_kwargs)
            # Trainer.train would re-enable it on every block and hook the input embeddings to require grad.
            self.args.activation_checkpointing = False
        if self.fast_path is not None:
            size = len(self.train_dataset) if hasattr(self.train_dataset, "__len__") else 0
            self.fast_path.begin(self.train_dataset, self.data_collator, planned_epochs(self.args, size))
        try:
            if self.fast_path is not None:
                self._refill_prefix_cache(kwargs.get("resume_from_checkpoint", args[0] if args else None))
            return super().train(*args, **kwargs)
        finally:
            self.args.activation_checkpointing = wants_checkpointing
            if self.fast_path is not None:
                self.fast_path.end()
