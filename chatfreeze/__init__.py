"""chatfreeze: freeze-tune a pretrained chat model into a customer-support assistant.

Keep the embeddings and the lower transformer blocks exactly as pretrained, fine-tune only the top blocks.
"""

__version__ = "0.1.0"

from .arguments import DataArguments, FreezeArguments, FreezeTrainingArguments, ModelArguments, parse_args  # noqa: E402
from .freezing import FreezePlan, FreezeSpecError, apply_plan, locate, make_plan  # noqa: E402
from .modeling import DEFAULT_MODEL, ResolvedModel, resolve_model  # noqa: E402

__all__ = [
    "DEFAULT_MODEL",
    "DataArguments",
    "FreezeArguments",
    "FreezePlan",
    "FreezeSpecError",
    "FreezeTrainingArguments",
    "ModelArguments",
    "ResolvedModel",
    "apply_plan",
    "locate",
    "make_plan",
    "parse_args",
    "resolve_model",
]
