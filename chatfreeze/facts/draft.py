"""A draft facts sheet and its probe from FAQ (and catalogue) entries, with no model: ``draft_facts``.

For each entry: the values its answer states (``values.find_values``) become the fact's patterns; the probe's
questions are made **first**, by probe rules only (``phrasing.probe_questions``); then the drill questions and the
answer wordings; every drill question that ``overlap.find_overlaps`` flags against any probe question is dropped
(whatever thresholds it applies), as is one that another fact already asks. The probe's ``reject`` regexes are the
other entries' values of the same kinds: the wrong values a model is likely to give. An entry whose answer has no
checkable value is drilled on its answer (its patterns are words of it, a guess) and is not in the probe.
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass, field

from .faq import FaqEntry, FaqError
from .overlap import find_overlaps, normalise
from .phrasing import (
    KIND_TOPICS,
    NO_FRAMES,
    STOPWORDS,
    YES_FRAMES,
    answer_wordings,
    drill_questions,
    keywords_of,
    probe_questions,
    reverse_answers,
    reverse_questions,
    topic_of,
)
from .probe_split import split_probe
from .values import Value, find_values, wrong_value_text

logger = logging.getLogger(__name__)

MIN_SCORED = 2  # entries with a checkable value needed to carve a probe (and give each a neighbour)
PROBE_PER_FACT = 6  # held-out questions per scored fact: 3 dev + 3 test
MAX_REJECT = 8  # wrong-value regexes per probe question
GOAL_QUESTIONS, GOAL_ANSWERS = 10, 4  # below these a fact is flagged in the table
MIN_KEPT_QUESTIONS = 3  # fewer drill questions left than this: the probe questions that took them go instead


@dataclass
class DraftFact:
    """One fact of the draft: what the sheet holds, and the notes the YAML carries as comments."""

    id: str
    entry: FaqEntry
    values: list[Value]
    value: str
    patterns: list[str]
    questions: list[tuple[str, str]]  # (rule, question)
    answers: list[str]
    reverse: list[tuple[list[str], list[str]]] = field(default_factory=list)  # (questions, answers) groups
    probe: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # where a rule guessed
    warnings: list[str] = field(default_factory=list)

    @property
    def scored(self) -> bool:
        return bool(self.probe)

    def all_questions(self) -> list[str]:
        return [q for _, q in self.questions] + [q for questions, _ in self.reverse for q in questions]


@dataclass
class Draft:
    company: str | None
    facts: list[DraftFact]
    dev: list[dict]
    test: list[dict]
    dropped_overlaps: int = 0

    @property
    def probe(self) -> list[dict]:
        return self.dev + self.test


def draft_facts(entries: list[FaqEntry], company: str | None = None, seed: int = 0) -> Draft:
    """The draft sheet and probe of ``entries`` (read by ``faq.read_faq`` / ``catalogue.read_catalogue``)."""
    found = [[] if entry.literal else _dedupe(find_values(entry.answer)) for entry in entries]
    _check_conflicts(entries, found)
    scored = sum(bool(values) or bool(entry.literal) for entry, values in zip(entries, found, strict=True))
    if scored < MIN_SCORED:
        where = entries[0].where.rsplit(":", 1)[0] if entries else "FAQ"
        raise FaqError(f"{where}: too small to carve a probe from: {scored} entr{'y' if scored == 1 else 'ies'} "
                       f"with a checkable value (a price, time, duration, email, ...); give at least {MIN_SCORED}.")
    ids: set[str] = set()
    facts = [_fact(entry, values, _fact_id(entry, values, ids), company, seed, _neighbour(index, found))
             for index, (entry, values) in enumerate(zip(entries, found, strict=True))]
    dropped = _drop_overlaps(facts)
    for fact in facts:
        _check_goals(fact)
    items = _probe_items(facts)
    dev, test = split_probe(items)
    return Draft(company, facts, dev, test, dropped)


def _dedupe(values: list[Value]) -> list[Value]:
    kept: dict[tuple[str, str], Value] = {}
    for value in values:
        kept.setdefault((value.kind, value.key), value)
    return list(kept.values())


def _fact_id(entry: FaqEntry, values: list[Value], taken: set[str]) -> str:
    words = keywords_of(topic_of(entry.question))
    if len(words) == 1 and words[0].endswith("ing") and values:
        words = [values[0].kind]  # "writing" names nothing; "email" does
    base = entry.slug or "_".join(words[:3]) or "entry"
    base = re.sub(r"[^a-z0-9_]+", "_", base.lower()).strip("_")[:40] or "entry"
    fact_id, n = base, 2
    while fact_id in taken:
        fact_id, n = f"{base}_{n}", n + 1
    taken.add(fact_id)
    return fact_id


def _neighbour(index: int, found: list[list[Value]]) -> Value | None:
    """The next entry's value (in FAQ order, wrapping round) of the same kind as entry ``index``'s single value: the
    wrong value its reverse question asks about (a customer's likely confusion), or None."""
    if len(found[index]) != 1:
        return None
    value = found[index][0]
    order = found[index + 1:] + found[:index]
    return next((v for others in order for v in others
                 if v.kind == value.kind and v.key != value.key and _unit(v) == _unit(value)), None)


def _unit(value: Value) -> str:
    # "80 kg" is no neighbour of "70 km": quantities and durations compare within a unit.
    return value.key.split(" ", 1)[-1] if value.kind in ("quantity", "duration") else ""


def _fact(entry: FaqEntry, values: list[Value], fact_id: str, company: str | None, seed: int,
          neighbour: Value | None = None) -> DraftFact:
    rng = random.Random(f"{seed}:{fact_id}")
    topic = entry.topic or topic_of(entry.question)
    if entry.literal:
        value, patterns, notes = _literal(entry.literal)
        kind = None
    elif values:
        value, patterns, notes = _value_sentence(entry.answer, values), [v.pattern for v in values], []
        kind = values[0].kind
        notes.append("values found: " + "; ".join(f"{v.kind} {v.text!r}" for v in values))
    else:
        value, patterns, notes = _no_value(entry.answer)
        kind = None
    if len(topic.split()) == 1 and topic.endswith("ing") and kind in KIND_TOPICS:
        topic = KIND_TOPICS[kind]  # a lone verb ("writing") says nothing; the kind says what is asked
    # The probe first: its questions come from rules the drills never use, before any drill exists.
    probe = probe_questions(topic, kind, random.Random(f"{seed}:probe:{fact_id}"), PROBE_PER_FACT) \
        if values or entry.literal else []
    questions = drill_questions(entry.question, topic, kind, company, rng)
    questions += [("other name", q) for q in entry.more]
    sentence = entry.answer if entry.literal else value  # a catalogue cell alone is no sentence
    fact = DraftFact(fact_id, entry, values, value, patterns, questions,
                     answer_wordings(entry.answer, sentence, company, rng), probe=probe, notes=notes)
    if len(values) == 1:
        wrong = neighbour.text if neighbour else wrong_value_text(values[0])
        fact.reverse = _reverse(topic, values[0], wrong, value, rng)
        if wrong:
            fact.notes.append(f"reverse: 'no' is asked with {wrong} ("
                              f"{'another entry' + chr(39) + 's value' if neighbour else 'a made-up value'})")
    if any(v.kind == "date" and "/" in v.text for v in values):
        fact.notes.append("a date written with '/' was read as day/month/year: check it")
    return fact


def _value_sentence(answer: str, values: list[Value]) -> str:
    """The answer's sentences that state its values (all of them, in order)."""
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9€£$])", answer)
    kept = [s for s in sentences if any(re.search(v.pattern, s, re.IGNORECASE) for v in values)]
    text = " ".join(kept)
    return text if all(re.search(v.pattern, text, re.IGNORECASE) for v in values) else answer


