"""Small helpers every layer shares, each with one home: error text for one-line messages, boolean environment
flags, the text config of (multimodal) models, whether a trainer shards the model, chatfreeze's cache folder, the
permissions of saved weights, help formatters that print a help string's ``%`` as written (and the one-line-per-option
help of ``chatfreeze train``); ``UserError``, the mark of an
error that is the input's fault (``cli.errors.run_cli`` prints it as one line).

Imports nothing heavy (no torch, no transformers), so the lightest commands can use it.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

# How huggingface_hub and transformers read boolean environment variables (HF_HUB_OFFLINE=1, ...).
TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})


class UserError(Exception):
    """A mixin for chatfreeze errors that mean "the input is wrong" without being a ``ValueError`` (for example
    ``modeling.ModelResolutionError``): ``cli.errors.run_cli`` prints them as one line and exits 2."""


def first_line(err: BaseException | None, with_type: bool = False) -> str:
    """The first non-empty line of an error's message (its type name when it has none), for one-line errors."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not with_type:
        return lines[0] if lines else type(err).__name__
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a true value, as the Hugging Face libraries read it."""
    return os.environ.get(name, "").strip().upper() in TRUE_VALUES


def text_config(config):
    """The language model's config: ``config.get_text_config()`` where it exists (multimodal wrappers), else the
    config itself. Accepts a model too."""
    config = getattr(config, "config", config)
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def is_sharded(trainer) -> bool:
    """Whether FSDP or DeepSpeed own the model's parameters (shards, flat parameters) in this trainer."""
    return bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))


def cache_root() -> Path:
    """Chatfreeze's own cache (converted fallback checkpoints, base-model measurements); ``CHATFREEZE_CACHE``
    overrides it, else ``$HF_HOME/chatfreeze``."""
    if os.environ.get("CHATFREEZE_CACHE"):
        return Path(os.environ["CHATFREEZE_CACHE"])
    hf_home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
    return Path(hf_home) / "chatfreeze"


def current_umask() -> int:
    """The process's umask (read without changing it where /proc says it, as on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_weights_like_umask(directory: str | Path) -> None:
    """Give the ``*.safetensors`` files in ``directory`` the mode any other file written there gets (0644 under
    the usual umask 022). safetensors 0.8 writes its files 0600 whatever the umask, so a model saved by one user
    could not be read by the serving or CI user that reads the rest of the folder."""
    mode = 0o666 & ~current_umask()
    for file in Path(directory).glob("*.safetensors"):
        if file.is_file() and not file.is_symlink() and (file.stat().st_mode & 0o777) != mode:
            file.chmod(mode)


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]):
    """``(__all__, __getattr__, __dir__)`` for a package whose public names live in submodules
    (``{submodule: names}``), each imported on first use (PEP 562): importing a package stays cheap, and its
    public API is still one import away."""
    import importlib

    home = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name in home:
            return getattr(importlib.import_module(f"{package}.{home[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(home)

    return sorted(home), __getattr__, __dir__


def check_choice(option: str, value, choices, error: type[Exception] = ValueError) -> None:
    """Raise ``error("--option 'value': choose one of a, b, c.")`` unless ``value`` is one of ``choices``: the one
    check behind an option's validation and the functions that take the same value from Python."""
    if value not in choices:
        raise error(f"--{option} {value!r}: choose one of {', '.join(map(str, choices))}.")


def looks_like_path(source: str, suffixes: tuple[str, ...] = ()) -> bool:
    """Whether ``source`` names a local path rather than a Hub id ("name" or "owner/name"): it starts like a path
    (``/``, ``.``, ``~``) or ends with one of ``suffixes``. A missing one is then a missing file, not a Hub lookup
    that would only fail with a confusing network error."""
    return source.startswith(("/", ".", "~")) or source.lower().endswith(tuple(s.lower() for s in suffixes))


def file_sha256(path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# In an argparse help string, `%%` and placeholders like `%(default)s` are format syntax; any other `%` is text.
_HELP_FORMAT_SYNTAX = re.compile(r"%%|%\([a-z_]+\)[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|%")


def literal_percents(help_text: str) -> str:
    """``help_text`` with every ``%`` that is not argparse format syntax doubled, so "(0.02 = 2%)" prints as is."""
    return _HELP_FORMAT_SYNTAX.sub(lambda m: "%%" if m.group() == "%" else m.group(), help_text)


class LiteralPercentHelpFormatter(argparse.HelpFormatter):
    """argparse %-formats every help string, so a bare ``%`` ("2%") crashes ``--help``; this one prints it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return literal_percents(super()._get_help_string(action) or "")


class LiteralPercentDefaultsHelpFormatter(LiteralPercentHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The same, with each option's default appended (``HfArgumentParser``'s own choice of formatter)."""


def expand_help(action: argparse.Action, prog: str) -> str:
    """An option's help string as argparse would print it (``%(default)s`` filled in, a bare ``%`` as written)."""
    params = {key: value for key, value in vars(action).items() if value is not argparse.SUPPRESS}
    params["prog"] = prog
    if isinstance(params.get("choices"), (list, tuple, set)):
        params["choices"] = ", ".join(map(str, params["choices"]))
    return literal_percents(action.help or "") % params


# A sentence ends at a full stop followed by a space and a capital, a quote or a bracket ("e.g. 1e-4" does not).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`'\"(])")


def first_sentence(text: str) -> str:
    """The first sentence of a help string, on one line."""
    text = " ".join(text.split())
    return _SENTENCE_END.split(text, maxsplit=1)[0]


def one_line_help(sections: list[tuple[str, list[tuple[str, str, str]]]], width: int) -> str:
    """Sections of ``(heading, [(flag, value, help)])`` as one line per option: ``--flag value`` as it would be
    typed, then the first sentence of its help cut to ``width`` ("…" where cut). One line each, so a person can scan
    two hundred options; a long ``--flag value`` pushes its own help right rather than widening every line."""
    column = 38  # fits most of ours ("--generation_max_new_tokens 96"), leaves ~60 characters of help at 100
    lines: list[str] = []
    for heading, rows in sections:
        if not rows:
            continue
        lines += ["", f"{heading}:"]
        for flag, value, help_ in rows:
            start = f"  {flag + ' ' + value:<{column}}  "
            text = first_sentence(help_)
            room = max(width - len(start), 20)
            lines.append(start + (text if len(text) <= room else text[:room - 1] + "…"))
    return "\n".join(lines)
