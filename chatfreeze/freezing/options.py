"""The options of a freeze spec (``--num_frozen_layers`` and friends), as a dataclass a recipe and the CLI fill."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..common import check_choice

METHODS = ("freeze", "full", "lora")


@dataclass
class FreezeArguments:
    num_frozen_layers: str = field(
        default="0.8",
        metadata={
            "help": "Transformer blocks to freeze, counted from the bottom. N freezes blocks 0..N-1; -N trains "
            "only the top N blocks; a fraction 0<f<1 freezes floor(f * num_layers) blocks; 0 freezes none."
        },
    )
    freeze_embeddings: bool = field(
        default=True, metadata={"help": "Freeze the input embeddings (and a head tied to them)."}
    )
    freeze_final_norm: bool = field(
        default=False, metadata={"help": "Also freeze the final norm above the last block."}
    )
    train_lm_head: bool = field(
        default=False,
        metadata={
            "help": "Train the LM head. If it is tied to frozen embeddings it is untied (copied) first and the "
            "saved config says tie_word_embeddings=false."
        },
    )
    extra_frozen_patterns: list[str] = field(
        default_factory=list,
        metadata={"help": "Anchored regexes (re.fullmatch on parameter names) of further parameters to freeze."},
    )
    extra_trainable_patterns: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Anchored regexes of parameters to train even inside frozen blocks, e.g. "
            "'model\\.layers\\.\\d+\\.input_layernorm\\.weight'. Applied after extra_frozen_patterns."
        },
    )
    method: str = field(
        default="freeze",
        metadata={"help": "freeze (train what the freeze spec leaves trainable), full (the full fine-tuning "
                  "baseline: nothing frozen, the freeze options ignored) or lora (peft LoRA adapters on the top "
                  "--lora_layers blocks, merged into the saved model), through the same recipe and evaluation.",
                  "choices": list(METHODS)},
    )
    lora_r: int = field(default=16, metadata={"help": "--method lora: the adapters' rank."})
    lora_alpha: int = field(default=32, metadata={"help": "--method lora: the adapters' scaling numerator."})
    lora_layers: int = field(
        default=0, metadata={"help": "--method lora: adapters on the top N blocks only (the blocks below stay "
                             "bit-identical, as in a freeze); 0 puts them on every block."})

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        if self.lora_r < 1 or self.lora_alpha < 1 or self.lora_layers < 0:
            raise ValueError(f"--lora_r {self.lora_r} / --lora_alpha {self.lora_alpha} / --lora_layers "
                             f"{self.lora_layers}: rank and alpha must be >= 1, layers >= 0 (0 = every block).")
        self.num_frozen_layers = str(self.num_frozen_layers)
        parse_layer_count(self.num_frozen_layers)  # validates the form; the range is checked against the model


def parse_layer_count(value: str) -> int | float:
    """``"24"`` -> 24, ``"-6"`` -> -6, ``"0.8"`` -> 0.8; anything else is an error naming the option."""
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is None or not 0.0 < number < 1.0:
        raise ValueError(
            f"--num_frozen_layers {value!r}: give a whole number of blocks (negative = train only the top |N|) "
            "or a fraction strictly between 0 and 1."
        )
    return number