def _no_value(answer: str) -> tuple[str, list[str], list[str]]:
    first = re.split(r"(?<=[.!?])\s+", answer)[0]
    candidates = [w for w in re.findall(r"[A-Za-z][a-z-]{4,}", first) if w.lower() not in STOPWORDS]
    chosen = sorted(dict.fromkeys(candidates), key=len, reverse=True)[:2]
    patterns = [rf"\b{re.escape(word.lower())}" for word in chosen] or [re.escape(first.split()[0].lower())]
    return first, patterns, ["not scored: no checkable value; the patterns are words of the answer (a guess): "
                             "make them what a right reply must say"]


def _literal(cell: str) -> tuple[str, list[str], list[str]]:
    items = [item.strip() for item in re.split(r",|/|;|\band\b|\bor\b", cell) if item.strip()]
    patterns = [r"\b" + r"\s+".join(map(re.escape, item.lower().split())) + r"\b" for item in items[:6]]
    return cell, patterns, ["no value of a known kind: each item of the cell is a pattern (a guess)"]


def _reverse(topic: str, value: Value, wrong: str | None, sentence: str,
             rng: random.Random) -> list[tuple[list[str], list[str]]]:
    yes, no = reverse_questions(topic, value.text, wrong, rng)
    groups = [(yes, reverse_answers(sentence, YES_FRAMES, rng))]
    if no:
        groups.append((no, reverse_answers(sentence, NO_FRAMES, rng)))
    return groups


