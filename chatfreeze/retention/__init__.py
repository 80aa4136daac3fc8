"""Methods that keep the old skills while the top blocks learn the new task: self-distillation replay of chat
replies (``replay``) and of plain text (``text_replay``), KL to the base (``kl_to_base``), interpolation of the
trained blocks toward the base (``interpolate``) and the choice of how far (``alpha_selection``)."""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "options": ("RetentionArguments",),
    "replay": ("replay_dataset", "replay_prompts"),
    "text_replay": ("text_replay_dataset",),
    "interpolate": ("interpolate_state", "interpolate_run"),
    "alpha_selection": ("select_alpha", "AlphaSelection"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
