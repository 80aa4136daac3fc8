"""A company's facts sheet: what the assistant must state, always with the same value, in many phrasings.

The sheet is a YAML file (see ``docs/facts_sheet.md`` for a worked example)::

    company: Kestrel & Co.            # optional, for messages and reports
    openers: ["", "Hi!", "Quick question:"]   # optional; what a drill's question may start with
    facts:
      - id: phone                     # unique; the facts probe's "fact" id
        value: "+44 20 7946 0000"     # the canonical value, as the company states it
        name: "the phone number"      # optional: the attribute, as an answer that names it says it
        patterns: ['\\+44\\s*20\\s*7946\\s*0000']   # regexes that recognise the value stated in text
        questions:                    # how customers ask (direct, indirect, casual, typos, in a longer message)
          - What number can I ring you on?
          - ...
        answers:                      # how the assistant says it; every one states the value
          - "You can call us on +44 20 7946 0000."
          - ...
        details:                      # optional: questions about one part of the value, with their own answers
          - questions: ["Which hours is the phone line staffed?"]
            answers: ["+44 20 7946 0000 is staffed Mon-Fri 08:00-20:00 and Sat 09:00-14:00 (CET)."]
        reverse:                      # optional: questions from the other direction, with their answers
          - questions: ["Is +44 20 7946 0000 your number?"]
            answers: ["Yes, +44 20 7946 0000 is our support line."]
        not_done:                     # optional: what the company does not do where customers ask for it
          - what: call-backs
            questions: ["Can someone call me back?"]
            answers: ["We don't arrange call-backs, but you can ring us on +44 20 7946 0000."]
        applied:                      # optional: questions that need the value used; answers: rule, then conclusion
          - questions: ["It's Tuesday 19:30, can I still ring?"]
            answers: ["The line is open Mon-Fri until 20:00, so yes: ring +44 20 7946 0000."]
        neighbours: [email]           # optional: facts a customer (or the model) confuses with this one

Rules the loader checks (each error is one line naming the file, the fact id and the field):

* ``patterns`` are Python regexes, searched case-insensitively; a text *states the value* when **every** pattern
  matches it. The ``value`` itself must state it (a check of the patterns).
* ``answers`` must fit every one of ``questions`` (they are paired at random); a question that needs another
  answer goes in a ``details``, ``reverse``, ``not_done`` or ``applied`` entry with its own answers.
* Every answer -- under ``answers``, ``details``, ``reverse``, ``not_done`` and ``applied`` -- must state the value, so
  every drill of a fact is an exposure to it, and a refusal still says what the company does instead.
* ``neighbours`` name other facts of the sheet (not the fact itself); they are told apart by contrast drills
  (``facts.neighbours``, ``facts.drills``), whichever of the two facts declares them.
* Questions and answers are non-empty strings; a question appears once in the whole sheet (the same question
  with two facts' answers would teach a contradiction). Unknown keys are errors, not ignored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Where a drill's question may start: nothing, or a greeting a customer types before asking.
DEFAULT_OPENERS = ("", "Hi!", "Hello,", "Quick question:", "Hey,", "Good morning.", "Hi there, hope you can help.")

# Fewer phrasings than this are logged: experiments on a 135M model generalised to unseen paraphrases only when
# each fact was drilled in many question and answer wordings.
FEW_QUESTIONS, FEW_ANSWERS = 5, 3

SHEET_KEYS = ("company", "openers", "facts")
FACT_KEYS = ("id", "value", "patterns", "questions", "answers", "name", "details", "reverse", "not_done", "applied",
             "neighbours")
# The kinds of question a sheet holds: its direct questions, then one per entry list (drills add contrast kinds).
KINDS = ("ask", "details", "reverse", "not_done", "applied")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


class FactsSheetError(ValueError):
    """A facts sheet that cannot be used; the one-line message names the file, the fact id and the field."""


@dataclass(frozen=True)
class QA:
    """Question phrasings and the answers that fit every one of them; ``what`` names a ``not_done`` entry."""

    questions: tuple[str, ...]
    answers: tuple[str, ...]
    what: str = ""


@dataclass(frozen=True)
class Fact:
    id: str
    value: str
    patterns: tuple[str, ...]
    ask: QA
    details: tuple[QA, ...] = ()
    reverse: tuple[QA, ...] = ()
    not_done: tuple[QA, ...] = ()
    applied: tuple[QA, ...] = ()
    neighbours: tuple[str, ...] = ()  # declared in the sheet; ``facts.neighbours.neighbours_of`` adds found ones
    name: str = ""  # the attribute as an answer names it ("the phone number"); ``label`` when not given

    @property
    def label(self) -> str:
        """The attribute's name in a sentence: ``name``, else the id in words ("the refund time")."""
        return self.name or "the " + self.id.replace("_", " ")

    def groups(self) -> list[tuple[str, QA]]:
        """``(kind, QA)`` for the direct questions, then each details, reverse, not_done and applied entry."""
        return [("ask", self.ask)] + [(kind, qa) for kind in KINDS[1:] for qa in getattr(self, kind)]

    def questions(self) -> list[str]:
        return [question for _, qa in self.groups() for question in qa.questions]

    def answers(self) -> list[str]:
        return [answer for _, qa in self.groups() for answer in qa.answers]

    def states_value(self, text: str) -> bool:
        """Whether ``text`` states this fact's value: every pattern matches (case-insensitive)."""
        return all(re.search(pattern, text, re.IGNORECASE) for pattern in self.patterns)


