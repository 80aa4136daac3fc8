"""Dialogue data: read (``readers``, ``converters``, ``sources``) -> validate (``schema``) -> render and label
assistant turns (``labels``) -> tokenized dataset and collator (``dataset``)."""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "schema": ("ROLES", "IGNORE_INDEX", "DataError", "Dialogue", "validate_dialogue", "opening_prompts"),
    "options": ("DataArguments", "DATA_FORMATS", "OVERLONG_POLICIES"),
    "converters": ("convert_bitext_csv", "convert_sgd", "convert_abcd"),
    "sources": ("load_dialogues", "load_dialogues_from_args"),
    "labels": ("tokenize_dialogue",),
    "dataset": ("DataReport", "build_dataset", "DialogueCollator"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
