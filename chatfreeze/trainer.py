"""``FreezeTrainer``: a ``transformers.Trainer`` that trains only what a ``FreezePlan`` leaves trainable."""

from __future__ import annotations

import logging

from torch import nn
from transformers import Trainer, TrainerCallback

from .freezing import FreezePlan, apply_plan, changed_frozen_tensors, frozen_fingerprints

logger = logging.getLogger(__name__)


class FrozenWeightsGuard(TrainerCallback):
    """Proves, at the end of training, that no frozen tensor moved (bit for bit)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.fingerprints = frozen_fingerprints(model)

    def on_train_end(self, args, state, control, **kwargs):
        changed = changed_frozen_tensors(self.model, self.fingerprints)
        if changed:
            raise RuntimeError(
                f"{len(changed)} frozen tensor(s) changed during training, first {changed[0]!r}: something "
                "outside the optimizer wrote to them (a custom callback, weight decay on a re-created "
                "optimizer, or a gradual-unfreezing hook that did not rebuild the plan)."
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


class FreezeTrainer(Trainer):
    """A ``Trainer`` that applies a ``FreezePlan`` before the optimizer (or any DDP/FSDP wrapper) exists.

    The optimizer sees only trainable parameters (``Trainer.create_optimizer`` keeps ``requires_grad``
    ones), DDP is told that no parameter goes unused, and at the end every frozen tensor is checked to be
    bit-identical to the pretrained one.
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

    def train(self, *args, **kwargs):
        wants_checkpointing = bool(self.args.activation_checkpointing)
        if wants_checkpointing:
            enable_trainable_checkpointing(self.model, self.freeze_plan, self.args.activation_checkpointing_kwargs)
            # Trainer.train would re-enable it on every block and hook the input embeddings to require grad.
            self.args.activation_checkpointing = False
        try:
            return super().train(*args, **kwargs)
        finally:
            self.args.activation_checkpointing = wants_checkpointing