def _check_conflicts(entries: list[FaqEntry], found: list[list[Value]]) -> None:
    """Two entries about the same thing (the same topic words) that state different values of one kind."""
    seen: dict[frozenset, int] = {}
    for index, entry in enumerate(entries):
        subject = frozenset(w for w in keywords_of(topic_of(entry.question)))
        if not subject or entry.literal:
            continue
        if subject in seen:
            other = seen[subject]
            for kind in {v.kind for v in found[index]} & {v.kind for v in found[other]}:
                mine = {v.key: v.text for v in found[index] if v.kind == kind}
                theirs = {v.key: v.text for v in found[other] if v.kind == kind}
                if not mine.keys() & theirs.keys():
                    raise FaqError(f"{entry.where}: states {', '.join(mine.values())} where "
                                   f"{entries[other].where} states {', '.join(theirs.values())} for the same "
                                   f"question ({' '.join(sorted(subject))}); keep one value, or word the "
                                   "questions so they ask different things.")
        seen.setdefault(subject, index)


def _drop_overlaps(facts: list[DraftFact]) -> int:
    """Drop every drill question that overlaps a probe question (``find_overlaps``, any fact) or that an earlier
    fact already asks; returns how many were dropped."""
    probe = [q for fact in facts for _, q in fact.probe]
    drills = [q for fact in facts for q in fact.all_questions()]
    overlaps = find_overlaps(drills, probe)
    flagged = {overlap.drill for overlap in overlaps}
    for fact in facts:
        mine = {q for q in fact.all_questions() if q in flagged}
        if len(fact.all_questions()) - len(mine) < MIN_KEPT_QUESTIONS:
            # A fact left with (almost) no phrasing cannot be drilled: the probe questions too close to its own go.
            culprits = {overlap.probe for overlap in overlaps if overlap.drill in mine}
            for other in facts:
                other.probe = [(rule, q) for rule, q in other.probe if q not in culprits]
            flagged -= mine
            fact.warnings.append(f"{len(culprits)} probe question(s) dropped: too close to its phrasings")
    asked: set[str] = set()
    dropped = 0

    def keep(question: str) -> bool:
        nonlocal dropped
        key = normalise(question)
        if question in flagged or key in asked or not key:
            dropped += 1
            return False
        asked.add(key)
        return True

    for fact in facts:
        fact.questions = [(rule, q) for rule, q in fact.questions if keep(q)]
        fact.reverse = [(kept, answers) for questions, answers in fact.reverse
                        if (kept := [q for q in questions if keep(q)])]
    if dropped:
        logger.info("Dropped %d drill questions that overlap a probe question or repeat another.", dropped)
    return dropped


def _check_goals(fact: DraftFact) -> None:
    if not fact.questions:  # its direct questions all repeat another entry's
        raise FaqError(f"{fact.entry.where}: every question made for this entry is asked by another entry; "
                       "reword the FAQ question.")
    if len(fact.all_questions()) < GOAL_QUESTIONS:
        fact.warnings.append(f"{len(fact.all_questions())} questions (< {GOAL_QUESTIONS})")
    if len(fact.answers) < GOAL_ANSWERS:
        fact.warnings.append(f"{len(fact.answers)} answers (< {GOAL_ANSWERS})")
    if not fact.scored:
        fact.warnings.append("not scored (no value)")


def _probe_items(facts: list[DraftFact]) -> list[dict]:
    items = []
    for fact in facts:
        if not fact.scored:
            continue
        reject = _neighbours(fact, facts)
        for index, (_, question) in enumerate(fact.probe, start=1):
            items.append({"id": f"{fact.id}-{index}", "fact": fact.id, "question": question,
                          "expect": list(fact.patterns), "reject": reject})
    return items


