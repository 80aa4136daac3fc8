"""Fingerprints of frozen tensors: a hash of their bytes, taken before training and compared after, to prove that
no frozen tensor moved (bit for bit)."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def tensor_digest(tensor: torch.Tensor) -> str:
    """A 128-bit BLAKE2b hash of a tensor's bytes (dtype and values, not its device)."""
    data = tensor.detach().cpu().contiguous().view(torch.uint8).numpy()
    return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()


def _local_part(param: torch.Tensor) -> torch.Tensor:
    """What this process holds of ``param``: the whole tensor (single process, DDP), a ZeRO-3 partition
    (``ds_tensor``; the parameter itself reads shape ``[0]``), an FSDP2 DTensor's local shard, or, with FSDP1,
    the local shard its flat parameter or ``use_orig_params`` view holds."""
    local = getattr(param, "ds_tensor", None)
    if local is None:
        local = param.to_local() if hasattr(param, "to_local") else param
    return local


def frozen_fingerprints(model: nn.Module, local: bool = False) -> dict[str, str]:
    """``{name: digest}`` of every frozen parameter; with ``local``, of what this process holds of it (sharded
    training: FSDP, DeepSpeed ZeRO-3)."""
    return {name: tensor_digest(_local_part(param) if local else param)
            for name, param in model.named_parameters() if not param.requires_grad}


def local_frozen_fingerprints(model: nn.Module) -> dict[str, str]:
    return frozen_fingerprints(model, local=True)


def changed_frozen_tensors(model: nn.Module, before: dict[str, str], local: bool = False) -> list[str]:
    """Names of the frozen tensors whose digest is no longer the one in ``before``."""
    after = frozen_fingerprints(model, local=local)
    return [name for name, digest in before.items() if after.get(name) != digest]
