"""KL to the base that costs only the top: ``loss = CE + β · KL(p_base ‖ p_tuned)`` at the labelled positions.

With the embeddings and the lowest blocks frozen, the base model's hidden state at the cut *is* the boundary
state the fast path already computes (or reads from the prefix cache). So the base's output distribution needs
only a frozen copy of what trains (the top blocks, the final norm, an untied head: 21 M parameters for the
default plan) run on the same boundary states without autograd: no second full model, no second prefix pass.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def trainable_modules(model: nn.Module, trainable_names: list[str]) -> list[nn.Module]:
    """The smallest modules that hold the trainable parameters: each trainable block, the final norm, an untied
    head (every module whose own parameters are all trainable, outermost first)."""
    trainable = set(trainable_names)
    chosen: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        own = [f"{name}.{p}" if name else p for p, _ in module.named_parameters()]
        if own and all(n in trainable for n in own) and not any(name.startswith(c + ".") for c, _ in chosen):
            chosen.append((name, module))
    return [module for _, module in chosen if module is not model]


class BaseTop:
    """Frozen copies of the modules that train, taken before training (the base's weights), and the
    ``forward`` replacements that run the base's top instead of the tuned one."""

    def __init__(self, model: nn.Module, trainable_names: list[str]):
        self.copies = {module: copy.deepcopy(module).requires_grad_(False) for module in
                       trainable_modules(model, trainable_names)}
        head = model.get_output_embeddings()
        self.head = self.copies.get(head, head)  # a frozen (tied) head is the base's already

    @property
    def parameters(self) -> int:
        return sum(p.numel() for module in self.copies.values() for p in module.parameters())

    def to(self, device) -> BaseTop:
        for module in self.copies.values():
            module.to(device)
        return self

    def replacements(self) -> dict[nn.Module, object]:
        return {module: base.forward for module, base in self.copies.items() if module is not None}


def kl_from_base(logits: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """``sum over positions of KL(p_base ‖ p)``: the base's distribution is the target, computed in float32."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_base = F.log_softmax(base_logits.float(), dim=-1)
    return (log_base.exp() * (log_base - log_p)).sum()
