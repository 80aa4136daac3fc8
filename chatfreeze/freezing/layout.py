"""Locate the parts of any causal LM: input embeddings (and learned position embeddings), the ordered
transformer blocks, the final norm, the LM head, and whether head and embeddings are tied.

Found from module structure and names, never from shapes or ``numel()`` (under DeepSpeed ZeRO-3 a partitioned
parameter reads shape ``[0]``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from ..common import text_config
from .errors import FreezeSpecError


@dataclass
class ModelLayout:
    """Qualified parameter-name prefixes of a causal LM's parts."""

    blocks_prefix: str  # e.g. "model.layers" (Llama), "transformer.h" (GPT-2), "gpt_neox.layers"
    num_layers: int
    embedding_prefixes: list[str]  # token embeddings first, then learned position embeddings if any
    head_prefix: str | None  # e.g. "lm_head"; None if the model has no separate output projection
    tied_embeddings: bool

    def block_of(self, name: str) -> int | None:
        match = re.match(re.escape(self.blocks_prefix) + r"\.(\d+)\.", name)
        return int(match.group(1)) if match else None

    def component_of(self, name: str) -> str:
        """``embeddings``, ``block``, ``head`` or ``norm`` (the final norm and any other top-level parameter)."""
        if self.block_of(name) is not None:
            return "block"
        if any(name.startswith(prefix + ".") for prefix in self.embedding_prefixes):
            return "embeddings"
        if self.head_prefix and name.startswith(self.head_prefix + "."):
            return "head"
        return "norm"


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(module): name for name, module in model.named_modules()}


def _configured_num_layers(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config is not None:
        config = text_config(config)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of transformer blocks: uniform, holds parameters, and as long as the config says."""
    expected = _configured_num_layers(model)
    candidates: list[tuple[str, nn.ModuleList]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        uniform = len({type(child) for child in module}) == 1
        has_params = any(True for _ in module[0].parameters())
        if uniform and has_params:
            candidates.append((name, module))
    exact = [c for c in candidates if expected is None or len(c[1]) == expected]
    # The blocks are the outermost qualifying list (a block may itself hold lists, e.g. MoE experts).
    exact = [c for c in exact if not any(c[0].startswith(o[0] + ".") for o in exact if o is not c)]
    if len(exact) == 1:
        return exact[0]
    found = ", ".join(f"{n} ({len(m)} x {type(m[0]).__name__})" for n, m in candidates) or "no ModuleList"
    raise FreezeSpecError(
        f"--model_name_or_path: cannot find the transformer blocks of {type(model).__name__} "
        f"(config says {expected} layers; found {found}). Use --extra_frozen_patterns to freeze by name."
    )


def locate(model: nn.Module) -> ModelLayout:
    """Find the input embeddings, the ordered blocks, the LM head and whether head and embeddings are tied."""
    names = _module_names(model)
    blocks_prefix, blocks = find_blocks(model)
    input_embeddings = model.get_input_embeddings()
    if input_embeddings is None or id(input_embeddings) not in names:
        raise FreezeSpecError(f"--model_name_or_path: {type(model).__name__} exposes no input embeddings.")
    embedding_prefixes = [names[id(input_embeddings)]]
    # Learned position embeddings (GPT-2's wpe, OPT's embed_positions) belong with the token embeddings:
    # both sit below block 0 and encode what the pretrained model knows about its input.
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and module is not input_embeddings and not name.startswith(blocks_prefix):
            embedding_prefixes.append(name)
    output_embeddings = model.get_output_embeddings()
    head_prefix = names.get(id(output_embeddings)) if output_embeddings is not None else None
    tied = bool(
        output_embeddings is not None
        and getattr(output_embeddings, "weight", None) is not None
        and output_embeddings.weight is input_embeddings.weight
    )
    return ModelLayout(blocks_prefix, len(blocks), embedding_prefixes, head_prefix, tied)
