"""Where dialogues come from: a local file, a local directory, a ``save_to_disk`` folder or a Hub dataset;
``load_dialogues`` picks the reader or converter and returns validated dialogues."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..common import check_choice, first_line, looks_like_path
from .converters import _abcd_dialogues, convert_abcd, convert_sgd
from .options import DATA_FORMATS
from .readers import (
    Record,
    _json_records,
    _read_csv,
    _read_json,
    _read_jsonl,
    _records_to_dialogues,
    _resolve_columns,
)
from .schema import DataError, Dialogue, _with_system_prompt

logger = logging.getLogger(__name__)

DATA_FILE_SUFFIXES = (".jsonl", ".json", ".csv")


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
    check_choice("data_format", data_format, DATA_FORMATS, DataError)
    columns = dict(
        messages_column=messages_column, prompt_column=prompt_column, response_column=response_column
    )
    path = Path(source).expanduser()
    if path.is_dir():
        dialogues = _load_directory(path, split, data_format, columns)
    elif path.is_file():
        dialogues = _load_file(path, data_format, columns)
    elif looks_like_path(source, DATA_FILE_SUFFIXES):
        raise DataError(f"{source}: no such file or directory.")
    else:
        dialogues = _load_hub(source, split, config_name, data_format, columns)
    if not dialogues:
        raise DataError(f"{source}: no dialogues found (no data rows); add dialogues, or give another source.")
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
        raise DataError(f"{path}: no .jsonl, .json or .csv files and no SGD dialogues_*.json files; put the "
                        "dialogues there, or give a data file instead of the folder.")
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
            f"({type(err).__name__}: {first_line(err)}); "
            "check the path, or the dataset id and network access."
        ) from None
    except Exception as err:  # datasets raises many types (bad split, bad config, ...); all mean "unusable"
        raise DataError(
            f"{name}: Hub dataset (config {config_name!r}, split {split!r}) could not be loaded: "
            f"{first_line(err)}"
        ) from None
    return _dataset_to_dialogues(loaded, name, data_format, columns)


def _dataset_to_dialogues(dataset, label: str, data_format: str, columns: dict) -> list[Dialogue]:
    if data_format in ("sgd", "abcd"):
        raise DataError(f"{label}: data_format {data_format!r} reads the original local JSON files only.")
    plan = _resolve_columns(data_format, list(dataset.column_names), label, **columns)
    records = [(f"{label} example {index}", row) for index, row in enumerate(dataset)]
    return _records_to_dialogues(records, plan)
