"""The one error type of model resolution, shared by the resolver and the offline fallback."""

from __future__ import annotations

from ..common import UserError


class ModelResolutionError(UserError, RuntimeError):
    """The model could not be found locally, on the Hub, or through a fallback."""
