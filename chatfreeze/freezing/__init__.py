"""What is frozen: locate a causal LM's parts (``layout``) -> decide (``planner`` -> ``FreezePlan``) -> apply
(``apply``) -> prove nothing frozen moved (``fingerprint``)."""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "options": ("FreezeArguments", "parse_layer_count"),
    "errors": ("FreezeSpecError",),
    "layout": ("ModelLayout", "locate", "find_blocks"),
    "plan": ("FreezePlan", "PlanRow"),
    "planner": ("make_plan", "resolve_num_frozen"),
    "apply": ("apply_plan", "untie_lm_head"),
    "fingerprint": ("frozen_fingerprints", "local_frozen_fingerprints", "changed_frozen_tensors"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
