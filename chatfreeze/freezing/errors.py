"""The error a freeze spec raises when it cannot be applied to a model."""

from __future__ import annotations


class FreezeSpecError(ValueError):
    """A freeze spec that cannot be applied to this model; the message names the option."""
