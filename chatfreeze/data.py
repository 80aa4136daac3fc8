"""Dialogue data: load, validate, render with the chat template, label assistant turns only, collate.

Every source becomes a list of *dialogues*; a dialogue is a list of ``{"role", "content"}`` messages with
roles ``system`` (first message only), ``user`` and ``assistant``. Sources:

* JSONL / JSON (a list of objects or ``{"data": [...]}``) / CSV files, a directory of them, a directory
  saved with ``datasets.save_to_disk``, or a Hub dataset id;
* records in the HF ``messages`` format, or prompt/response pairs (columns mapped or auto-detected);
* three public customer-support corpora through converters: Bitext CSV, SGD and ABCD.

Label convention (see ``tokenize_dialogue``): the tokens of each assistant message's content plus the
template's end-of-turn marker (ChatML: ``<|im_end|>``) are trained; everything else (system prompt, the
template's default system prompt, user turns, role headers, and the whitespace a template writes *after*
the end-of-turn marker, e.g. ChatML's newline) is ``-100``. Generation stops at the marker, so the
newline after it is never generated and there is nothing to learn from it.

Labels are derived without ``{% generation %}`` markers: the dialogue's prefixes are rendered and their
lengths give each assistant reply's character span in the full rendering; the span is mapped to tokens
through the tokenizer's offsets. Both steps are checked (prefixes must be prefixes, no token may straddle
a turn boundary) so a template or tokenizer that breaks the assumption fails loudly instead of training on
the wrong tokens.
"""

from __future__ import annotations

import bisect
import csv
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .arguments import DATA_FORMATS, OVERLONG_POLICIES

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100
DATA_FILE_SUFFIXES = (".jsonl", ".json", ".csv")

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

# build_dataset re-tokenizes every prompt prefix of this many leading examples and compares it with the
# full tokenization. The offset check covers every example; this exact check costs O(turns^2) tokenizing,
# so a sample is enough to catch a tokenizer whose prefixes tokenize differently on their own.
EXACT_CHECK_EXAMPLES = 16

SGD_ROLES = {"USER": "user", "SYSTEM": "assistant"}
ABCD_ROLES = {"customer": "user", "agent": "assistant"}

Dialogue = list[dict]


class DataError(ValueError):
    """Bad training data or an unusable chat template; the message names the file/line or example."""


# --------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------


