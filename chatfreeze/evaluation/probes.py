"""Checkable questions: did the model learn the company's facts, and does it keep its general skills?

Two probe sets share one format and one scorer:

* a **facts probe** (JSONL, one object per line): ``{"id", "fact", "question", "expect": [regex, ...],
  "reject": [regex, ...]}``; every ``expect`` regex must match the reply, and a ``reject`` regex that matches
  is a wrong value the model stated (a wrong price, a wrong window);
* the **skills probe** shipped with chatfreeze (``probes/skills.jsonl``): general prompts (knowledge, arithmetic,
  units, reasoning, writing, rewriting, translation, summarising, code, format) with ``answer`` regexes where
  the answer is checkable, split into a fixed ``probe`` half (scored) and a ``pool`` half (for training-time
  replay; never scored).

Regexes are applied with ``re.search(pattern, reply, re.IGNORECASE)`` (no ``re.MULTILINE``: ``^`` is the start
of the reply). Replies are greedy, so a score is a property of the model, not of a sampling seed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PROBES_DIR = Path(__file__).resolve().parent / "probes"
SKILLS_FILE = PROBES_DIR / "skills.jsonl"
SPLITS = ("probe", "pool")


class ProbeError(ValueError):
    """A probe file that cannot be used; the message names the file and line."""


@dataclass
class ProbeItem:
    """One checkable prompt: a user message, what a right reply contains, and wrong values to look for."""

    id: str
    prompt: str
    group: str  # the fact id (facts probe) or the category (skills probe)
    expect: list[str] = field(default_factory=list)
    reject: list[str] = field(default_factory=list)
    split: str = "probe"

    @property
    def checkable(self) -> bool:
        return bool(self.expect)

    def check(self, reply: str) -> tuple[bool, list[str]]:
        """``(right, wrong values stated)``: right when every ``expect`` regex matches and no ``reject`` one does."""
        wrong = [m.group(0) for pattern in self.reject if (m := re.search(pattern, reply, re.IGNORECASE))]
        right = all(re.search(pattern, reply, re.IGNORECASE) for pattern in self.expect) and not wrong
        return right, wrong


def _regexes(value, where: str, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ProbeError(f"{where}: {key!r} must be a list of regular expressions.")
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ProbeError(f"{where}: {key} regex {pattern!r} does not compile ({err}).") from None
    return value


def _read_jsonl(path: Path) -> list[tuple[str, dict]]:
    if not path.is_file():
        raise ProbeError(f"{path}: no such probe file.")
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ProbeError(f"{path}: not UTF-8 text.") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ProbeError(f"{where}: not valid JSON ({err.msg}); one JSON object per line.") from None
        if not isinstance(row, dict):
            raise ProbeError(f"{where}: expected a JSON object.")
        rows.append((where, row))
    if not rows:
        raise ProbeError(f"{path}: no probe items.")
    return rows


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ProbeError(f"{where}: {key!r} must be a non-empty string.")
    return value


def load_facts_probe(path: str | Path) -> list[ProbeItem]:
    """The facts probe at ``path``; every item needs ``question``, ``fact`` and at least one ``expect`` regex."""
    items, seen = [], set()
    for where, row in _read_jsonl(Path(path)):
        expect = _regexes(row.get("expect"), where, "expect")
        if not expect:
            raise ProbeError(f"{where}: 'expect' needs at least one regex a right reply matches.")
        item = ProbeItem(id=str(row.get("id") or where), prompt=_text(row, "question", where),
                         group=_text(row, "fact", where), expect=expect,
                         reject=_regexes(row.get("reject"), where, "reject"))
        if item.id in seen:
            raise ProbeError(f"{where}: duplicate id {item.id!r}.")
        seen.add(item.id)
        items.append(item)
    return items


def load_skills_probe(path: str | Path = SKILLS_FILE, split: str = "probe") -> list[ProbeItem]:
    """The ``split`` half (``probe``: scored; ``pool``: for replay) of a skills prompt set."""
    if split not in SPLITS:
        raise ValueError(f"skills split {split!r}: choose one of {', '.join(SPLITS)}.")
    items = []
    for where, row in _read_jsonl(Path(path)):
        if row.get("split") not in SPLITS:
            raise ProbeError(f"{where}: 'split' must be one of {', '.join(SPLITS)}.")
        if row["split"] == split:
            items.append(ProbeItem(id=str(row.get("id") or where), prompt=_text(row, "prompt", where),
                                   group=str(row.get("category") or "general"),
                                   expect=_regexes(row.get("answer"), where, "answer"), split=split))
    return items


def drilled_probe(facts_data) -> list[ProbeItem]:
    """The drilled-questions check of a run's ``facts.TrainingDrills``: questions its drills asked (verbatim, opener
    included), each right when the reply states the fact's value (every pattern of the sheet matches)."""
    if facts_data is None:
        return []
    items, count = [], Counter()
    for drill in facts_data.drilled_questions():
        count[drill.fact] += 1
        items.append(ProbeItem(id=f"{drill.fact}/drilled-{count[drill.fact]}", prompt=drill.question,
                               group=drill.fact, expect=list(facts_data.sheet.by_id[drill.fact].patterns)))
    return items


def conversations(items: list[ProbeItem], system_prompt: str | None = None) -> list[list[dict]]:
    """One single-turn conversation per item (with ``system_prompt`` first when given)."""
    head = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [head + [{"role": "user", "content": item.prompt}] for item in items]


def score(items: list[ProbeItem], replies: list[str]) -> dict:
    """Accuracy over the checkable items, the failures per group and the wrong values the model stated."""
    checked = [(item, reply) for item, reply in zip(items, replies, strict=True) if item.checkable]
    if not checked:
        raise ProbeError("no checkable probe item (none has expect/answer regexes).")
    failures: dict[str, list[str]] = {}
    wrong_values: Counter = Counter()
    right_count = 0
    for item, reply in checked:
        right, wrong = item.check(reply)
        right_count += right
        if not right:
            failures.setdefault(item.group, []).append(item.id)
        wrong_values.update(value.strip().lower() for value in wrong)
    per_group = Counter(item.group for item, _ in checked)
    return {
        "accuracy": right_count / len(checked),
        "right": right_count,
        "checked": len(checked),
        "failures": failures,
        "group_accuracy": {g: 1 - len(failures.get(g, [])) / n for g, n in sorted(per_group.items())},
        "wrong_values": dict(wrong_values.most_common()),
    }
