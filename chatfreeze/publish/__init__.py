"""Publishing a run: the model card (``card``) and the Hub push (``hub``)."""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "card": ("build_model_card", "load_run"),
    "hub": ("push_output_dir", "dry_run", "PushError"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
