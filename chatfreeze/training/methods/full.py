"""``--method full``: the full fine-tuning baseline, a plan that freezes nothing, through the same trainer."""

from __future__ import annotations

from ...freezing import FreezeArguments
from .base import TrainingMethod


class Full(TrainingMethod):
    name = "full"
    supports_kl_to_base = False
    card_how = ("fully fine-tuned from {base} with chatfreeze (its full fine-tuning baseline): nothing was frozen and "
                "all {total} parameters were trained on support dialogues.")

    def describe(self, freeze_args, method_args, model) -> str:
        return "--method full: nothing is frozen (the full fine-tuning baseline); freeze options ignored."

    def plan_spec(self, freeze_args, method_args) -> tuple[FreezeArguments, bool]:
        return FreezeArguments(num_frozen_layers="0", freeze_embeddings=False), True