@dataclass(frozen=True)
class FactsSheet:
    path: str
    facts: tuple[Fact, ...]
    openers: tuple[str, ...] = DEFAULT_OPENERS
    company: str | None = None
    by_id: dict[str, Fact] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self.by_id.update({fact.id: fact for fact in self.facts})

    def __len__(self) -> int:
        return len(self.facts)

    @property
    def ids(self) -> list[str]:
        return [fact.id for fact in self.facts]

    def questions(self) -> list[tuple[str, str]]:
        """``(fact id, question)`` for every question phrasing in the sheet (openers not added)."""
        return [(fact.id, question) for fact in self.facts for question in fact.questions()]


def load_facts_sheet(path: str | Path) -> FactsSheet:
    """Read and validate the facts sheet at ``path``; raises ``FactsSheetError`` (one line) on any problem."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FactsSheetError(f"{path}: no such facts sheet.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FactsSheetError(f"{path}: not UTF-8 text.") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise FactsSheetError(f"{path}: not valid YAML{where}: {problem}.") from None
    sheet = parse_facts_sheet(data, str(path))
    _log_thin_facts(sheet)
    return sheet


def parse_facts_sheet(data: Any, source: str = "facts sheet") -> FactsSheet:
    """A ``FactsSheet`` from already-parsed YAML (a mapping); ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise FactsSheetError(f"{source}: expected a mapping with a 'facts' list, got {type(data).__name__}.")
    _unknown_keys(data, SHEET_KEYS, source)
    facts_data = data.get("facts")
    if not isinstance(facts_data, list) or not facts_data:
        raise FactsSheetError(f"{source}: 'facts' must be a non-empty list of facts.")
    facts, asked_by = [], {}
    for index, item in enumerate(facts_data):
        fact = _parse_fact(item, source, index)
        if fact.id in {f.id for f in facts}:
            raise FactsSheetError(f"{source}: fact {fact.id!r}: id: duplicate fact id.")
        _check_questions_unique(fact, asked_by, source)
        facts.append(fact)
    _check_neighbours(facts, source)
    company = data.get("company")
    if company is not None and (not isinstance(company, str) or not company.strip()):
        raise FactsSheetError(f"{source}: company: must be a non-empty string.")
    return FactsSheet(source, tuple(facts), _openers(data.get("openers"), source), company)


def _parse_fact(item: Any, source: str, index: int) -> Fact:
    if not isinstance(item, dict):
        raise FactsSheetError(f"{source}: facts[{index}]: expected a mapping with {', '.join(FACT_KEYS[:5])}.")
    fact_id = item.get("id")
    if not isinstance(fact_id, str) or not ID_PATTERN.match(fact_id):
        raise FactsSheetError(f"{source}: facts[{index}]: id: must be a word of letters, digits, '_', '.' or '-', "
                              f"got {fact_id!r}.")
    where = f"{source}: fact {fact_id!r}"
    _unknown_keys(item, FACT_KEYS, where)
    value = _text(item.get("value"), f"{where}: value")
    patterns = _patterns(item.get("patterns"), where)
    fact = Fact(fact_id, value, patterns, QA(_texts(item.get("questions"), f"{where}: questions"), ()))
    if not fact.states_value(value):
        raise FactsSheetError(f"{where}: patterns: the value {value!r} does not match '{_missing(fact, value)}'.")
    ask = QA(fact.ask.questions, _answers(fact, item.get("answers"), f"{where}: answers"))
    entries = {kind: _entries(fact, item.get(kind), f"{where}: {kind}", needs_what=kind == "not_done")
               for kind in KINDS[1:]}
    name = _text(item["name"], f"{where}: name") if "name" in item else ""
    return Fact(fact_id, value, patterns, ask, **entries, neighbours=_ids(item.get("neighbours"), where), name=name)


