"""The options of a freeze spec (``--num_frozen_layers`` and friends), as a dataclass a recipe and the CLI fill."""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def __post_init__(self):
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
