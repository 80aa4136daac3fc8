"""Training methods as objects, one module each (``freeze``, ``full``, ``lora``), registered by their ``--method``
name. A new method is a ``TrainingMethod`` subclass in a new module here, added to ``METHODS`` (and its name to
``options.METHOD_NAMES``); the recipe needs no change."""

from __future__ import annotations

from .base import TrainingMethod
from .freeze import Freeze
from .full import Full
from .lora import Lora, LoraOptions, apply_lora, merge_lora
from .options import METHOD_NAMES, MethodArguments

METHODS: dict[str, TrainingMethod] = {method.name: method for method in (Freeze(), Full(), Lora())}


def get_method(name: str) -> TrainingMethod:
    """The registered method called ``name`` (``--method``)."""
    if name not in METHODS:
        raise ValueError(f"--method {name!r}: choose {', '.join(METHODS)}.")
    return METHODS[name]


__all__ = ["METHODS", "METHOD_NAMES", "Freeze", "Full", "Lora", "LoraOptions", "MethodArguments", "TrainingMethod",
           "apply_lora", "get_method", "merge_lora"]
