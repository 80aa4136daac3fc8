"""Publishing a run: the finished run as it is read (``run``), its model card (``card``), the folder that is
uploaded (``staging``), the Hub push (``hub``) and the Space that chats with the pushed model (``space``)."""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "card": ("build_model_card",),
    "run": ("load_run",),
    "staging": ("PushError",),
    "hub": ("push_output_dir", "dry_run"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
