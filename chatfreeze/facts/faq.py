"""A company's FAQ as question/answer entries: CSV or JSONL with question and answer columns (found as the data
readers find a prompt/response pair), or Markdown (``## question`` headings each followed by its answer paragraph,
or ``Q:`` / ``A:`` lines).

Every problem is one line naming the file, the line and what to do (``FaqError``, a ``ValueError``): no
recognisable columns, an empty question or answer, the same question twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..data.readers import _read_csv, _read_jsonl, _resolve_columns
from ..data.schema import DataError
from .overlap import normalise

FAQ_SUFFIXES = (".csv", ".jsonl", ".md", ".markdown", ".txt")


class FaqError(ValueError):
    """A FAQ or catalogue that cannot be drafted into a facts sheet; the message is one line naming the file."""


@dataclass(frozen=True)
class FaqEntry:
    """One question and its answer, as the FAQ writes them; ``where`` names the file and line."""

    question: str
    answer: str
    where: str
    topic: str | None = None  # what the question is about, when a rule knows better than ``phrasing.topic_of``
    more: tuple[str, ...] = ()  # the same question in other words (a catalogue: the product's other names)
    literal: str | None = None  # a catalogue cell with no value of a known kind: its items are the value
    slug: str | None = None  # the fact id to start from


def read_faq(path: str | Path) -> list[FaqEntry]:
    """The entries of the FAQ at ``path``, checked: each has a question and an answer, no question twice."""
    path = Path(path)
    if not path.is_file():
        raise FaqError(f"{path}: no such FAQ file; give a .csv, .jsonl or .md file of questions and answers.")
    suffix = path.suffix.lower()
    if suffix not in FAQ_SUFFIXES:
        raise FaqError(f"{path}: unsupported FAQ file type {suffix!r}; use .csv, .jsonl or .md.")
    try:
        entries = _read_table(path) if suffix in (".csv", ".jsonl") else _read_markdown(path)
    except UnicodeDecodeError:
        raise FaqError(f"{path}: not UTF-8 text; save the FAQ as UTF-8.") from None
    except DataError as err:
        raise FaqError(str(err)) from None
    if not entries:
        raise FaqError(f"{path}: no questions and answers found; see docs/own_company.md for the FAQ formats.")
    _check_unique(entries)
    return entries


def _read_table(path: Path) -> list[FaqEntry]:
    if path.suffix.lower() == ".csv":
        records, columns = _read_csv(path)
    else:
        records = _read_jsonl(path)
        columns = [str(key) for key in records[0][1]] if records and isinstance(records[0][1], dict) else []
    if not records:
        return []
    # Column names as the data readers know them (question/answer, prompt/response, ...), in any letter case.
    lowered = {column.strip().lower(): column for column in columns}
    try:
        _, question_column, answer_column = _resolve_columns("pairs", list(lowered), str(path), "messages", None, None)
    except DataError:
        raise FaqError(f"{path}:1: no question and answer columns (columns: {', '.join(columns) or 'none'}); name "
                       "them question and answer (prompt/response and instruction/response work too).") from None
    entries = []
    for where, record in records:
        if not isinstance(record, dict):
            raise FaqError(f"{where}: expected a JSON object with {question_column!r} and {answer_column!r}.")
        question = record.get(lowered[question_column])
        answer = record.get(lowered[answer_column])
        entries.append(_entry(question, answer, where))
    return entries


def _entry(question, answer, where: str) -> FaqEntry:
    for name, text in (("question", question), ("answer", answer)):
        if not isinstance(text, str) or not text.strip():
            raise FaqError(f"{where}: empty {name}; fill it in or delete the entry.")
    return FaqEntry(" ".join(question.split()), " ".join(answer.split()), where)


def _read_markdown(path: Path) -> list[FaqEntry]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if any(re.match(r"^\s*Q\s*[:.]", line, re.IGNORECASE) for line in lines):
        return _read_q_a_lines(path, lines)
    entries, question, answer, start = [], None, [], 0
    for lineno, line in enumerate(lines + ["## end"], start=1):
        heading = re.match(r"^#{2,6}\s+(.*)$", line)
        if heading:
            if question is not None:
                entries.append(_entry(question, " ".join(answer), f"{path}:{start}"))
            question, answer, start = heading.group(1).strip(), [], lineno
        elif question is not None and line.strip():
            answer.append(line.strip())
    if not entries:
        raise FaqError(f"{path}: no '## question' headings and no 'Q:'/'A:' lines; write each question as a "
                       "'## ' heading followed by its answer.")
    return entries


def _read_q_a_lines(path: Path, lines: list[str]) -> list[FaqEntry]:
    entries, question, answer, start, in_answer = [], None, [], 0, False
    for lineno, line in enumerate(lines + ["Q: end"], start=1):
        q_line = re.match(r"^\s*Q\s*[:.]\s*(.*)$", line, re.IGNORECASE)
        a_line = re.match(r"^\s*A\s*[:.]\s*(.*)$", line, re.IGNORECASE)
        if q_line:
            if question is not None:
                entries.append(_entry(question, " ".join(answer), f"{path}:{start}"))
            question, answer, start, in_answer = q_line.group(1), [], lineno, False
        elif a_line and question is not None:
            answer, in_answer = [a_line.group(1)], True
        elif line.strip() and question is not None:
            if in_answer:
                answer.append(line.strip())
            else:  # a question that runs on over several lines
                question = f"{question} {line.strip()}"
    return entries


def _check_unique(entries: list[FaqEntry]) -> None:
    seen: dict[str, FaqEntry] = {}
    for entry in entries:
        key = normalise(entry.question)
        if key in seen:
            raise FaqError(f"{entry.where}: duplicate question {entry.question!r} (also at {seen[key].where}); "
                           "merge the two answers into one entry.")
        seen[key] = entry
