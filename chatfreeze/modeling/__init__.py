"""Find and load the model: a Hub id, a local directory, or the offline default (``offline``)."""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "offline": ("DEFAULT_MODEL",),
    "resolve": ("ResolvedModel", "resolve_model", "hub_offline", "hub_unreachable"),
    "errors": ("ModelResolutionError",),
    "options": ("ModelArguments",),
    "load": ("check_tokenizer_fits", "load_model", "load_tokenizer", "select_dtype"),
    "compat": ("LOGIT_PROCESSING",),
    "delta": ("DeltaError", "is_delta", "load_delta", "write_delta"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