def validate_dialogue(messages: list[dict], where: str) -> None:
    """Raise ``DataError`` unless ``messages`` is a usable dialogue. ``where`` names it (``file:line``...)."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: expected a non-empty list of messages, got {_describe(messages)}.")
    for index, message in enumerate(messages):
        _validate_message(message, index, where)
    for index, message in enumerate(messages[1:], start=1):
        if message["role"] == "system":
            raise DataError(
                f"{where}: message {index} is a system message; a system message may only be the first one."
            )
    first_turn = 1 if messages[0]["role"] == "system" else 0
    if first_turn >= len(messages) or messages[first_turn]["role"] != "user":
        # Chat templates render an assistant turn as the reply to a user turn, and a chat session always
        # opens with the user; a dialogue that opens with the assistant has no prompt for that reply.
        raise DataError(
            f"{where}: the first message after the system prompt must be a user message, "
            "not an assistant one; drop the leading assistant turns or add the user turn they answer."
        )
    if not any(message["role"] == "assistant" for message in messages):
        raise DataError(f"{where}: no assistant message, so nothing to train on; add the assistant's reply.")


def _validate_message(message: Any, index: int, where: str) -> None:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise DataError(
            f"{where}: message {index} must be an object with 'role' and 'content', got {_describe(message)}."
        )
    role, content = message["role"], message["content"]
    if role not in ROLES:
        raise DataError(
            f"{where}: message {index} has unknown role {role!r}; allowed roles: {', '.join(ROLES)}."
        )
    if not isinstance(content, str):
        raise DataError(
            f"{where}: message {index} ({role}) content must be a non-empty string, got {_describe(content)}."
        )
    if not content.strip():
        raise DataError(
            f"{where}: message {index} ({role}) has empty content; remove the message or fill it."
        )


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _clean_dialogue(messages: list[dict], where: str) -> Dialogue:
    """Validate, keep only role/content and strip surrounding whitespace from each content.

    Stripping matters: a template writes its own separators around content, and a leading newline in the
    content would merge with the header's newline into one token that straddles the reply's boundary.
    """
    validate_dialogue(messages, where)
    return [{"role": m["role"], "content": m["content"].strip()} for m in messages]


def _with_system_prompt(dialogue: Dialogue, system_prompt: str | None) -> Dialogue:
    if not system_prompt or dialogue[0]["role"] == "system":
        return dialogue
    return [{"role": "system", "content": system_prompt}, *dialogue]


# --------------------------------------------------------------------------------------------------------
# Reading files: every record comes with a ``where`` that names its file and line (or row / example)
# --------------------------------------------------------------------------------------------------------

Record = tuple[str, Any]


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    with _open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno}); "
                    "each line of a .jsonl file must be one JSON object."
                ) from None
            except UnicodeDecodeError:
                raise DataError(f"{path}:{lineno}: not UTF-8 text.") from None
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


# --------------------------------------------------------------------------------------------------------
# Records (messages or prompt/response pairs) -> dialogues
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Converters for the public customer-support corpora
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Sources: local file, local directory, or Hub dataset
# --------------------------------------------------------------------------------------------------------


def load_dialogues(
    source: str,
    *,
    split: str = "train",
    config_name: str | None = None,
    data_format: str = "auto",
    messages_column: str = "messages",
    prompt_column: str | None = None,
    response_column: str | None = None,
    system_prompt: str | None = None,
) -> list[Dialogue]:
    """Return validated dialogues, each a list of ``{"role", "content"}`` dicts.

    ``source`` is a local file, a local directory or a Hub dataset id. In a directory, files named after
    ``split`` (``train.jsonl``...) are read if there are any, otherwise every .jsonl/.json/.csv file in it.
    ``system_prompt`` becomes the first message of every dialogue that has no system message.
    """
    if data_format not in DATA_FORMATS:
        raise DataError(f"data_format {data_format!r}: choose one of {', '.join(DATA_FORMATS)}.")
    columns = dict(
        messages_column=messages_column, prompt_column=prompt_column, response_column=response_column
    )
    path = Path(source).expanduser()
    if path.is_dir():
        dialogues = _load_directory(path, split, data_format, columns)
    elif path.is_file():
        dialogues = _load_file(path, data_format, columns)
    elif _looks_like_path(source):
        raise DataError(f"{source}: no such file or directory.")
    else:
        dialogues = _load_hub(source, split, config_name, data_format, columns)
    if not dialogues:
        raise DataError(f"{source}: no dialogues found.")
    dialogues = [_with_system_prompt(dialogue, system_prompt) for dialogue in dialogues]
    logger.info("Loaded %d dialogues from %s", len(dialogues), source)
    return dialogues


def load_dialogues_from_args(data_args, *, eval: bool = False) -> list[Dialogue]:
    """Training (or, with ``eval=True``, held-out) dialogues as ``DataArguments`` describe them.

    Returns ``[]`` when ``eval=True`` and no ``--eval_dataset`` is set: the caller then carves a validation
    split. ``--max_train_samples`` / ``--max_eval_samples`` keep the first N dialogues (file order).
    """
    source = data_args.eval_dataset if eval else data_args.dataset
    if not source:
        return []
    dialogues = load_dialogues(
        source,
        split=data_args.eval_split if eval else data_args.dataset_split,
        config_name=data_args.dataset_config,
        data_format=data_args.data_format,
        messages_column=data_args.messages_column,
        prompt_column=data_args.prompt_column,
        response_column=data_args.response_column,
        system_prompt=data_args.system_prompt,
    )
    limit = data_args.max_eval_samples if eval else data_args.max_train_samples
    if limit is not None and len(dialogues) > limit:
        logger.info("Using the first %d of %d dialogues from %s", limit, len(dialogues), source)
        dialogues = dialogues[:limit]
    return dialogues


def _looks_like_path(source: str) -> bool:
    # A Hub id is "name" or "owner/name"; anything with a data-file suffix or a path prefix is a local path
    # that is missing, and sending it to the Hub would only produce a confusing network error.
    return source.lower().endswith(DATA_FILE_SUFFIXES) or source.startswith(("/", "./", "../", "~", "."))


def _load_directory(path: Path, split: str, data_format: str, columns: dict) -> list[Dialogue]:
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        return _load_saved_dataset(path, split, data_format, columns)
    if data_format == "sgd" or (data_format == "auto" and any(path.glob("dialogues_*.json"))):
        return convert_sgd(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in DATA_FILE_SUFFIXES)
    split_files = [p for p in files if p.stem == split]
    if split_files:
        files = split_files
    if not files:
        raise DataError(f"{path}: no .jsonl, .json or .csv files and no SGD dialogues_*.json files.")
    return [dialogue for file in files for dialogue in _load_file(file, data_format, columns)]


def _load_file(path: Path, data_format: str, columns: dict) -> list[Dialogue]:
    suffix = path.suffix.lower()
    if data_format == "sgd":
        return convert_sgd(path)
    if data_format == "abcd":
        return convert_abcd(path)
    if suffix == ".csv":
        records, names = _read_csv(path)
    elif suffix == ".jsonl":
        records = _read_jsonl(path)
        names = _record_keys(records)
    elif suffix == ".json":
        data = _read_json(path)
        if data_format == "auto" and _is_abcd(data):
            return _abcd_dialogues(data, path)
        if data_format == "auto" and _is_sgd(data):
            return convert_sgd(path)
        records = _json_records(data, path)
        names = _record_keys(records)
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json or .csv.")
    if not records:
        return []
    plan = _resolve_columns(data_format, names, str(path), **columns)
    return _records_to_dialogues(records, plan)


def _record_keys(records: list[Record]) -> list[str]:
    # A JSON(L) file has no header: the first record stands for all; a later record that lacks a field
    # fails on its own line.
    first = records[0][1] if records else None
    return [str(key) for key in first] if isinstance(first, dict) else []


def _first_item_has(data: Any, keys: set[str]) -> bool:
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and keys <= set(data[0])


def _is_abcd(data: Any) -> bool:
    return _first_item_has(data, {"original", "scenario"})


def _is_sgd(data: Any) -> bool:
    return _first_item_has(data, {"dialogue_id", "turns"})


def _load_saved_dataset(path: Path, split: str, data_format: str, columns: dict) -> list[Dialogue]:
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{path}: no split {split!r} (splits: {', '.join(loaded)}).")
        loaded = loaded[split]
    return _dataset_to_dialogues(loaded, str(path), data_format, columns)


def _load_hub(
    name: str, split: str, config_name: str | None, data_format: str, columns: dict
) -> list[Dialogue]:
    import datasets

    try:
        loaded = datasets.load_dataset(name, config_name, split=split)
    except (ConnectionError, FileNotFoundError) as err:
        raise DataError(
            f"{name}: neither a local path nor a dataset reachable on the Hugging Face Hub "
            f"({type(err).__name__}: {_first_line(err)}); "
            "check the path, or the dataset id and network access."
        ) from None
    except Exception as err:  # datasets raises many types (bad split, bad config, ...); all mean "unusable"
        raise DataError(
            f"{name}: Hub dataset (config {config_name!r}, split {split!r}) could not be loaded: "
            f"{_first_line(err)}"
        ) from None
    return _dataset_to_dialogues(loaded, name, data_format, columns)


def _dataset_to_dialogues(dataset, label: str, data_format: str, columns: dict) -> list[Dialogue]:
    if data_format in ("sgd", "abcd"):
        raise DataError(f"{label}: data_format {data_format!r} reads the original local JSON files only.")
    plan = _resolve_columns(data_format, list(dataset.column_names), label, **columns)
    records = [(f"{label} example {index}", row) for index, row in enumerate(dataset)]
    return _records_to_dialogues(records, plan)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


# --------------------------------------------------------------------------------------------------------
# Rendering and assistant-only labels
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Rendered:
    """One dialogue rendered by the chat template and tokenized once, with character offsets per token."""

    messages: Dialogue
    text: str
    input_ids: list[int]
    offsets: list[tuple[int, int]]


def _render(tokenizer, messages: Dialogue, where: str, generation_prompt: bool = False) -> str:
    try:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as err:  # jinja2 errors and a template's own raise_exception() calls
        raise DataError(
            f"{where}: the chat template failed to render the dialogue: {_first_line(err)}"
        ) from None
    if not isinstance(text, str):
        raise DataError(f"{where}: the chat template rendered {type(text).__name__}, not text.")
    return text


def _render_and_tokenize(tokenizer, messages: Dialogue, where: str) -> _Rendered:
    text = _render(tokenizer, messages, where)
    # The template already wrote every special token it wants (BOS included), so add none.
    try:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:  # Python ("slow") tokenizers cannot map tokens back to characters
        raise DataError(
            "assistant-only labels need character offsets, which this tokenizer cannot give; "
            "load the model's fast tokenizer."
        ) from None
    return _Rendered(
        messages, text, list(encoding["input_ids"]), [tuple(o) for o in encoding["offset_mapping"]]
    )


def _assistant_spans(rendered: _Rendered, tokenizer, where: str) -> list[tuple[int, int, int]]:
    """``(start, trained_end, turn_end)`` character positions of each assistant turn in ``rendered.text``.

    ``start`` is where the reply begins (the rendering of the turns before it plus the generation prompt,
    i.e. exactly what the model sees at chat time), ``turn_end`` where the next turn begins, and
    ``trained_end`` is ``turn_end`` less the whitespace the template writes after its end-of-turn marker.
    """
    full, messages, spans = rendered.text, rendered.messages, []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:index], where, generation_prompt=True)
        through = _render(tokenizer, messages[: index + 1], where)
        for prefix, what in ((prompt, "the prompt before"), (through, "the turns through")):
            if not full.startswith(prefix):
                raise DataError(
                    f"{where}: the chat template is not prefix-stable: rendering {what} message {index} "
                    "is not a prefix of rendering the whole dialogue (the template rewrites earlier turns, "
                    "e.g. strips their reasoning), so assistant-only labels cannot be derived; "
                    "use a template that renders each turn the same way wherever it appears."
                )
        start, turn_end = len(prompt), len(through)
        # An empty span (a template that renders no reply text) is allowed here; an example whose spans
        # hold no token at all fails as a whole in _tokenize.
        if turn_end < start or (spans and start < spans[-1][2]):
            raise DataError(f"{where}: the chat template renders assistant message {index} out of order.")
        spans.append((start, start + len(full[start:turn_end].rstrip()), turn_end))
    return spans


def _label_tokens(
    rendered: _Rendered, spans: list[tuple[int, int, int]], where: str
) -> tuple[list[int], list[int]]:
    """Labels for ``rendered`` (token ids inside the spans, -100 elsewhere) and each span's first token."""
    starts = [start for start, _ in rendered.offsets]
    ends = [end for _, end in rendered.offsets]
    if any(a > b for a, b in zip(starts, starts[1:], strict=False)):
        raise DataError(f"{where}: the tokenizer returned unordered character offsets; use a fast tokenizer.")
    labels = [IGNORE_INDEX] * len(starts)
    first_tokens = []
    for start, trained_end, turn_end in spans:
        for boundary in (start, turn_end):
            _check_boundary(starts, ends, boundary, where)
        first = bisect.bisect_left(starts, start)
        # A token that starts before trained_end belongs to the reply even if it reaches past it.
        last = bisect.bisect_left(starts, trained_end)
        labels[first:last] = rendered.input_ids[first:last]
        first_tokens.append(first)
    return labels, first_tokens


