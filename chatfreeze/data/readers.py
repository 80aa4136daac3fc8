"""Reading records from JSONL / JSON / CSV files, each named by its file and line (or row / example), and turning
records (HF ``messages`` or prompt/response pairs) into dialogues."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from .schema import DataError, Dialogue, _clean_dialogue, _describe

# Prompt/response column pairs recognised by ``data_format="auto"``, most specific first: Alpaca-style data
# has instruction, input *and* output, so instruction/output must win over input/output.
KNOWN_PAIRS = (
    ("instruction", "response"),
    ("instruction", "output"),
    ("prompt", "completion"),
    ("prompt", "response"),
    ("question", "answer"),
    ("input", "output"),
)

Record = tuple[str, Any]


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    with open(path, "rb") as handle:  # decoded line by line, so a bad byte is reported with its line
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                                f"{err.start + 1}); save the file as UTF-8.") from None
            if not line.strip():
                continue
            try:
                records.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno}); "
                    "each line of a .jsonl file must be one JSON object."
                ) from None
    return records


def _read_json(path: Path) -> Any:
    try:
        with _open_text(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg}).") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text.") from None


def _json_records(data: Any, path: Path) -> list[Record]:
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(
            f'{path}: expected a JSON list of examples or {{"data": [...]}}, got {_describe(data)}.'
        )
    return [(f"{path} example {index}", item) for index, item in enumerate(data)]


def _read_csv(path: Path) -> tuple[list[Record], list[str]]:
    """Rows as dicts, each named by the line its row starts on (quoted fields may span lines)."""
    records = []
    with _open_text(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        try:
            start_line = reader.line_num + 1
            for row in reader:
                if None in row or any(value is None for value in row.values()):
                    found = len(columns) + len(row.get(None) or []) - sum(v is None for v in row.values())
                    raise DataError(f"{path}:{start_line}: {found} fields but the header has {len(columns)}; "
                                    "quote fields that contain commas.")
                records.append((f"{path}:{start_line}", row))
                start_line = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataError(f"{path}:{reader.line_num}: not valid CSV ({err}).") from None
    return records, columns


def _open_text(path: Path, newline: str | None = None):
    try:
        return path.open(encoding="utf-8", newline=newline)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror}).") from None


def _resolve_columns(
    data_format: str,
    columns: list[str],
    label: str,
    messages_column: str,
    prompt_column: str | None,
    response_column: str | None,
) -> tuple[str, ...]:
    """``("messages", column)`` or ``("pairs", prompt, response)`` for a source with these columns."""
    shown = ", ".join(columns) if columns else "none"
    if data_format == "bitext":
        prompt_column, response_column, data_format = "instruction", "response", "pairs"
    if data_format == "messages":
        if messages_column not in columns:
            raise DataError(
                f"{label}: no {messages_column!r} column (columns: {shown}); set --messages_column."
            )
        return ("messages", messages_column)
    if data_format == "auto" and not (prompt_column or response_column) and messages_column in columns:
        return ("messages", messages_column)
    if data_format not in ("auto", "pairs"):
        raise DataError(f"{label}: data_format {data_format!r} cannot read a table of records.")
    if prompt_column and response_column:
        pair = (prompt_column, response_column)
    else:
        # Auto-detect the pair, or its other half when only one of the two columns was named.
        candidates = [
            p
            for p in KNOWN_PAIRS
            if set(p) <= set(columns) and prompt_column in (None, p[0]) and response_column in (None, p[1])
        ]
        if not candidates:
            raise DataError(
                f"{label}: cannot tell the format: no {messages_column!r} column and no known "
                f"prompt/response pair (columns: {shown}); set --messages_column, or --prompt_column and "
                "--response_column."
            )
        pair = candidates[0]
    missing = [column for column in pair if column not in columns]
    if missing:
        raise DataError(
            f"{label}: no column {missing[0]!r} (columns: {shown}); set --prompt_column/--response_column."
        )
    return ("pairs", *pair)


def _records_to_dialogues(records: list[Record], plan: tuple[str, ...]) -> list[Dialogue]:
    dialogues = []
    for where, record in records:
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object (one example), got {_describe(record)}.")
        if plan[0] == "messages":
            dialogues.append(_messages_record(record, plan[1], where))
        else:
            dialogues.append(_pair_record(record, plan[1], plan[2], where))
    return dialogues


def _messages_record(record: dict, column: str, where: str) -> Dialogue:
    if column not in record:
        raise DataError(f"{where}: no {column!r} field (fields: {', '.join(map(str, record))}).")
    return _clean_dialogue(record[column], where)


def _pair_record(record: dict, prompt_column: str, response_column: str, where: str) -> Dialogue:
    for column in (prompt_column, response_column):
        if column not in record:
            raise DataError(f"{where}: no {column!r} field (fields: {', '.join(map(str, record))}).")
    prompt = record[prompt_column]
    extra = record.get("input")
    # Alpaca-style rows keep the task in `instruction` and its argument in `input`; the user sees both.
    if (
        prompt_column == "instruction"
        and response_column != "input"
        and isinstance(extra, str)
        and extra.strip()
    ):
        prompt = f"{prompt}\n\n{extra}" if isinstance(prompt, str) else prompt
    messages = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": record[response_column]},
    ]
    return _clean_dialogue(messages, where)
