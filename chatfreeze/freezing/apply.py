"""Apply a ``FreezePlan`` to a model: ``requires_grad`` by name, untying a tied head that should train."""

from __future__ import annotations

from torch import nn

from ..common import text_config
from .errors import FreezeSpecError
from .plan import FreezePlan


def untie_lm_head(model: nn.Module) -> None:
    """Give the LM head its own copy of the embedding matrix and record in the config that they are untied."""
    head = model.get_output_embeddings()
    if head.weight.numel() == 0 or hasattr(head.weight, "ds_tensor"):
        # DeepSpeed ZeRO-3 partitions parameters at load time: this process holds a [0]-shaped placeholder,
        # and a clone of it would be an empty head that no partitioner knows about.
        raise FreezeSpecError(
            "--train_lm_head: the tied LM head is partitioned by DeepSpeed ZeRO-3 (shape "
            f"{list(head.weight.shape)} here), so it cannot be untied in place; use ZeRO-2 or FSDP, or train "
            "without --train_lm_head.")
    head.weight = nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    language_config = text_config(model.config)
    if language_config is not model.config:
        language_config.tie_word_embeddings = False


def apply_plan(model: nn.Module, plan: FreezePlan) -> None:
    """Set ``requires_grad`` from the plan (by name). Call before the optimizer and any DDP/FSDP wrapper exist."""
    if plan.untie_lm_head and model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        untie_lm_head(model)
    trainable = set(plan.trainable_parameter_names)
    seen = set()
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
        seen.add(name)
    missing = trainable - seen
    if missing:
        raise FreezeSpecError(
            f"freeze plan does not fit this model: no parameter named {sorted(missing)[0]!r} "
            f"(plan made for {plan.model_class})."
        )