def _check_boundary(starts: list[int], ends: list[int], boundary: int, where: str) -> None:
    """A turn boundary must fall between two tokens; a token across it would belong to both turns."""
    index = bisect.bisect_left(starts, boundary)
    if index > 0 and ends[index - 1] > boundary:
        raise DataError(
            f"{where}: the tokenizer merges text across a turn boundary (character {boundary}), "
            "so tokenizing the prompt and the reply separately does not line up with tokenizing the "
            "whole dialogue; "
            "check for leading/trailing whitespace in the messages."
        )


def _check_prefix_tokens(rendered: _Rendered, tokenizer, first_tokens: list[int], spans, where: str) -> None:
    """Exact check: each prompt before a reply, tokenized alone, gives the same tokens as in the full text."""
    for (start, _, _), first in zip(spans, first_tokens, strict=True):
        alone = tokenizer(rendered.text[:start], add_special_tokens=False)["input_ids"]
        if list(alone) != rendered.input_ids[:first]:
            raise DataError(
                f"{where}: tokenizing the prompt before an assistant reply (up to character {start}) "
                "gives other tokens than tokenizing the whole dialogue; this tokenizer cannot be used "
                "for assistant-only labels."
            )


# --------------------------------------------------------------------------------------------------------
# Over-long dialogues
# --------------------------------------------------------------------------------------------------------


