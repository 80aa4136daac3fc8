"""Drills: each fact of a sheet as short question/answer dialogues, in many phrasings, planned by fact.

A drill is a one-exchange dialogue -- the system prompt, a customer's question (sometimes after an opener such as
"Hi!"), the assistant's answer -- labelled like every other training example: loss on the answer (and its
end-of-turn marker) only, through the same ``build_dataset``, collator and fast path as the support dialogues.

Planning is by fact, so a fact with many phrasings gets no more drills than one with few: every fact gets exactly
``per_fact`` drills. Within a fact, the drills go round all its question phrasings (direct, also, reverse and
not_done alike, in a seeded order), so each is asked equally often (to within one); each question goes round its
(answer, opener) pairs -- shuffled so that consecutive ones go round the answers -- and starts them again once all
are used. So with 10 questions, 5 answers and ``per_fact`` 60, each question is asked 6 times, each time with
another pair, and the 5 answers are all used before any is used twice.

Mixing into a run (``facts_dataset``): ``--facts_per_fact N`` drills for every fact, or ``--facts_ratio r``
drills per support dialogue shared equally by the facts; the recipe concatenates them with the support dialogues
(the trainer shuffles), as it does replay examples.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from .options import FactsArguments
from .sheet import Fact, FactsSheet, load_facts_sheet

logger = logging.getLogger(__name__)

FACTS_SOURCE = "facts drills"
DRILLED_CHECKS_PER_FACT = 2  # drilled questions asked back per fact by the evaluation (facts_drilled_accuracy)


@dataclass(frozen=True)
class Drill:
    """One question about one fact and one answer that states its value."""

    fact: str
    kind: str  # "ask", "also", "reverse" or "not_done"
    question: str  # as the customer types it, opener included
    answer: str

    def messages(self, system_prompt: str | None = None) -> list[dict]:
        head = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return head + [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.answer}]


def plan_drills(sheet: FactsSheet, per_fact: int, seed: int = 0) -> list[Drill]:
    """Exactly ``per_fact`` drills for every fact of ``sheet``, in a seeded order (the same for the same sheet,
    ``per_fact`` and ``seed``, on any machine: string seeds are hashed by ``random`` itself, not by ``hash()``)."""
    if per_fact < 0:
        raise ValueError(f"per_fact {per_fact}: give a number of drills per fact >= 0.")
    drills: list[Drill] = []
    for fact in sheet.facts:
        drills += _plan_fact(fact, sheet.openers, per_fact, random.Random(f"{seed}:{fact.id}"))
    random.Random(seed).shuffle(drills)
    return drills


def render_drills(sheet: FactsSheet, system_prompt: str | None, per_fact: int, seed: int = 0) -> list[list[dict]]:
    """``plan_drills`` as dialogues in the Hugging Face messages format (``system_prompt`` first when given)."""
    return [drill.messages(system_prompt) for drill in plan_drills(sheet, per_fact, seed)]


def _plan_fact(fact: Fact, openers: tuple[str, ...], per_fact: int, rng: random.Random) -> list[Drill]:
    per_question = []
    for kind, qa in fact.groups():
        for question in qa.questions:
            per_question.append([Drill(fact.id, kind, _with_opener(opener, question), answer)
                                 for answer, opener in _answer_openers(qa.answers, openers, rng)])
    rng.shuffle(per_question)
    # Round r asks every question once, with its r-th answer/opener pair (its pairs start again when used up).
    asked = len(per_question)
    return [per_question[i % asked][(i // asked) % len(per_question[i % asked])] for i in range(per_fact)]


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
                         overlong_policy="drop_example", source=FACTS_SOURCE)


@dataclass
class FactsData:
    """What ``facts_dataset`` made for a run: the sheet, the drills and their tokenized dataset."""

    sheet: FactsSheet
    per_fact: int
    drills: list[Drill]
    dataset: Any  # datasets.Dataset, or None without drills
    report: Any  # data.DataReport, or None without drills
    seed: int = 0  # the plan's
    system_prompt: str | None = None  # the one the drills were rendered with

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
        for fact in self.sheet.facts:
            count = min(per_fact, self.per_fact)
            if count > 0:
                chosen += _plan_fact(fact, self.sheet.openers, count, random.Random(f"{self.seed}:{fact.id}"))
        return chosen


def facts_dataset(args: FactsArguments, tokenizer, num_support: int, *, system_prompt: str | None,
                  max_length: int = 1024, seed: int = 0) -> FactsData | None:
    """The drills a run mixes into ``num_support`` support dialogues, or ``None`` without ``--facts``.
    ``system_prompt`` should be the support dialogues' own (``common_system_prompt``), so the drills share their
    prefix and the chat sees the same context at inference."""
    if not args.facts:
        return None
    sheet = load_facts_sheet(args.facts)
    per_fact = args.per_fact(num_support, len(sheet))
    drills = plan_drills(sheet, per_fact, seed)
    dataset, report = drills_dataset(drills, tokenizer, system_prompt=system_prompt,
                                     max_length=max_length) if drills else (None, None)
    logger.info("Facts: %d drills (%d per fact for %d facts) mixed into %d support dialogues.", len(drills),
                per_fact, len(sheet), num_support)
    return FactsData(sheet, per_fact, drills, dataset, report, seed, system_prompt)


def common_system_prompt(dialogues: list[list[dict]]) -> str | None:
    """The system prompt every dialogue starts with, or ``None`` when they have none or differ."""
    prompts = {d[0]["content"] if d and d[0]["role"] == "system" else None for d in dialogues}
    return prompts.pop() if len(prompts) == 1 else None
