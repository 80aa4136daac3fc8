"""The options that pick and load the model, as a dataclass a recipe and the CLI fill."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..common import check_choice
from .offline import DEFAULT_MODEL

# "auto": float32 master weights (bf16 autocast on GPUs that have it); the others load the weights in that dtype.
MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Hub id or local directory of the pretrained chat model to freeze-tune."},
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "Hub revision (branch, tag or commit) of the model."}
    )
    model_dtype: str = field(
        default="auto",
        metadata={
            "help": "Weights dtype: auto (float32 master weights; bf16 mixed precision on GPUs that support it), "
            "float32, bfloat16 or float16."
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom modelling code from the Hub."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel, e.g. sdpa, eager or flash_attention_2."}
    )

    def __post_init__(self):
        check_choice("model_dtype", self.model_dtype, MODEL_DTYPES)
