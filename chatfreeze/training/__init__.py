"""Training: the collected options (``arguments``), ``FreezeTrainer`` (``trainer``), the recipe's steps
(``recipe``), process layout (``distributed``) and private-internals workarounds (``compat``)."""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "arguments": ("FreezeTrainingArguments", "parse_args", "make_parser", "DEFAULT_RECIPE", "QUICK_RECIPE"),
    "trainer": ("FreezeTrainer", "FrozenWeightsGuard"),
    "recipe": ("RecipeRun", "run_training"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