def _split_exchanges(messages: Dialogue) -> tuple[Dialogue, list[Dialogue]]:
    """The system message (if any) and the exchanges: user message(s) followed by the assistant's reply(s)."""
    head = messages[:1] if messages[0]["role"] == "system" else []
    exchanges: list[Dialogue] = []
    for message in messages[len(head) :]:
        if message["role"] == "user" and (not exchanges or exchanges[-1][-1]["role"] != "user"):
            exchanges.append([])
        exchanges[-1].append(message)
    return head, exchanges


def _fit(
    messages: Dialogue, tokenizer, max_length: int, overlong_policy: str, where: str
) -> tuple[_Rendered | None, int]:
    """The rendering to train on and how many oldest exchanges were dropped; None if the example is out."""
    rendered = _render_and_tokenize(tokenizer, messages, where)
    if len(rendered.input_ids) <= max_length:
        return rendered, 0
    if overlong_policy == "drop_example":
        return None, 0
    head, exchanges = _split_exchanges(messages)
    # The kept tail must still hold an assistant reply, so at most up to the last exchange that has one.
    most = max(i for i, exchange in enumerate(exchanges) if any(m["role"] == "assistant" for m in exchange))
    cache: dict[int, _Rendered] = {}

    def render_without(dropped: int) -> _Rendered:
        if dropped not in cache:
            kept = head + [m for exchange in exchanges[dropped:] for m in exchange]
            cache[dropped] = _render_and_tokenize(tokenizer, kept, where)
        return cache[dropped]

    # Length shrinks as exchanges are dropped, so binary-search the fewest drops that fit: log2(turns)
    # renders instead of one per exchange.
    low, high = 1, most
    if high < 1 or len(render_without(high).input_ids) > max_length:
        return None, 0
    while low < high:
        middle = (low + high) // 2
        if len(render_without(middle).input_ids) <= max_length:
            high = middle
        else:
            low = middle + 1
    return render_without(low), low


