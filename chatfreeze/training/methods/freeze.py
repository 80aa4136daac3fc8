"""``--method freeze`` (the default): train what the freeze spec leaves trainable, with ``FreezeTrainer``."""

from __future__ import annotations

from .base import TrainingMethod


class Freeze(TrainingMethod):
    name = "freeze"
