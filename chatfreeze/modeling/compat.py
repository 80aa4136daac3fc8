"""What chatfreeze knows about model architectures' internals in transformers, in one place (the fast path, the
shared-prefix generation and the evaluation's prefix reuse read it).

Written against transformers 5.x (checked with the version pinned by ``pyproject.toml``; tests in
``tests/test_compat.py`` fail loudly when a release changes what these rely on):

* ``LOGIT_PROCESSING``: what each verified architecture's ``*ForCausalLM.forward`` does to the LM head's output
  before ``ForCausalLMLoss`` (identity, Gemma-2's soft-capping, Cohere's scale, Granite's divisor). The fast path
  reproduces it at labelled positions only, so a model type not listed here runs the plain path.
* ``DynamicCache`` / ``DynamicLayer``: the shared-prefix passes reuse the model's own KV cache; stubbed frozen
  blocks get placeholder entries by setting a ``DynamicLayer``'s ``keys`` / ``values`` after
  ``lazy_initialization`` (fields, not public API).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _identity(logits: torch.Tensor, config) -> torch.Tensor:
    return logits


def _softcap(logits: torch.Tensor, config) -> torch.Tensor:
    cap = getattr(config, "final_logit_softcapping", None)
    return logits if cap is None else torch.tanh(logits / cap) * cap


def _times_logit_scale(logits: torch.Tensor, config) -> torch.Tensor:
    return logits * config.logit_scale


def _over_logits_scaling(logits: torch.Tensor, config) -> torch.Tensor:
    return logits / config.logits_scaling


# Only models whose forward is "hidden = decoder(...); logits = post(lm_head(hidden)); loss = ForCausalLMLoss"
# belong here: MoE models (router aux loss added to the loss) and anything unread fall back to the plain path.
LOGIT_PROCESSING: dict[str, Callable] = {
    **dict.fromkeys(
        ("llama", "mistral", "qwen2", "qwen3", "gemma", "phi", "phi3", "gpt2", "gpt_neox", "opt", "smollm3",
         "olmo", "olmo2", "stablelm", "starcoder2"),
        _identity,
    ),
    "gemma2": _softcap,
    "gemma3_text": _softcap,
    "cohere": _times_logit_scale,
    "granite": _over_logits_scaling,
}


def unsupported_cache(cache, num_layers: int) -> str | None:
    """Why ``cache`` cannot carry shared leading tokens (not a plain per-layer full-attention cache), or None."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    layers = getattr(cache, "layers", [])
    if type(cache) is not DynamicCache or len(layers) < num_layers:
        return f"the model keeps a {type(cache).__name__} cache, not a plain per-layer one"
    if any(type(layer) is not DynamicLayer for layer in layers):
        return "the model has sliding-window or other non-full-attention layers"
    return None


def stub_cache_layers(cache, num_layers: int, length: int, like: torch.Tensor) -> None:
    """Give the first ``num_layers`` layers of ``cache`` placeholder entries ``length`` tokens long.

    The stubbed frozen blocks never attend; their cache entries only have to report the shared length, from
    which the model derives position ids and the attention mask (``DynamicLayer.get_seq_length`` reads
    ``keys.shape[-2]``).
    """
    placeholder = like.new_empty((1, 1, length, 1))
    for layer in cache.layers[:num_layers]:
        layer.lazy_initialization(placeholder, placeholder)
        layer.keys = layer.values = placeholder
