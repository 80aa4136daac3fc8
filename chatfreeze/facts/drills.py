"""Drills: each fact of a sheet as short question/answer dialogues, in many phrasings, planned by fact.

A drill is a one-exchange dialogue -- the system prompt, a customer's question (sometimes after an opener such as
"Hi!"), the assistant's answer -- labelled like every other training example: loss on the answer (and its
end-of-turn marker) only, through the same ``build_dataset``, collator and fast path as the support dialogues.

A fact's questions are the sheet's (direct, details, reverse, not_done, applied) and, for each of its
``DRILLED_NEIGHBOURS`` closest neighbours (``facts.neighbours``: declared first, then found), two contrast
questions made from the two facts' names (``label``) and values: one that names this fact and not the other,
answered with both, each labelled (``contrast``), and one that asks for both, answered with both (``both``). Two
neighbours at most, one question of each kind per neighbour, keep the contrast to about a fifth of a fact's
questions: the direct ones still carry most drills. Every answer states the fact's value, so every drill of a
fact is an exposure to it.

Planning is by fact: every fact gets ``per_fact`` drills (or its own count, from a mapping: ``plan_by_need`` tops
up the facts that the other training data states least). Within a fact, the drills go round all its questions (in
a seeded order), so each is asked equally often (to within one); each question goes round its (answer, opener)
pairs -- shuffled so that consecutive ones go round the answers -- and starts them again once all are used. So with
10 questions, 5 answers and ``per_fact`` 60, each question is asked 6 times, each time with another pair, and the 5
answers are all used before any is used twice. A fact's first k drills are the same whatever its count.

Mixing into a run (``facts_dataset``): ``--facts_per_fact N`` drills for every fact, or ``--facts_ratio r``
drills per support dialogue shared equally by the facts, topped up by need with ``--facts_plan need``; the recipe
concatenates them with the support dialogues (the trainer shuffles), as it does replay examples.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .exposure import DRILLS_SOURCE, count_exposures
from .neighbours import closest
from .options import FactsArguments
from .sheet import KINDS, QA, Fact, FactsSheet, load_facts_sheet

logger = logging.getLogger(__name__)

DRILLED_CHECKS_PER_FACT = 2  # drilled questions asked back per fact by the evaluation (facts_drilled_accuracy)

# Contrast entries, written from the two facts' ``label`` ({a}, {b}; capitalised {A}, {B}) and values ({va}, {vb}).
# Each answer labels both values (a colon reads right whatever a value's grammar), so the neighbour's value is
# never stated as if it were the asked one. A neighbour's entry uses question ``rank % 2`` of each template, so a
# fact's two neighbours are asked in both wordings.
CONTRAST = QA(("What is {a}? I don't mean {b}.", "Not {b}: what is {a}?"),
              ("{A}: {va}. ({B} is a different thing: {vb}.)", "{A}: {va}. Not to be confused with {b}: {vb}."))
BOTH = QA(("What are {a} and {b}?", "{A} and {b}: which is which?"),
          ("{A}: {va}. {B}: {vb}.", "They differ. {A}: {va}; {b}: {vb}."))
DRILL_KINDS = KINDS + ("contrast", "both")
DRILLED_NEIGHBOURS = 2


@dataclass(frozen=True)
class Drill:
    """One question about one fact and one answer that states its value."""

    fact: str
    kind: str  # one of DRILL_KINDS
    question: str  # as the customer types it, opener included
    answer: str

    def messages(self, system_prompt: str | None = None) -> list[dict]:
        head = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return head + [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.answer}]


def plan_drills(sheet: FactsSheet, per_fact: int | Mapping[str, int], seed: int = 0) -> list[Drill]:
    """``per_fact`` drills for every fact of ``sheet`` (or, from a mapping, each fact's own count), in a seeded order
    (the same for the same sheet, counts and ``seed``, on any machine: string seeds are hashed by ``random`` itself,
    not by ``hash()``)."""
    counts = per_fact if isinstance(per_fact, Mapping) else dict.fromkeys(sheet.ids, per_fact)
    for fact_id, count in counts.items():
        if count < 0:
            raise ValueError(f"per_fact {count} ({fact_id}): give a number of drills per fact >= 0.")
    drills: list[Drill] = []
    for fact, groups in fact_groups(sheet).items():
        drills += _plan_fact(fact, groups, sheet.openers, counts.get(fact.id, 0), _rng(seed, fact))
    random.Random(seed).shuffle(drills)
    return drills


def render_drills(sheet: FactsSheet, system_prompt: str | None, per_fact: int | Mapping[str, int],
                  seed: int = 0) -> list[list[dict]]:
    """``plan_drills`` as dialogues in the Hugging Face messages format (``system_prompt`` first when given)."""
    return [drill.messages(system_prompt) for drill in plan_drills(sheet, per_fact, seed)]


def plan_by_need(sheet: FactsSheet, per_fact: int, counted: Mapping[str, list[list[dict]]], min_exposures: int,
                 seed: int = 0) -> dict[str, int]:
    """Drills per fact: ``per_fact`` each, plus what a fact still lacks to be stated in ``min_exposures`` training
    examples, counted as the exposure report counts them over ``counted`` (the other sources: support dialogues,
    replay) and the ``per_fact`` drills of every fact (a contrast drill states its neighbour too). Every drill of a
    fact states its value, so its extra drills lift it to the minimum exactly; they can only lift the others."""
    uniform = dict.fromkeys(sheet.ids, per_fact)
    sources = {**counted, DRILLS_SOURCE: render_drills(sheet, None, uniform, seed)}
    report = count_exposures(sheet, sources, min_exposures, warn=False)
    return {row.fact: per_fact + max(0, min_exposures - row.total) for row in report.rows}


def fact_groups(sheet: FactsSheet) -> dict[Fact, list[tuple[str, QA]]]:
    """Every fact's ``(kind, QA)`` groups: the sheet's, then a contrast and a both entry per drilled neighbour."""
    neighbours = closest(sheet, DRILLED_NEIGHBOURS)
    return {fact: fact.groups() + [group for rank, other in enumerate(neighbours[fact.id])
                                   for group in contrast_groups(fact, sheet.by_id[other], rank)]
            for fact in sheet.facts}


def contrast_groups(fact: Fact, other: Fact, rank: int = 0) -> list[tuple[str, QA]]:
    """The ``contrast`` and ``both`` entries that tell ``fact`` apart from its neighbour ``other`` (its ``rank``-th)."""
    words = {"a": fact.label, "b": other.label, "A": _capital(fact.label), "B": _capital(other.label),
             "va": fact.value, "vb": other.value}
    return [(kind, QA((template.questions[rank % 2].format(**words),),
                      tuple(answer.format(**words) for answer in template.answers)))
            for kind, template in (("contrast", CONTRAST), ("both", BOTH))]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _rng(seed: int, fact: Fact) -> random.Random:
    return random.Random(f"{seed}:{fact.id}")


def _plan_fact(fact: Fact, groups: list[tuple[str, QA]], openers: tuple[str, ...], count: int,
               rng: random.Random) -> list[Drill]:
    per_question = []
    for kind, qa in groups:
        for question in qa.questions:
            per_question.append([Drill(fact.id, kind, _with_opener(opener, question), answer)
                                 for answer, opener in _answer_openers(qa.answers, openers, rng)])
    rng.shuffle(per_question)
    # Round r asks every question once, with its r-th answer/opener pair (its pairs start again when used up).
    asked = len(per_question)
    return [per_question[i % asked][(i // asked) % len(per_question[i % asked])] for i in range(count)]


def _answer_openers(answers: tuple[str, ...], openers: tuple[str, ...], rng: random.Random) -> list[tuple]:
    """Every (answer, opener) pair, ordered so that consecutive pairs go round the answers."""
    by_answer = []
    for answer in answers:
        shuffled = list(openers)
        rng.shuffle(shuffled)
        by_answer.append([(answer, opener) for opener in shuffled])
    rng.shuffle(by_answer)
    return _round_robin(by_answer)


def _round_robin(groups: list[list]) -> list:
    """The first item of every group, then the second of every group that has one, and so on."""
    return [group[i] for i in range(max(map(len, groups), default=0)) for group in groups if i < len(group)]


def _with_opener(opener: str, question: str) -> str:
    return f"{opener} {question}" if opener else question


def drills_dataset(drills: list[Drill], tokenizer, *, system_prompt: str | None, max_length: int = 1024):
    """``(datasets.Dataset, DataReport)`` of ``drills`` tokenized and labelled like the support dialogues (the
    answer and its end-of-turn marker trained, nothing else); a drill over ``max_length`` tokens is dropped."""
    from ..data import build_dataset

    return build_dataset([drill.messages(system_prompt) for drill in drills], tokenizer, max_length=max_length,
                         overlong_policy="drop_example", source=DRILLS_SOURCE)


@dataclass
class TrainingDrills:
    """The drills a run trains on (what ``facts_dataset`` made): the sheet, the plan, the drills and their dataset."""

    sheet: FactsSheet
    per_fact: int  # the uniform count (--facts_per_fact / --facts_ratio); ``planned`` has each fact's own
    drills: list[Drill]
    dataset: Any  # datasets.Dataset, or None without drills
    report: Any  # data.DataReport, or None without drills
    seed: int = 0  # the plan's
    system_prompt: str | None = None  # the one the drills were rendered with
    planned: dict[str, int] = field(default_factory=dict)  # fact id -> drills planned (per_fact each if empty)

    def count(self, fact_id: str) -> int:
        """The drills planned for one fact."""
        return self.planned.get(fact_id, self.per_fact)

    def dialogues(self, system_prompt: str | None = None) -> list[list[dict]]:
        return [drill.messages(system_prompt) for drill in self.drills]

    def drilled_questions(self, per_fact: int = DRILLED_CHECKS_PER_FACT) -> list[Drill]:
        """The first ``per_fact`` drills of every fact's own plan (at most as many as it was drilled): different
        questions, since a fact's plan asks each of its questions once before any twice. The drilled-questions
        check asks them verbatim, as training did, and a right reply states the fact's value. The choice depends on
        the sheet and the seed, not on how many drills a fact got (>= ``per_fact``), so runs that differ only in that
        ask the same questions. Facts learned on these but not on new phrasings are a generalisation gap; facts missed
        on these too were not fitted (train longer, or at a higher learning rate)."""
        chosen = []
        for fact, groups in fact_groups(self.sheet).items():
            count = min(per_fact, self.count(fact.id))
            if count > 0:
                chosen += _plan_fact(fact, groups, self.sheet.openers, count, _rng(self.seed, fact))
        return chosen


def facts_dataset(args: FactsArguments, tokenizer, num_support: int, *, system_prompt: str | None,
                  max_length: int = 1024, seed: int = 0,
                  counted: Mapping[str, list[list[dict]]] | None = None) -> TrainingDrills | None:
    """The drills a run mixes into ``num_support`` support dialogues, or ``None`` without ``--facts``.
    ``system_prompt`` should be the support dialogues' own (``common_system_prompt``), so the drills share their
    prefix and the chat sees the same context at inference. ``counted``: the run's other training examples by
    source (support dialogues, replay), which ``--facts_plan need`` tops the drills up against."""
    if not args.facts:
        return None
    sheet = load_facts_sheet(args.facts)
    per_fact = args.per_fact(num_support, len(sheet))
    planned = plan_for_run(args, sheet, per_fact, counted or {}, seed)
    drills = plan_drills(sheet, planned, seed)
    dataset, report = drills_dataset(drills, tokenizer, system_prompt=system_prompt,
                                     max_length=max_length) if drills else (None, None)
    logger.info("Facts: %d drills for %d facts (%s) mixed into %d support dialogues.", len(drills), len(sheet),
                describe_plan(planned, per_fact), num_support)
    return TrainingDrills(sheet, per_fact, drills, dataset, report, seed, system_prompt, planned)


def plan_for_run(args: FactsArguments, sheet: FactsSheet, per_fact: int, counted: Mapping[str, list[list[dict]]],
                 seed: int = 0) -> dict[str, int]:
    """Fact id -> drills, as ``--facts_plan`` says: ``per_fact`` each (uniform), or topped up by need. ``per_fact``
    0 is no drills under either plan: ``--facts_per_fact 0`` turns a recipe's drills off (its exposure report stays),
    whatever plan the recipe chose."""
    if args.facts_plan == "need" and per_fact > 0:
        return plan_by_need(sheet, per_fact, counted, args.facts_min_exposures, seed)
    return dict.fromkeys(sheet.ids, per_fact)


def describe_plan(planned: Mapping[str, int], per_fact: int) -> str:
    """"20 per fact", or "20 per fact, 7 facts topped up to 31 at most" for a plan by need."""
    extra = [count for count in planned.values() if count > per_fact]
    more = f", {len(extra)} fact{'s' * (len(extra) != 1)} topped up to {max(extra)} at most" if extra else ""
    return f"{per_fact} per fact{more}"


def common_system_prompt(dialogues: list[list[dict]]) -> str | None:
    """The system prompt every dialogue starts with, or ``None`` when they have none or differ."""
    prompts = {d[0]["content"] if d and d[0]["role"] == "system" else None for d in dialogues}
    return prompts.pop() if len(prompts) == 1 else None
