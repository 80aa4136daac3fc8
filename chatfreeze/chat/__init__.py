"""Talking to a model: the conversation and its settings (``conversation``), the terminal (``terminal``).
``python -m chatfreeze.chat`` runs the terminal chat."""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "conversation": ("ChatSession", "ChatSettings", "load_chat_model"),
    "terminal": ("ChatApp", "Console"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
