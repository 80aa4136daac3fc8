"""KL to the base that costs only the top: ``loss = CE + β · KL(p_base ‖ p_tuned)`` at the labelled positions.

With the embeddings and the lowest blocks frozen, the base model's hidden state at the cut *is* the boundary
state the fast path already computes (or reads from the prefix cache). So the base's output distribution needs
only a frozen copy of what trains (the top blocks, the final norm, an untied head: 21 M parameters for the
default plan) run on the same boundary states without autograd: no second full model, no second prefix pass.

This module builds that copy (``BaseTop``); the fast path runs it (``FastPath.add_kl_to_base``) and adds the term
(``fastpath.loss.kl_from_base``).
"""

from __future__ import annotations

import copy

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


def check_copies_cover(model: nn.Module, trainable_names: list[str], modules: list[nn.Module]) -> None:
    """Every trainable tensor must sit in a module that is copied whole, and the head must not share a trained
    tensor without being copied: otherwise the "base" pass would run some tuned weights and the KL would pull the
    model toward itself."""
    params = dict(model.named_parameters())
    covered = {id(p) for module in modules for p in module.parameters()}
    loose = [name for name in trainable_names if name in params and id(params[name]) not in covered]
    if loose:
        raise ValueError(f"--kl_to_base: the trainable tensor {loose[0]} shares its module with frozen tensors, so "
                         "the base's copy of what trains would miss it; train whole modules (e.g. whole blocks) "
                         "or drop --kl_to_base.")
    head = model.get_output_embeddings()
    trainable = {id(params[name]) for name in trainable_names if name in params}
    if head is not None and head not in modules and any(id(p) in trainable for p in head.parameters()):
        raise ValueError("--kl_to_base: the LM head is tied to trained embeddings, so the base's head would be the "
                         "tuned one; freeze the embeddings (--freeze_embeddings true) or untie the head "
                         "(--train_lm_head true).")


class BaseTop:
    """Frozen copies of the modules that train, taken before training (the base's weights), and the
    ``forward`` replacements that run the base's top instead of the tuned one."""

    def __init__(self, model: nn.Module, trainable_names: list[str]):
        modules = trainable_modules(model, trainable_names)
        check_copies_cover(model, trainable_names, modules)
        # eval(): the base's output is a fixed target, without dropout whatever mode the model is in.
        self.copies = {module: copy.deepcopy(module).requires_grad_(False).eval() for module in modules}
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