# --------------------------------------------------------------------------------------------------------
# Tokenized examples and the dataset
# --------------------------------------------------------------------------------------------------------


def tokenize_dialogue(
    messages: list[dict],
    tokenizer,
    max_length: int,
    overlong_policy: str = "drop_oldest_turns",
    *,
    where: str = "dialogue",
    exact_check: bool = False,
) -> dict | None:
    """``{"input_ids", "labels"}`` for one dialogue, or None if it is too long and dropped.

    Labels are -100 except on each assistant reply: its content tokens and the template's end-of-turn
    marker (``<|im_end|>`` for ChatML), not the newline the template writes after the marker.
    ``exact_check`` also re-tokenizes every prompt prefix alone and compares (slower; see build_dataset).
    """
    encoded, _ = _tokenize(messages, tokenizer, max_length, overlong_policy, where, exact_check)
    return None if encoded is None else {"input_ids": encoded["input_ids"], "labels": encoded["labels"]}


def _tokenize(
    messages: list[dict], tokenizer, max_length: int, overlong_policy: str, where: str, exact_check: bool
) -> tuple[dict | None, int]:
    if overlong_policy not in OVERLONG_POLICIES:
        raise DataError(f"overlong_policy {overlong_policy!r}: choose one of {', '.join(OVERLONG_POLICIES)}.")
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("the tokenizer has no chat template; use a chat model's tokenizer or set one.")
    validate_dialogue(messages, where)
    # Only role and content reach the template, so stray keys cannot change how a turn renders.
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    rendered, dropped = _fit(messages, tokenizer, max_length, overlong_policy, where)
    if rendered is None:
        return None, 0
    spans = _assistant_spans(rendered, tokenizer, where)
    labels, first_tokens = _label_tokens(rendered, spans, where)
    if exact_check:
        _check_prefix_tokens(rendered, tokenizer, first_tokens, spans, where)
    if all(label == IGNORE_INDEX for label in labels):
        raise DataError(
            f"{where}: no trained token: no assistant reply survives rendering and tokenization; "
            "check the chat template renders assistant messages."
        )
    return {"input_ids": rendered.input_ids, "labels": labels, "messages": rendered.messages}, dropped


