"""The registered training methods, by their ``--method`` name: the one list (``options.METHOD_NAMES``, the
``--method`` choices, is read from it)."""

from __future__ import annotations

from .base import TrainingMethod
from .freeze import Freeze
from .full import Full
from .lora import Lora

METHODS: dict[str, TrainingMethod] = {method.name: method for method in (Freeze(), Full(), Lora())}


def get_method(name: str) -> TrainingMethod:
    """The registered method called ``name`` (``--method``)."""
    if name not in METHODS:
        raise ValueError(f"--method {name!r}: choose {', '.join(METHODS)}.")
    return METHODS[name]
