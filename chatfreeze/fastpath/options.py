"""The fast path's options (set through ``FreezeTrainingArguments``) and their validation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

PREFIX_CACHE_MODES = ("auto", "ram", "disk", "off")

PREFIX_CACHE_DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class FastPathSettings:
    prefix_cache: str = "auto"
    prefix_cache_dtype: str = "auto"
    prefix_cache_max_gb: float = 4.0
    prefix_cache_dir: str | None = None

    @classmethod
    def from_args(cls, args) -> FastPathSettings:
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__ if hasattr(args, name)})


def validate_fast_path_options(prefix_cache: str, prefix_cache_dtype: str, prefix_cache_max_gb: float) -> None:
    """Raise ``ValueError`` naming the flag when a prefix-cache option is not one the fast path accepts."""
    if prefix_cache not in PREFIX_CACHE_MODES:
        raise ValueError(f"--prefix_cache {prefix_cache!r}: choose {', '.join(PREFIX_CACHE_MODES)}.")
    if prefix_cache_dtype not in PREFIX_CACHE_DTYPES:
        raise ValueError(f"--prefix_cache_dtype {prefix_cache_dtype!r}: choose {', '.join(PREFIX_CACHE_DTYPES)}.")
    if not prefix_cache_max_gb > 0:
        raise ValueError(f"--prefix_cache_max_gb {prefix_cache_max_gb}: must be > 0 (use --prefix_cache off to "
                         "switch the cache off).")
