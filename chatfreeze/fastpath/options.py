"""The fast path's options, declared once: ``FastPathArguments`` is collected into ``FreezeTrainingArguments``
(so they are flags of ``chatfreeze train``), and ``FastPathSettings`` is the part of them the fast path reads,
taken from any arguments object that has them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

PREFIX_CACHE_MODES = ("auto", "ram", "disk", "off")

PREFIX_CACHE_DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class FastPathArguments:
    fast_path: bool = field(
        default=True,
        metadata={
            "help": "Freeze-aware fast path: the frozen prefix runs without autograd and the LM head + loss only "
            "at labelled positions (same loss). false = the plain Trainer path, for comparison."
        },
    )
    prefix_cache: str = field(
        default="auto",
        metadata={
            "help": "Cache the frozen prefix's output per example and train later epochs from it: auto (when the "
            "run has more than one epoch and the prefix is deterministic; RAM, or a disk memmap if RAM is "
            "short), ram, disk or off."
        },
    )
    prefix_cache_dtype: str = field(
        default="auto",
        metadata={
            "help": "Storage dtype of the prefix cache: auto (the model's dtype: exact), float32, bfloat16 or "
            "float16 (half the memory; approximate for a float32 model)."
        },
    )
    prefix_cache_max_gb: float = field(
        default=4.0, metadata={"help": "Largest prefix cache allowed (GB); a bigger one is switched off."}
    )
    prefix_cache_dir: str | None = field(
        default=None, metadata={"help": "Directory for a disk prefix cache (default: the system temp dir)."}
    )

    def validate_fast_path(self) -> None:
        """Raise ``ValueError`` naming the flag when a prefix-cache option is not one the fast path accepts."""
        if self.prefix_cache not in PREFIX_CACHE_MODES:
            raise ValueError(f"--prefix_cache {self.prefix_cache!r}: choose {', '.join(PREFIX_CACHE_MODES)}.")
        if self.prefix_cache_dtype not in PREFIX_CACHE_DTYPES:
            raise ValueError(f"--prefix_cache_dtype {self.prefix_cache_dtype!r}: choose "
                             f"{', '.join(PREFIX_CACHE_DTYPES)}.")
        if not self.prefix_cache_max_gb > 0:
            raise ValueError(f"--prefix_cache_max_gb {self.prefix_cache_max_gb}: must be > 0 (use --prefix_cache "
                             "off to switch the cache off).")


@dataclass
class FastPathSettings(FastPathArguments):
    """The fast path's options as the fast path holds them (validated), read off any arguments object."""

    def __post_init__(self):
        self.validate_fast_path()

    @classmethod
    def from_args(cls, args) -> FastPathSettings:
        return cls(**{f.name: getattr(args, f.name) for f in fields(FastPathArguments) if hasattr(args, f.name)})