@dataclass
class DataReport:
    """What happened to one source's dialogues on their way to token ids (logged, saved as JSON)."""

    source: str
    dialogues_in: int
    dialogues_used: int
    dropped_overlong: int  # dialogues longer than max_length that were left out entirely
    truncated_overlong: int  # dialogues kept after dropping their oldest exchanges
    turns: int  # user + assistant messages in the used dialogues
    assistant_turns: int
    tokens: int
    trained_tokens: int  # tokens whose label is not -100

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        share = self.trained_tokens / self.tokens if self.tokens else 0.0
        return (
            f"{self.source or 'data'}: {self.dialogues_used}/{self.dialogues_in} dialogues used "
            f"({self.dropped_overlong} dropped as over-long, {self.truncated_overlong} truncated to "
            f"their latest turns), {self.turns} turns ({self.assistant_turns} assistant), "
            f"{self.tokens} tokens, "
            f"{self.trained_tokens} trained ({share:.0%})"
        )


def build_dataset(
    dialogues: list[list[dict]], tokenizer, *, max_length: int, overlong_policy: str, source: str = ""
):
    """Tokenize and label every dialogue; return ``(datasets.Dataset, DataReport)``.

    The dataset has exactly the columns ``input_ids`` and ``labels`` (the collator builds attention masks).
    Raises ``DataError`` naming the example index if one ends with no trained token, or if none is left.
    """
    import datasets

    columns: dict[str, list] = {"input_ids": [], "labels": []}
    report = DataReport(source, len(dialogues), 0, 0, 0, 0, 0, 0, 0)
    for index, messages in enumerate(dialogues):
        where = f"{source} example {index}" if source else f"example {index}"
        encoded, dropped = _tokenize(
            messages, tokenizer, max_length, overlong_policy, where, exact_check=index < EXACT_CHECK_EXAMPLES
        )
        if encoded is None:
            report.dropped_overlong += 1
            logger.debug("%s: dropped, longer than %d tokens", where, max_length)
            continue
        report.truncated_overlong += int(dropped > 0)
        _count(report, encoded)
        columns["input_ids"].append(encoded["input_ids"])
        columns["labels"].append(encoded["labels"])
    _log_overlong(report, max_length, overlong_policy)
    if not columns["input_ids"]:
        raise DataError(
            f"{source or 'data'}: all {len(dialogues)} dialogues are longer than "
            f"max_length={max_length} tokens; raise --max_length."
        )
    logger.info("%s", report.summary())
    return datasets.Dataset.from_dict(columns), report


def _count(report: DataReport, encoded: dict) -> None:
    turns = [m for m in encoded["messages"] if m["role"] != "system"]
    report.dialogues_used += 1
    report.turns += len(turns)
    report.assistant_turns += sum(m["role"] == "assistant" for m in turns)
    report.tokens += len(encoded["input_ids"])
    report.trained_tokens += sum(label != IGNORE_INDEX for label in encoded["labels"])


def _log_overlong(report: DataReport, max_length: int, overlong_policy: str) -> None:
    if report.dropped_overlong or report.truncated_overlong:
        logger.warning(
            "%s: %d of %d dialogues were longer than %d tokens (policy %s): %d dropped, "
            "%d kept without their oldest exchanges.",
            report.source or "data",
            report.dropped_overlong + report.truncated_overlong,
            report.dialogues_in,
            max_length,
            overlong_policy,
            report.dropped_overlong,
            report.truncated_overlong,
        )


# --------------------------------------------------------------------------------------------------------
# Collator
# --------------------------------------------------------------------------------------------------------


class DialogueCollator:
    """Right-pads a batch: ``input_ids`` with the pad token, ``labels`` with -100, plus an attention mask."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None):
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos_token)."
            )
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of}: must be a positive number of tokens.")
        self.pad_token_id = tokenizer.pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        rows = [(_as_list(f["input_ids"]), _as_list(f["labels"])) for f in features]
        width = max(len(ids) for ids, _ in rows)
        if self.pad_to_multiple_of:
            # Tensor cores and some kernels are fastest on lengths that are multiples of 8 or 64.
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (ids, row_labels) in enumerate(rows):
            if len(ids) != len(row_labels):
                raise ValueError(f"feature {row}: {len(ids)} input_ids but {len(row_labels)} labels.")
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            labels[row, : len(ids)] = torch.tensor(row_labels, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _as_list(values) -> list[int]:
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)
