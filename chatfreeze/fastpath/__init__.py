"""The freeze-aware training fast path (``fast_path.FastPath``): frozen prefix without autograd (``runner``),
shared leading tokens once (``shared_prefix``), loss at labelled positions (``loss``), the prefix cache
(``cache``) and the decisions (``policy``); what it relies on in transformers' internals is ``modeling.compat``."""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "fast_path": ("FastPath",),
    "runner": ("PrefixRunner", "replaced_forwards"),
    "shared_prefix": ("common_prefix_length",),
    "loss": ("labelled_positions_loss", "shifted_labels"),
    "cache": ("PrefixCache",),
    "policy": ("prefix_randomness", "planned_epochs"),
    "batch": ("INDEX_COLUMN", "KL_WEIGHT_COLUMN", "IndexedCollator", "with_example_index", "right_padded_layout"),
    "options": ("PREFIX_CACHE_MODES", "PREFIX_CACHE_DTYPES", "FastPathSettings"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
