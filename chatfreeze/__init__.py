"""chatfreeze: freeze-tune a pretrained chat model into a customer-support assistant.

Keep the embeddings and the lower transformer blocks exactly as pretrained, fine-tune only the top blocks.
Names are imported lazily, so `python -m chatfreeze.chat` does not pay for Trainer/peft imports it never uses.
"""

from __future__ import annotations

from .common import lazy_exports

__version__ = "0.3.0"

_EXPORTS = {  # subpackage: the public names it exports
    "modeling": ("DEFAULT_MODEL", "ModelArguments", "ResolvedModel", "load_model", "resolve_model"),
    "data": ("DataArguments", "build_dataset", "load_dialogues"),
    "freezing": ("FreezeArguments", "FreezePlan", "FreezeSpecError", "apply_plan", "locate", "make_plan"),
    "training": ("FreezeTrainingArguments", "FreezeTrainer", "parse_args", "run_training"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
