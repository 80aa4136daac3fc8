"""Trained-blocks-only checkpoints ("deltas"): only the tensors training changed, plus a manifest that pins the base.

A freeze changes the top blocks, the final norm and an untied head (21 M of 134.5 M parameters in the default
plan); everything else *is* the base model, bit for bit. A delta directory holds:

* ``delta.safetensors``: the trained tensors, by their model names, in the saved dtype;
* ``delta_manifest.json``: the base (repo id or path, revision, where it came from), the dtype, the trained
  tensors' names, and a SHA-256 of every other tensor of the base as the delta was trained on it;
* ``config.json`` (and the tokenizer, plan and run files a run writes next to it).

``load_delta`` resolves the base, checks **every** pinned tensor's SHA-256 before use (a mismatch is an error
naming the tensor: a different revision, a re-quantized copy, a tampered file), then overlays the trained
tensors. ``modeling.load_model`` does this transparently for any directory that holds a manifest, so the chat,
evaluation, merge and push read deltas like full models. Many deltas can share one base download.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import nn

from ..common import share_weights_like_umask
from ..progress import progress
from ..rundir import CONFIG_FILENAME, DELTA_MANIFEST_FILENAME, DELTA_WEIGHTS_FILENAME

logger = logging.getLogger(__name__)

DELTA_FORMAT = 1


class DeltaError(ValueError):
    """A delta that cannot be applied: its base differs from the pinned one, or its files are incomplete."""


def tensor_sha256(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes as stored (dtype and values)."""
    data = tensor.detach().cpu().contiguous().view(torch.uint8).numpy()
    return hashlib.sha256(memoryview(data)).hexdigest()


def is_delta(path: str | Path) -> bool:
    return (Path(path) / DELTA_MANIFEST_FILENAME).is_file()


def read_manifest(path: str | Path) -> dict:
    file = Path(path) / DELTA_MANIFEST_FILENAME
    try:
        manifest = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DeltaError(f"{file}: not a readable delta manifest ({err}); re-save the delta.") from None
    for key in ("base", "trained", "frozen_sha256", "dtype"):
        if key not in manifest:
            raise DeltaError(f"{file}: the manifest has no {key!r}; re-save the delta with this chatfreeze.")
    return manifest


def write_delta(model: nn.Module, trained_names: list[str], output_dir: str | Path, base: dict) -> dict:
    """Save ``model``'s ``trained_names`` tensors, its config and a manifest pinning every other tensor to its
    SHA-256 into ``output_dir``. ``base``: ``{"name_or_path", "revision", "source"}`` of the model it was tuned
    from (``ResolvedModel.to_dict()``). Returns the manifest."""
    state = model.state_dict()
    missing = sorted(set(trained_names) - set(state))
    if missing:
        raise DeltaError(f"delta: trained tensor {missing[0]!r} is not in the model's state dict.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(output_dir)
    return _write(state.items(), set(trained_names), output_dir, base, len(state))


def delta_from_saved_model(model_dir: str | Path, trained_names: list[str], output_dir: str | Path,
                           base: dict) -> dict:
    """The delta of a full save (``model_dir``'s ``*.safetensors``, read tensor by tensor, no model built): what
    ``push --trained_only`` uploads. Its frozen tensors are the base's (the freeze guard checked them)."""
    import shutil

    from safetensors import safe_open

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    files = sorted(f for f in model_dir.glob("*.safetensors") if f.name != DELTA_WEIGHTS_FILENAME)
    if not files:
        raise DeltaError(f"{model_dir}: no *.safetensors weights to make a delta of.")

    def tensors():
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    yield name, handle.get_tensor(name)

    def count(file: Path) -> int:
        with safe_open(str(file), framework="pt") as handle:
            return len(handle.keys())

    output_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / CONFIG_FILENAME, output_dir / CONFIG_FILENAME)
    return _write(tensors(), set(trained_names), output_dir, base, sum(map(count, files)))


