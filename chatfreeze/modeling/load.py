"""Load a resolved model and its tokenizer, in the dtype the machine trains well in."""

from __future__ import annotations

from pathlib import Path

import torch

from ..common import check_choice, first_line
from .errors import ModelResolutionError
from .options import MODEL_DTYPES


def select_dtype(requested: str = "auto") -> torch.dtype:
    """``auto``: float32 on CPU (this repo's CPUs run bf16 matmuls ~100x slower), bfloat16 on GPUs that have it."""
    check_choice("model_dtype", requested, MODEL_DTYPES)
    if requested != "auto":
        return getattr(torch, requested)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.float32


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        # Padding positions are masked out of attention and loss, so any existing token will do.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False,
               revision: str | None = None, **kwargs):
    """``AutoModelForCausalLM.from_pretrained(path)``; a trained-blocks-only directory (``modeling.delta``) is
    rebuilt on its pinned base, every frozen tensor checked first. A Hub id is resolved (downloaded) first."""
    from transformers import AutoModelForCausalLM

    from .delta import is_delta, load_delta

    if not Path(path).is_dir():
        from .resolve import resolve_model

        path = resolve_model(path, revision).path
    if is_delta(path):
        return load_delta(path, dtype, trust_remote_code, **kwargs)
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code, **kwargs)
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):
            raise ModelResolutionError(f"--model_name_or_path {path}: not a causal language model "
                                       f"({first_line(err)}); chatfreeze fine-tunes chat LMs.") from None
        raise
    except Exception as err:
        if type(err).__name__ == "SafetensorError" or "safetensors" in str(err).lower():
            raise ModelResolutionError(f"--model_name_or_path {path}: its weights cannot be read "
                                       f"({first_line(err)}); the file is truncated or damaged, copy or "
                                       "download it again.") from None
        raise


def check_tokenizer_fits(model, tokenizer, where: str) -> None:
    """A tokenizer with ids beyond the model's embedding rows comes from another model: refuse it."""
    rows = model.get_input_embeddings().weight.shape[0]
    if rows and len(tokenizer) > rows:
        raise ModelResolutionError(
            f"{where}: its tokenizer has {len(tokenizer):,} tokens but the model's embeddings only {rows:,} rows; "
            "the tokenizer belongs to another model (save the model's own tokenizer with it).")
