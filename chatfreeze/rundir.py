"""The OUTPUT_DIR contract: the name of every file a run writes besides the weights and tokenizer, and the
readers and writers that training, evaluation, the chat and the Hub push share (``docs/output_dir.md`` says what
each file holds). Pure Python: the chat and the push read a run without importing torch's training stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUTPUTS_ROOT = "outputs"  # where runs go by default, and where the chat looks for the newest one

PLAN_FILENAME = "freeze_plan.json"  # chatfreeze.freezing.FreezePlan
RUN_INFO_FILENAME = "run_info.json"  # what ran: versions, arguments, base model, data reports, metrics
SAMPLES_FILENAME = "samples.json"  # greedy sample replies to held-out prompts
EVALUATION_FILENAME = "evaluation.json"  # before/after measurements
RESULTS_FILENAME = "all_results.json"  # Trainer.save_metrics("all", ...)
TRAINER_STATE_FILENAME = "trainer_state.json"  # Trainer.save_state()
GENERATION_CONFIG_FILENAME = "generation_config.json"  # the chat's decoding defaults
CONFIG_FILENAME = "config.json"
TOKENIZER_CONFIG_FILENAME = "tokenizer_config.json"
CARD_FILENAME = "README.md"  # the model card: only in what the push uploads, never written into OUTPUT_DIR
LOSS_CURVES_PLOT = "loss_curves.png"
BEFORE_AFTER_PLOT = "before_after.png"
LEARN_KEEP_PLOT = "learn_keep.png"
LEARNING_CURVES_FILENAME = "learning_curves.json"  # facts dev, keep measures and support loss at each evaluation
LEARNING_CURVES_PLOT = "learning_curves.png"
DELTA_MANIFEST_FILENAME = "delta_manifest.json"  # a trained-only save: the base it pins (modeling.delta)
DELTA_WEIGHTS_FILENAME = "delta.safetensors"  # a trained-only save: the tensors training changed
PROVENANCE_FILENAME = "chatfreeze_source.json"  # in a converted offline checkpoint: where its weights came from


class RunDirError(ValueError):
    """A run directory that is not what a command needs (not a finished run, a file that does not parse)."""


def read_json(path: str | Path, default: Any = None, strict: bool = False) -> Any:
    """The JSON in ``path``, or ``default`` when the file does not exist. A file that does not parse gives
    ``default`` too, or with ``strict`` a ``RunDirError`` naming it."""
    path = Path(path)
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        if strict:
            raise RunDirError(f"{path}: not valid JSON ({err}).") from None
        return default


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_run_info(run_dir: str | Path) -> dict | None:
    """``run_info.json`` of a chatfreeze run, or None when ``run_dir`` is not one."""
    info = read_json(Path(run_dir) / RUN_INFO_FILENAME)
    return info if isinstance(info, dict) else None


def write_run_info(run_dir: str | Path, **sections) -> Path:
    return write_json(Path(run_dir) / RUN_INFO_FILENAME, sections)


def trained_system_prompt(run_dir: str | Path) -> str | None:
    """The system prompt a chatfreeze run trained with, so the chat and evaluation use the same one."""
    info = read_run_info(run_dir) or {}
    return (info.get("data") or {}).get("system_prompt")


def write_samples(run_dir: str | Path, samples: list[dict]) -> Path:
    return write_json(Path(run_dir) / SAMPLES_FILENAME, samples)


def write_evaluation(run_dir: str | Path, record: dict) -> Path:
    return write_json(Path(run_dir) / EVALUATION_FILENAME, record)


def read_evaluation(run_dir: str | Path) -> dict | None:
    return read_json(Path(run_dir) / EVALUATION_FILENAME)


def is_run_dir(path: str | Path) -> bool:
    """A finished chatfreeze run: a saved model with its run info."""
    path = Path(path)
    return (path / RUN_INFO_FILENAME).is_file() and (path / CONFIG_FILENAME).is_file()
