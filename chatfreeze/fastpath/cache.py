"""The frozen-prefix activation cache: the boundary states of each example are kept (RAM or a disk memmap,
optionally half precision) during the first epoch; later epochs feed the trainable blocks from the cache and never
run the prefix."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import numpy as np
import torch

from .options import PREFIX_CACHE_DTYPES, FastPathSettings

logger = logging.getLogger(__name__)


# ``auto`` keeps the cache in RAM while it needs at most this share of the memory available now.
RAM_SHARE_FOR_CACHE = 0.5


def _numpy_storage_dtype(dtype: torch.dtype):
    # numpy has no bfloat16: store its bits as int16 and view them as bfloat16 in torch.
    return {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.int16}[dtype]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


class PrefixCache:
    """Boundary states of every example, unpadded, in one flat ``[total_tokens, hidden]`` array.

    Example ``i`` owns rows ``offsets[i]:offsets[i+1]``; its token ids are kept beside the states (4 bytes a
    token against 2304 for SmolLM2's fp32 states) and checked on every read, so a changed example is never
    served stale states.
    """

    def __init__(self, lengths: list[int], hidden_size: int, dtype: torch.dtype, storage: str,
                 directory: str | None = None):
        self.lengths = torch.tensor(lengths, dtype=torch.long)
        self.offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
        self.offsets[1:] = torch.cumsum(self.lengths, 0)
        total = int(self.offsets[-1])
        self.dtype, self.storage, self.hidden_size = dtype, storage, hidden_size
        self.filled = torch.zeros(len(lengths), dtype=torch.bool)
        self.directory = None
        if storage == "ram":
            # torch.empty commits no memory until rows are written: RSS grows as epoch 1 fills the cache.
            self.states = torch.empty((total, hidden_size), dtype=dtype)
            self.token_ids = torch.empty(total, dtype=torch.int32)
        else:
            self.directory = tempfile.mkdtemp(prefix="chatfreeze-prefix-cache-", dir=directory)
            states = np.memmap(os.path.join(self.directory, "states.bin"), mode="w+",
                               dtype=_numpy_storage_dtype(dtype), shape=(max(total, 1), hidden_size))
            ids = np.memmap(os.path.join(self.directory, "token_ids.bin"), mode="w+", dtype=np.int32,
                            shape=(max(total, 1),))
            self.states = torch.from_numpy(states).view(dtype)[:total]
            self.token_ids = torch.from_numpy(ids)[:total]
        self.hits = self.misses = 0

    @staticmethod
    def estimate_bytes(num_tokens: int, hidden_size: int, dtype: torch.dtype) -> int:
        return num_tokens * (hidden_size * torch.empty((), dtype=dtype).element_size() + 4)

    @property
    def nbytes(self) -> int:
        return self.estimate_bytes(int(self.offsets[-1]), self.hidden_size, self.dtype)

    def lookup(self, indices: torch.Tensor, rows: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """Cached states of each example (in the cache dtype), or None unless all are cached and unchanged.

        Raises ``ValueError`` if an example's tokens differ from those it was cached with.
        """
        if not bool(self.filled[indices].all()):
            return None
        states = []
        for index, ids in zip(indices.tolist(), rows, strict=True):
            start, end = int(self.offsets[index]), int(self.offsets[index + 1])
            if ids.numel() != end - start or not torch.equal(self.token_ids[start:end], ids.to(torch.int32)):
                raise ValueError(f"example {index} has other tokens than when it was cached")
            states.append(self.states[start:end])
        return states

    def store(self, indices: torch.Tensor, rows: list[torch.Tensor], states: list[torch.Tensor]) -> None:
        """Keep each example's states; raises ``ValueError`` if one is not as long as the dataset said."""
        for index, ids, row_states in zip(indices.tolist(), rows, states, strict=True):
            if self.filled[index]:
                continue
            start, end = int(self.offsets[index]), int(self.offsets[index + 1])
            if ids.numel() != end - start:
                raise ValueError(
                    f"example {index} reached the model with {ids.numel()} tokens but has {end - start} in the "
                    "dataset (the collator truncates or adds tokens)"
                )
            self.states[start:end] = row_states.to(device="cpu", dtype=self.dtype)
            self.token_ids[start:end] = ids.to(device="cpu", dtype=torch.int32)
            self.filled[index] = True

    def release(self) -> None:
        self.states = self.token_ids = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def allocate_cache(settings: FastPathSettings, lengths: list[int], hidden_size: int, model_dtype: torch.dtype,
                   prefix_label: str) -> PrefixCache | None:
    """A cache for examples of these lengths, in RAM or on disk as ``settings`` and free memory allow; None (with
    a warning) when it would be larger than ``--prefix_cache_max_gb``. Its size is logged up front."""
    dtype = PREFIX_CACHE_DTYPES[settings.prefix_cache_dtype] or model_dtype
    size = PrefixCache.estimate_bytes(sum(lengths), hidden_size, dtype)
    gb = size / 1e9
    if size > settings.prefix_cache_max_gb * 1e9:
        logger.warning("Prefix cache off: it would need %.2f GB (%d tokens x %d x %s) > --prefix_cache_max_gb "
                       "%.2f.", gb, sum(lengths), hidden_size, _dtype_name(dtype), settings.prefix_cache_max_gb)
        return None
    storage = settings.prefix_cache
    if storage == "auto":
        available = available_memory_bytes()
        storage = "ram" if available is None or size <= RAM_SHARE_FOR_CACHE * available else "disk"
    exact = "exact" if dtype == model_dtype or dtype == torch.float32 else \
        f"approximate: {_dtype_name(dtype)} states for a {_dtype_name(model_dtype)} model"
    cache = PrefixCache(lengths, hidden_size, dtype, storage, settings.prefix_cache_dir)
    where = "RAM" if storage == "ram" else f"a disk memmap in {cache.directory}"
    logger.info(
        "Prefix cache: %d examples, %d tokens x %d x %s = %.2f GB in %s (cap %.2f GB; %s). The first epoch "
        "fills it; later epochs skip %s.", len(lengths), sum(lengths), hidden_size, _dtype_name(dtype), gb,
        where, settings.prefix_cache_max_gb, exact, prefix_label,
    )
    return cache
