"""Training methods as objects, one module each (``freeze``, ``full``, ``lora``), registered by their ``--method``
name. A new method is a ``TrainingMethod`` subclass in a new module here, added to ``registry.METHODS`` (the
``--method`` choices follow); the recipe needs no change."""

from __future__ import annotations

from .base import TrainingMethod
from .freeze import Freeze
from .full import Full
from .lora import Lora, LoraOptions, apply_lora, merge_lora
from .options import METHOD_NAMES, MethodArguments
from .registry import METHODS, get_method

__all__ = ["METHODS", "METHOD_NAMES", "Freeze", "Full", "Lora", "LoraOptions", "MethodArguments", "TrainingMethod",
           "apply_lora", "get_method", "merge_lora"]
