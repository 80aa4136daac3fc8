"""The folder a push uploads, built in a new directory; ``OUTPUT_DIR`` is only read. It holds:

* the model (``*.safetensors`` + ``config.json`` + ``generation_config.json``), the tokenizer and its chat
  template: what plain ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` need; with ``trained_only``,
  a delta (the trained tensors + a manifest pinning the base) instead of the full weights;
* the run's evidence: ``freeze_plan.json``, ``run_info.json`` (token-like fields removed), ``all_results.json``,
  ``samples.json``, ``trainer_state.json``, ``evaluation.json`` and plots when present;
* ``README.md``, the model card (``chatfreeze.publish.card``) generated from those files.

Checkpoints, optimizer/scheduler/RNG states and ``training_args.bin`` (a pickle that can hold the Hub token) are
never staged, and a staged file that contains the token is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ..common import file_sha256
from ..rundir import (
    CARD_FILENAME,
    DELTA_MANIFEST_FILENAME,
    EVALUATION_FILENAME,
    PLAN_FILENAME,
    RESULTS_FILENAME,
    RUN_INFO_FILENAME,
    SAMPLES_FILENAME,
    TRAINER_STATE_FILENAME,
)
from .card import build_model_card
from .run import Run

# Top-level files of OUTPUT_DIR that are published as they are. Anything else (checkpoint-*/, training_args.bin,
# optimizer.pt, rng_state*.pth, runs/, a stale README.md, *.bin weights) stays local.
PUBLISHED_PATTERNS = (
    "*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model", "*.tiktoken",
    PLAN_FILENAME, RESULTS_FILENAME, SAMPLES_FILENAME, EVALUATION_FILENAME, TRAINER_STATE_FILENAME, "*.png",
    DELTA_MANIFEST_FILENAME,
)
WEIGHT_PATTERNS = ("*.safetensors", "model.safetensors.index.json")  # replaced by a delta with trained_only

class PushError(ValueError):
    """A push or dry run that cannot go ahead; the message is one line meant for the user.

    A ``ValueError`` so that ``chatfreeze.cli.errors.run_cli`` prints it as ``error: ...`` without a traceback.
    """



_SECRET_KEY = re.compile(r"(token|secret|password|api_key|apikey|authorization)$", re.I)
_TOKEN_FLAG = re.compile(r"(--(?:hub[_-])?token)(=|\s+)(\S+)")
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{16,}\b")


def redact_command(command: str | list[str]) -> str:
    """A command line safe to record: the value of ``--hub_token``/``--token`` and anything like a token hidden."""
    text = " ".join(command) if isinstance(command, list) else command
    return _HF_TOKEN.sub("<redacted>", _TOKEN_FLAG.sub(r"\1\2<redacted>", text))


def scrub(value: Any, token: str | None = None) -> Any:
    """A copy of ``value`` (JSON data) without token-like keys, with token-like strings redacted."""
    if isinstance(value, dict):
        return {k: scrub(v, token) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [scrub(v, token) for v in value]
    if isinstance(value, str):
        value = redact_command(value)
        return value.replace(token, "<redacted>") if token else value
    return value


@dataclass
class StagedFile:
    name: str
    size: int
    sha256: str


@dataclass
class Staged:
    folder: Path
    files: list[StagedFile]
    left_out: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _published(name: str) -> bool:
    return any(fnmatch(name, pattern) for pattern in PUBLISHED_PATTERNS)


def _place(src: Path, dst: Path, link: bool) -> None:
    """Copy ``src`` to ``dst``; with ``link``, hard-link when possible (the staged upload only ever reads it)."""
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def stage(run: Run, folder: Path, repo_id: str, *, revision: str | None = None, token: str | None = None,
          link: bool = False, trained_only: bool = False) -> Staged:
    """Fill the empty directory ``folder`` with exactly what is uploaded; OUTPUT_DIR is only read. With
    ``trained_only`` a full save is published as a delta (the trained tensors + a manifest pinning the base)."""
    left_out = []
    make_delta = trained_only and run.delta is None
    for entry in sorted(run.output_dir.iterdir()):
        if make_delta and any(fnmatch(entry.name, pattern) for pattern in WEIGHT_PATTERNS):
            left_out.append(entry.name + " (published as a delta)")
        elif entry.is_file() and _published(entry.name):
            _place(entry, folder / entry.name, link)
        elif entry.name not in (RUN_INFO_FILENAME, CARD_FILENAME):
            left_out.append(entry.name + ("/" if entry.is_dir() else ""))
    if make_delta:
        from ..modeling.delta import delta_from_saved_model, read_manifest

        base = dict(run.run_info.get("base_model") or {})
        if run.base.hub_id:
            base.update(name_or_path=run.base.hub_id, revision=run.base.revision)
        delta_from_saved_model(run.output_dir, run.plan.trainable_parameter_names, folder, base)
        run.delta = read_manifest(folder)
    run_info = scrub(run.run_info, token)
    (folder / RUN_INFO_FILENAME).write_text(json.dumps(run_info, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
    (folder / CARD_FILENAME).write_text(build_model_card(run, repo_id, revision), encoding="utf-8")
    files = [StagedFile(p.name, p.stat().st_size, file_sha256(p)) for p in sorted(folder.iterdir())]
    refuse_token_in(folder, token)
    return Staged(folder, files, left_out)


def refuse_token_in(folder: Path, token: str | None) -> None:
    """Last line of defence: never upload or write a file that contains the token."""
    if not token or len(token) < 8:
        return
    needle = token.encode()
    for path in folder.iterdir():
        if file_contains(path, needle):
            raise PushError(f"{path.name} contains the Hub token; refusing to publish it.")


def file_contains(path: Path, needle: bytes, block: int = 1 << 20) -> bool:
    """Whether ``needle`` occurs in the file, read in blocks (multi-GB weights never sit in memory whole); the
    blocks overlap by ``len(needle) - 1`` bytes so a match across a block boundary is found."""
    tail = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            window = tail + chunk
            if needle in window:
                return True
            tail = window[-(len(needle) - 1):] if len(needle) > 1 else b""
    return False


def format_listing(staged: Staged) -> str:
    lines = [f"{format_size(f.size):>10}  {f.name}" for f in staged.files]
    lines.append(f"{format_size(staged.total_bytes):>10}  total, {len(staged.files)} files")
    if staged.left_out:
        lines.append("not published: " + ", ".join(staged.left_out))
    return "\n".join(lines)


def format_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
