"""Converters for three public customer-support corpora: Bitext (CSV), Schema-Guided Dialogue and ABCD (JSON)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .readers import _read_csv, _read_json, _records_to_dialogues, _resolve_columns
from .schema import DataError, Dialogue, _clean_dialogue, _describe

logger = logging.getLogger(__name__)

SGD_ROLES = {"USER": "user", "SYSTEM": "assistant"}

ABCD_ROLES = {"customer": "user", "agent": "assistant"}


def convert_bitext_csv(path: str | Path) -> list[Dialogue]:
    """Bitext customer-support CSV: each row becomes ``instruction`` -> user, ``response`` -> assistant."""
    path = Path(path)
    records, columns = _read_csv(path)
    plan = _resolve_columns("bitext", columns, str(path), "messages", None, None)
    return _records_to_dialogues(records, plan)


def convert_sgd(path: str | Path) -> list[Dialogue]:
    """Schema-Guided Dialogue: a ``dialogues_NNN.json`` file or a directory of them (``schema.json`` skipped).

    ``USER`` turns become user messages and ``SYSTEM`` turns assistant messages; the frames (annotations)
    are not part of the conversation and are ignored.
    """
    path = Path(path)
    files = sorted(path.glob("dialogues_*.json")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no dialogues_*.json files; expected an SGD split directory.")
    dialogues = []
    for file in files:
        items = _read_json(file)
        if not isinstance(items, list):
            raise DataError(f"{file}: expected a JSON list of SGD dialogues, got {_describe(items)}.")
        dialogues.extend(_sgd_dialogue(item, file, index) for index, item in enumerate(items))
    logger.info("Converted %d SGD dialogues from %d file(s) in %s", len(dialogues), len(files), path)
    return _without_unanswered(dialogues, path)


def _sgd_dialogue(item: Any, file: Path, index: int) -> Dialogue | None:
    if not isinstance(item, dict) or not isinstance(item.get("turns"), list):
        raise DataError(f"{file} example {index}: not an SGD dialogue (expected an object with 'turns').")
    where = f"{file} dialogue {item.get('dialogue_id', index)}"
    turns = []
    for turn in item["turns"]:
        speaker = turn.get("speaker") if isinstance(turn, dict) else None
        if speaker not in SGD_ROLES:
            raise DataError(f"{where}: turn speaker {speaker!r} is neither USER nor SYSTEM.")
        turns.append((SGD_ROLES[speaker], turn.get("utterance")))
    return _turns_to_dialogue(turns, where)


def convert_abcd(path: str | Path) -> list[Dialogue]:
    """ABCD (Action-Based Conversations Dataset) JSON: the ``original`` list of ``[speaker, text]`` turns.

    ``customer`` -> user, ``agent`` -> assistant. ``action`` turns are dropped: they are logs of the agent's
    tool use ("Account has been pulled up for ..."), not words either party said, and a chat model without
    tools cannot reproduce them. Consecutive turns of one role are then merged with a newline (people send
    several short chat lines in a row). The agent's greeting before the customer's first message and
    customer lines after the agent's last reply are trimmed: the first has no user turn to answer and the
    second has no reply to train on.
    """
    path = Path(path)
    items = _read_json(path)
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of ABCD conversations, got {_describe(items)}.")
    return _abcd_dialogues(items, path)


def _abcd_dialogues(items: list, path: Path) -> list[Dialogue]:
    dialogues, actions = [], 0
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("original"), list):
            raise DataError(
                f"{path} example {index}: not an ABCD conversation (expected an 'original' list)."
            )
        where = f"{path} conversation {item.get('convo_id', index)}"
        turns = []
        for turn in item["original"]:
            if not (isinstance(turn, list) and len(turn) == 2):
                raise DataError(f"{where}: a turn must be [speaker, text], got {_describe(turn)}.")
            speaker, text = turn
            if speaker == "action":
                actions += 1
                continue
            if speaker not in ABCD_ROLES:
                raise DataError(f"{where}: speaker {speaker!r} is not customer, agent or action.")
            turns.append((ABCD_ROLES[speaker], text))
        dialogues.append(_turns_to_dialogue(turns, where))
    logger.info(
        "Converted %d ABCD conversations from %s (%d action turns dropped)", len(dialogues), path, actions
    )
    return _without_unanswered(dialogues, path)


def _turns_to_dialogue(turns: list[tuple[str, Any]], where: str) -> Dialogue | None:
    """Merge consecutive same-role turns, trim an opening assistant turn / closing user turn, validate.

    None when no user turn is answered by the assistant: such a conversation has nothing to train on.
    """
    merged: list[dict] = []
    for role, text in turns:
        if not isinstance(text, str):
            raise DataError(f"{where}: a {role} turn has non-text content {_describe(text)}.")
        if not text.strip():
            continue  # an empty chat line carries nothing to render or learn
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += "\n" + text.strip()
        else:
            merged.append({"role": role, "content": text.strip()})
    while merged and merged[0]["role"] == "assistant":
        merged.pop(0)
    while merged and merged[-1]["role"] == "user":
        merged.pop()
    return _clean_dialogue(merged, where) if merged else None


def _without_unanswered(dialogues: list[Dialogue | None], path: Path) -> list[Dialogue]:
    kept = [dialogue for dialogue in dialogues if dialogue is not None]
    if len(kept) < len(dialogues):
        logger.warning(
            "%s: skipped %d of %d conversations in which no user turn is answered by the assistant.",
            path,
            len(dialogues) - len(kept),
            len(dialogues),
        )
    return kept
