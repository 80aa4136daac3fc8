"""chatfreeze: freeze-tune a pretrained chat model into a customer-support assistant.

Keep the embeddings and the lower transformer blocks exactly as pretrained, fine-tune only the top blocks.
Names are imported lazily, so `python -m chatfreeze.chat` does not pay for Trainer/peft imports it never uses.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "DEFAULT_MODEL": "modeling",
    "ResolvedModel": "modeling",
    "resolve_model": "modeling",
    "DataArguments": "arguments",
    "FreezeArguments": "arguments",
    "FreezeTrainingArguments": "arguments",
    "ModelArguments": "arguments",
    "parse_args": "arguments",
    "FreezePlan": "freezing",
    "FreezeSpecError": "freezing",
    "apply_plan": "freezing",
    "locate": "freezing",
    "make_plan": "freezing",
    "FreezeTrainer": "trainer",
    "run_training": "training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'chatfreeze' has no attribute {name!r}")