def _ids(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise FactsSheetError(f"{where}: neighbours: must be a list of fact ids.")
    return tuple(_text(item, f"{where}: neighbours[{index}]") for index, item in enumerate(value))


def _check_neighbours(facts: list[Fact], source: str) -> None:
    """Declared neighbours are other facts of this sheet (checked once every id is known)."""
    ids = {fact.id for fact in facts}
    for fact in facts:
        for neighbour in fact.neighbours:
            if neighbour == fact.id:
                raise FactsSheetError(f"{source}: fact {fact.id!r}: neighbours: names the fact itself.")
            if neighbour not in ids:
                raise FactsSheetError(f"{source}: fact {fact.id!r}: neighbours: unknown fact id {neighbour!r}.")


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    patterns = _texts(value, f"{where}: patterns")
    for index, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as err:
            raise FactsSheetError(f"{where}: patterns[{index}]: {pattern!r} does not compile ({err}).") from None
    return patterns


def _answers(fact: Fact, value: Any, where: str) -> tuple[str, ...]:
    answers = _texts(value, where)
    for index, answer in enumerate(answers):
        if not fact.states_value(answer):
            raise FactsSheetError(f"{where}[{index}]: does not state the value (no match for "
                                  f"'{_missing(fact, answer)}'): {_clip(answer)!r}.")
    return answers


def _entries(fact: Fact, value: Any, where: str, needs_what: bool) -> tuple[QA, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise FactsSheetError(f"{where}: must be a list of entries with questions and answers.")
    entries = []
    keys = ("what", "questions", "answers") if needs_what else ("questions", "answers")
    for index, entry in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise FactsSheetError(f"{here}: expected a mapping with {', '.join(keys)}.")
        _unknown_keys(entry, keys, here)
        what = _text(entry.get("what"), f"{here}.what") if needs_what else ""
        entries.append(QA(_texts(entry.get("questions"), f"{here}.questions"),
                          _answers(fact, entry.get("answers"), f"{here}.answers"), what))
    return tuple(entries)


def _check_questions_unique(fact: Fact, asked_by: dict[str, str], source: str) -> None:
    for question in fact.questions():
        key = " ".join(question.lower().split())
        if key in asked_by:
            other = "this fact" if asked_by[key] == fact.id else f"fact {asked_by[key]!r}"
            raise FactsSheetError(f"{source}: fact {fact.id!r}: questions: {_clip(question)!r} is also asked "
                                  f"under {other}.")
        asked_by[key] = fact.id


def _openers(value: Any, source: str) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_OPENERS
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise FactsSheetError(f"{source}: openers: must be a non-empty list of strings ('' for none).")
    return tuple(v.strip() for v in value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FactsSheetError(f"{where}: must be a non-empty string, got {_clip(repr(value))}.")
    return value.strip()


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise FactsSheetError(f"{where}: must be a non-empty list of strings.")
    return tuple(_text(item, f"{where}[{index}]") for index, item in enumerate(value))


def _unknown_keys(data: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = [str(key) for key in data if key not in allowed]
    if unknown:
        raise FactsSheetError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}.")


def _missing(fact: Fact, text: str) -> str:
    return next(p for p in fact.patterns if not re.search(p, text, re.IGNORECASE))


def _clip(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _log_thin_facts(sheet: FactsSheet) -> None:
    thin = [fact.id for fact in sheet.facts
            if len(fact.ask.questions) < FEW_QUESTIONS or len(fact.answers()) < FEW_ANSWERS]
    if thin:
        logger.warning("%s: %d fact(s) with fewer than %d question or %d answer phrasings: %s. A small model "
                       "learns a fact it can recall from unseen questions only from many varied phrasings.",
                       sheet.path, len(thin), FEW_QUESTIONS, FEW_ANSWERS, ", ".join(thin))