def _write(named_tensors, trained: set[str], output_dir: Path, base: dict, total: int | None = None) -> dict:
    """Write ``delta.safetensors`` (the ``trained`` tensors) and the manifest (a SHA-256 of every other one);
    ``total``: how many tensors ``named_tensors`` holds, for the progress shown."""
    from safetensors.torch import save_file

    kept, frozen = {}, {}
    for name, value in progress(named_tensors, "Delta: copying trained and hashing frozen tensors", total,
                                "tensors"):
        if name in trained:
            kept[name] = value.detach().cpu().contiguous().clone()
        else:
            frozen[name] = tensor_sha256(value)
    absent = sorted(trained - set(kept) - set(frozen))
    if not kept or absent:
        raise DeltaError(f"delta: trained tensor {(absent or sorted(trained) or ['?'])[0]!r} is not in the model.")
    save_file(kept, str(output_dir / DELTA_WEIGHTS_FILENAME), metadata={"format": "pt"})
    share_weights_like_umask(output_dir)
    dtypes = {str(t.dtype).replace("torch.", "") for t in kept.values()}
    manifest = {
        "format": DELTA_FORMAT,
        "base": {key: base.get(key) for key in ("name_or_path", "revision", "source")},
        "dtype": dtypes.pop() if len(dtypes) == 1 else "mixed",
        "trained": sorted(kept),
        "trained_parameters": sum(t.numel() for t in kept.values()),
        "frozen_sha256": frozen,
    }
    (output_dir / DELTA_MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=1) + "\n")
    logger.info("Saved a delta of %d trained tensors (%s parameters) pinned to %s (%d frozen tensors hashed) in %s",
                len(kept), f"{manifest['trained_parameters']:,}", manifest["base"]["name_or_path"], len(frozen),
                output_dir)
    return manifest


def verify_base(model: nn.Module, manifest: dict, where: str) -> None:
    """Raise ``DeltaError`` naming the first tensor of ``model`` whose SHA-256 is not the pinned one."""
    state = model.state_dict()
    base = manifest["base"]
    what = f"{base.get('name_or_path')}" + (f"@{base['revision']}" if base.get("revision") else "")
    for name, digest in progress(manifest["frozen_sha256"].items(), "Delta: checking the base's tensors",
                                 unit="tensors"):
        if name not in state:
            raise DeltaError(f"{where}: the base {what} has no tensor {name!r}; is it the model this delta was "
                             "trained on?")
        if tensor_sha256(state[name]) != digest:
            raise DeltaError(f"{where}: base tensor {name!r} of {what} differs from the one this delta was trained "
                             f"on (SHA-256 mismatch); load the pinned base (source: {base.get('source')}) or "
                             "re-train on this one.")


def load_delta(path: str | Path, dtype: torch.dtype | None = None, trust_remote_code: bool = False,
               base_path: str | None = None, **kwargs):
    """The full model of the delta at ``path``: its base (resolved from the manifest, or ``base_path``), checked
    tensor by tensor, with the trained tensors overlaid; cast to ``dtype`` after the check when given."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from .resolve import resolve_model

    path = Path(path)
    manifest = read_manifest(path)
    weights = path / DELTA_WEIGHTS_FILENAME
    if not weights.is_file() or not (path / CONFIG_FILENAME).is_file():
        raise DeltaError(f"{path}: a delta needs {DELTA_WEIGHTS_FILENAME} and {CONFIG_FILENAME} beside its manifest.")
    base = manifest["base"]
    if base_path is None:
        base_path = resolve_model(base["name_or_path"], base.get("revision")).path
    saved_dtype = getattr(torch, manifest["dtype"], None) if manifest["dtype"] != "mixed" else None
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(base_path, config=config, dtype=saved_dtype or torch.float32,
                                                 trust_remote_code=trust_remote_code, **kwargs)
    verify_base(model, manifest, str(path))
    try:
        trained = load_file(str(weights))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for a broken file
        raise DeltaError(f"{weights}: cannot be read ({err}); the file is damaged, copy or push it again.") from None
    unexpected = sorted(set(trained) - set(model.state_dict()))
    if unexpected or sorted(trained) != manifest["trained"]:
        raise DeltaError(f"{weights}: its tensors do not match the manifest (e.g. {(unexpected or ['?'])[0]!r}); "
                         "re-save the delta.")
    model.load_state_dict(trained, strict=False)
    if dtype is not None and dtype != model.dtype:
        model.to(dtype)
    logger.info("Loaded delta %s: %d trained tensors over %s (%d frozen tensors checked)", path, len(trained),
                base_path, len(manifest["frozen_sha256"]))
    return model


def delta_size(path: str | Path) -> int:
    """Bytes of the delta's weights file."""
    return (Path(path) / DELTA_WEIGHTS_FILENAME).stat().st_size
