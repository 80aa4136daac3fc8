"""The options that choose the training method (collected into ``FreezeTrainingArguments``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .registry import METHODS

METHOD_NAMES = tuple(METHODS)  # the registry's keys, in the order help lists them


@dataclass
class MethodArguments:
    method: str = field(
        default="freeze",
        metadata={"help": "freeze (train what the freeze spec leaves trainable), full (the full fine-tuning "
                  "baseline: nothing frozen, the freeze options ignored) or lora (peft LoRA adapters on the top "
                  "--lora_layers blocks, merged into the saved model), through the same recipe and evaluation.",
                  "choices": list(METHOD_NAMES)},
    )
    lora_r: int = field(default=16, metadata={"help": "--method lora: the adapters' rank."})
    lora_alpha: int = field(default=32, metadata={"help": "--method lora: the adapters' scaling numerator."})
    lora_layers: int = field(
        default=0, metadata={"help": "--method lora: adapters on the top N blocks only (the blocks below stay "
                             "bit-identical, as in a freeze); 0 puts them on every block."})

    def validate_method(self) -> None:
        from ...common import check_choice

        check_choice("method", self.method, METHOD_NAMES)
        if self.lora_r < 1 or self.lora_alpha < 1 or self.lora_layers < 0:
            raise ValueError(f"--lora_r {self.lora_r} / --lora_alpha {self.lora_alpha} / --lora_layers "
                             f"{self.lora_layers}: rank and alpha must be >= 1, layers >= 0 (0 = every block).")
