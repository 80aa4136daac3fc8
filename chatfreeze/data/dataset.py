"""Tokenized, labelled examples as a ``datasets.Dataset`` with a report of what happened to each source, and the
collator that right-pads them."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch

from .labels import _tokenize
from .schema import IGNORE_INDEX, DataError

logger = logging.getLogger(__name__)


# build_dataset re-tokenizes every prompt prefix of this many leading examples and compares it with the
# full tokenization. The offset check covers every example; this exact check costs O(turns^2) tokenizing,
# so a sample is enough to catch a tokenizer whose prefixes tokenize differently on their own.
EXACT_CHECK_EXAMPLES = 16


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
    dialogues: list[list[dict]], tokenizer, *, max_length: int, overlong_policy: str, source: str = "",
    keep_index: bool = False,
):
    """Tokenize and label every dialogue; return ``(datasets.Dataset, DataReport)``.

    The dataset has exactly the columns ``input_ids`` and ``labels`` (the collator builds attention masks), and
    with ``keep_index`` an ``index`` column: each row's position in ``dialogues`` (rows dropped as over-long leave
    gaps), for a caller that treats some dialogues differently after tokenization.
    Raises ``DataError`` naming the example index if one ends with no trained token, or if none is left.
    """
    import datasets

    columns: dict[str, list] = {"input_ids": [], "labels": []} | ({"index": []} if keep_index else {})
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
        if keep_index:
            columns["index"].append(index)
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
