"""A cache of the base model's measurements, so a second run on the same base does not recompute them.

The key covers everything a measurement depends on: a fingerprint of the model's weights (every parameter's
bytes), the inputs (probe files, tokenized held-out data and general text) and the settings (decoding, windows,
system prompts). Entries are JSON files under ``cache_root()/measurements`` (``CHATFREEZE_CACHE`` moves the whole
cache, ``CHATFREEZE_MEASUREMENT_CACHE`` only this part).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from torch import nn

from ..common import cache_root
from ..freezing.fingerprint import tensor_digest

logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when what a measurement holds changes (2: the general text's dev split)


def weights_fingerprint(model: nn.Module) -> str:
    """One hash of every parameter's name, dtype, shape and bytes (tied weights counted once)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, param in base_named_parameters(model):
        digest.update(f"{name}:{param.dtype}:{tuple(param.shape)}:{tensor_digest(param)};".encode())
    return digest.hexdigest()


def base_named_parameters(model: nn.Module):
    """``model.named_parameters()``; for a peft model, those of the base it wraps, by their base names and without
    the adapters' own (a peft model with its adapters off computes what its base does)."""
    if not (hasattr(model, "get_base_model") and hasattr(model, "disable_adapter")):
        yield from model.named_parameters()
        return
    base = model.get_base_model()
    adapters = adapter_parameter_names(base)
    for name, param in base.named_parameters():
        if name not in adapters:
            yield name.replace(".base_layer.", "."), param


def adapter_parameter_names(model: nn.Module) -> set[str]:
    """The parameters peft's tuner layers declare as their adapters' (``adapter_layer_names``: LoRA's A and B,
    IA3's vectors, ...), whatever the method: read from peft, not guessed from a method's name."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        for attr in getattr(module, "adapter_layer_names", ()):
            holder = getattr(module, attr, None)
            if isinstance(holder, nn.Module):
                names |= {f"{module_name}.{attr}.{name}" for name, _ in holder.named_parameters()}
    return names


def inputs_fingerprint(*parts) -> str:
    """A hash of JSON-serialisable inputs (token ids, file contents, settings)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()


class MeasurementCache:
    def __init__(self, directory: str | Path | None = None):
        directory = directory or os.environ.get("CHATFREEZE_MEASUREMENT_CACHE")
        self.directory = Path(directory) if directory else cache_root() / "measurements"

    def path(self, model_key: str, inputs_key: str) -> Path:
        from .. import __version__

        return self.directory / f"v{CACHE_VERSION}-{__version__}-{model_key}-{inputs_key}.json"

    def get(self, model_key: str, inputs_key: str) -> dict | None:
        path = self.path(model_key, inputs_key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            logger.warning("Ignoring the unreadable cached measurement %s (%s).", path, err)
            return None

    def put(self, model_key: str, inputs_key: str, value: dict) -> None:
        """Write atomically (a temporary file renamed into place), so parallel runs never read half an entry."""
        path = self.path(model_key, inputs_key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(value, out, ensure_ascii=False)
            os.replace(tmp, path)
        except OSError as err:
            logger.warning("Could not cache the base model's measurements in %s (%s).", path.parent, err)
