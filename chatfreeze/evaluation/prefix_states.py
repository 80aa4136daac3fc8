"""Frozen-prefix states of the evaluation's fixed inputs, computed once and reused for the tuned model.

The embeddings and frozen blocks are bit-identical before and after training (the trainer's guard proves it), so
the hidden state at the cut of every held-out dialogue, and of every base reply self-agreement scores, is the same
for the base and the tuned model. It is computed once, when the base is measured, and the tuned model runs only
its trainable top on it: the part of a teacher-forced measurement that freezing makes free. (Generation cannot
reuse it: the tuned model's replies are new tokens.) Only for a model measured against itself across training,
with a fast-path architecture (``modeling.compat.LOGIT_PROCESSING``).
"""

from __future__ import annotations

import torch

from ..common import text_config
from ..fastpath.loss import labelled_positions_loss, shifted_labels
from ..fastpath.runner import PrefixRunner
from ..modeling.compat import LOGIT_PROCESSING


class FrozenPrefixStates:
    def __init__(self, model, blocks_prefix: str, num_prefix_blocks: int):
        self.model = model
        self.runner = PrefixRunner(model, model.get_submodule(blocks_prefix), num_prefix_blocks)
        self.states: dict[tuple[str, int], torch.Tensor] = {}
        config = text_config(model.config)
        process = LOGIT_PROCESSING[model.config.model_type]
        self.process = lambda logits: process(logits, config)

    def save(self, path) -> None:
        """Keep the states beside a cached base measurement (they are valid for the same base and inputs)."""
        torch.save({"num_prefix_blocks": self.runner.num_prefix_blocks,
                    "states": {f"{name}:{start}": value.cpu() for (name, start), value in self.states.items()}}, path)

    def load(self, path) -> bool:
        """Read states saved for the same cut; returns whether there were any."""
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError):
            return False
        if saved.get("num_prefix_blocks") != self.runner.num_prefix_blocks:
            return False
        device = next(self.model.parameters()).device
        for key, value in saved["states"].items():
            name, start = key.rsplit(":", 1)
            self.states[(name, int(start))] = value.to(device)
        return bool(self.states)

    @staticmethod
    def supported(model, num_prefix_blocks: int) -> bool:
        return num_prefix_blocks > 0 and getattr(model.config, "model_type", None) in LOGIT_PROCESSING

    @torch.inference_mode()
    def nll(self, model, key: tuple[str, int], batch: dict[str, torch.Tensor]) -> tuple[float, int]:
        """Sum of next-token NLL at the labelled positions of ``batch`` (the batch ``key`` names) and how many,
        from the stored boundary state (computed and stored the first time)."""
        if model is not self.model:
            raise ValueError("frozen-prefix states belong to the model they were computed for")
        device = next(model.parameters()).device
        batch = {name: value.to(device) for name, value in batch.items()}
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch.get("attention_mask"), "use_cache": False}
        if key not in self.states:
            self.states[key] = self.runner.prefix(inputs)
        hidden = self.runner.top_pass(model, inputs, self.states[key])[0]
        shift = shifted_labels(batch["labels"])
        total = labelled_positions_loss(hidden, shift, self.runner.head, self.process, num_items_in_batch=1)
        return float(total), int((shift != -100).sum())