def _neighbours(fact: DraftFact, facts: list[DraftFact]) -> list[str]:
    """Other facts' values of this fact's kinds that none of its own answers state: a reply stating one is
    wrong."""
    kinds, keys = {v.kind for v in fact.values}, {(v.kind, v.key) for v in fact.values}
    texts = fact.answers + [fact.value]
    reject: list[str] = []
    for other in facts:
        for value in other.values:
            # Weekdays are left out: a reply names other days in passing ("closed on Sundays") and is not wrong.
            if other is fact or value.kind not in kinds - {"weekday"} or (value.kind, value.key) in keys:
                continue
            if value.pattern not in reject and not any(re.search(value.pattern, t, re.IGNORECASE) for t in texts):
                reject.append(value.pattern)
    return reject[:MAX_REJECT]


# ------------------------------------------------------------------------------------------------------------
# writing: the sheet as readable YAML with comments, the probe as JSONL, the table
# ------------------------------------------------------------------------------------------------------------


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _regex(pattern: str) -> str:
    return "'" + pattern.replace("'", "''") + "'"  # single-quoted: backslashes stay as written


def sheet_yaml(draft: Draft, source: str) -> str:
    lines = [f"# Draft facts sheet made by `chatfreeze facts init` from {source}: read it, fix what a rule guessed",
             "# (the comments say where), then train with it. Format: docs/facts_sheet.md. Its probe's questions",
             "# were made first, by other rules; no question here overlaps one of them.", ""]
    if draft.company:
        lines.append(f"company: {_q(draft.company)}")
    lines.append("facts:")
    for fact in draft.facts:
        lines += _fact_yaml(fact)
    return "\n".join(lines) + "\n"


def _fact_yaml(fact: DraftFact) -> list[str]:
    lines = [f"  # {fact.entry.where}: {fact.entry.question}"] + [f"  # {note}" for note in fact.notes]
    lines += [f"  - id: {_q(fact.id)}", f"    value: {_q(fact.value)}", "    patterns:"]
    lines += [f"      - {_regex(p)}" for p in fact.patterns]
    lines.append("    questions:")
    rule = None
    for this_rule, question in fact.questions:
        if this_rule != rule:
            lines.append(f"      # {this_rule}")
            rule = this_rule
        lines.append(f"      - {_q(question)}")
    lines.append("    answers:")
    lines += [f"      - {_q(answer)}" for answer in fact.answers]
    if fact.reverse:
        lines.append("    reverse:  # asked back: yes to its value, no to a wrong one")
        for questions, answers in fact.reverse:
            lines.append(f"      - questions: [{', '.join(map(_q, questions))}]")
            lines.append(f"        answers: [{', '.join(map(_q, answers))}]")
    return lines + [""]


def probe_jsonl(draft: Draft) -> str:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in draft.probe)


def format_table(draft: Draft) -> str:
    """One line per entry: values found, questions, answers, probe questions (dev/test), warnings."""
    dev = {fact.id: sum(item["fact"] == fact.id for item in draft.dev) for fact in draft.facts}
    test = {fact.id: sum(item["fact"] == fact.id for item in draft.test) for fact in draft.facts}
    width = max(len("entry"), *(len(fact.id) for fact in draft.facts))
    header = f"{'entry':<{width}}  {'values':<32}  {'questions':>9}  {'answers':>7}  {'probe':>7}  warnings"
    lines = [header, "-" * len(header)]
    for fact in draft.facts:
        values = ", ".join(v.text for v in fact.values) or ("(literal)" if fact.entry.literal else "-")
        values = values if len(values) <= 32 else values[:29] + "..."
        probe = f"{dev[fact.id]}+{test[fact.id]}" if fact.scored else "-"
        lines.append(f"{fact.id:<{width}}  {values:<32}  {len(fact.all_questions()):>9}  {len(fact.answers):>7}  "
                     f"{probe:>7}  {'; '.join(fact.warnings)}")
    scored = sum(fact.scored for fact in draft.facts)
    lines.append(f"{len(draft.facts)} entries, {scored} scored; probe {len(draft.dev)} dev + {len(draft.test)} test "
                 f"questions; {draft.dropped_overlaps} drill questions dropped as too close to a probe question "
                 "or repeated.")
    return "\n".join(lines)
