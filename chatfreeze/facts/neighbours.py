"""Confusable facts ("neighbours"): pairs a customer -- or a model -- mixes up, such as the express and the standard
shipping price, or the phone number and the email address.

Most wrong replies of a drilled model state a neighbour's value instead of the asked one, so the drills contrast
neighbours (``facts.drills``) and the evaluation counts those errors (``facts_neighbour_errors``). A pair is a
neighbour pair when

* the sheet declares it (``neighbours: [ids]`` under either fact), or
* the two values are of the same kind (``facts.values.value_kinds``: two prices, two durations, ...) and the
  facts' questions share at least ``MIN_SHARED_KEYWORDS`` keywords. A fact's keywords are the content words
  (``overlap.content_words``) that at least ``KEYWORD_QUESTIONS`` of its direct questions use: what customers say
  when they ask for it ("express", "shipping", "cost"), not the words of one odd phrasing.

Both rules are symmetric, so ``neighbours_of`` is: b is in a's tuple exactly when a is in b's. ``closest`` orders
a fact's neighbours for the drills, which contrast only the first few: declared ones first, then found ones by
the keywords they share.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from itertools import combinations

from .overlap import content_words
from .sheet import Fact, FactsSheet

logger = logging.getLogger(__name__)

KEYWORD_QUESTIONS = 2
MIN_SHARED_KEYWORDS = 2

ValueKinds = Callable[[str], set[str]]


def neighbours_of(sheet: FactsSheet) -> dict[str, tuple[str, ...]]:
    """Fact id -> the ids of its neighbours (declared or found), in sheet order; every fact has an entry."""
    pairs = declared_pairs(sheet)
    kinds = _value_kinds()
    if kinds is not None:
        pairs |= found_pairs(sheet, kinds)
    return _as_map(sheet, pairs)


def closest(sheet: FactsSheet, limit: int) -> dict[str, tuple[str, ...]]:
    """Fact id -> at most ``limit`` of its neighbours: the declared ones, then the found ones with most keywords in
    common (ties in sheet order)."""
    declared = _as_map(sheet, declared_pairs(sheet))
    words = {fact.id: keywords(fact) for fact in sheet.facts}
    ranked = {}
    for fact_id, others in neighbours_of(sheet).items():
        found = sorted((other for other in others if other not in declared[fact_id]),
                       key=lambda other: -len(words[fact_id] & words[other]))  # sorted() is stable: sheet order
        ranked[fact_id] = (declared[fact_id] + tuple(found))[:limit]
    return ranked


def declared_pairs(sheet: FactsSheet) -> set[frozenset[str]]:
    """The pairs the sheet's ``neighbours`` keys name (the loader checked the ids)."""
    return {frozenset((fact.id, other)) for fact in sheet.facts for other in fact.neighbours}


def found_pairs(sheet: FactsSheet, value_kinds: ValueKinds) -> set[frozenset[str]]:
    """The pairs whose values share a kind and whose questions share keywords."""
    kinds = {fact.id: set(value_kinds(fact.value)) for fact in sheet.facts}
    words = {fact.id: keywords(fact) for fact in sheet.facts}
    return {frozenset((a.id, b.id)) for a, b in combinations(sheet.facts, 2)
            if kinds[a.id] & kinds[b.id] and len(words[a.id] & words[b.id]) >= MIN_SHARED_KEYWORDS}


def keywords(fact: Fact) -> set[str]:
    """The content words that at least ``KEYWORD_QUESTIONS`` of the fact's direct questions use."""
    counts = Counter(word for question in fact.ask.questions for word in content_words(question))
    return {word for word, count in counts.items() if count >= KEYWORD_QUESTIONS}


def _as_map(sheet: FactsSheet, pairs: set[frozenset[str]]) -> dict[str, tuple[str, ...]]:
    found: dict[str, set[str]] = {fact_id: set() for fact_id in sheet.ids}
    for pair in pairs:
        a, b = tuple(pair)
        found[a].add(b)
        found[b].add(a)
    order = {fact_id: index for index, fact_id in enumerate(sheet.ids)}
    return {fact_id: tuple(sorted(others, key=order.__getitem__)) for fact_id, others in found.items()}


def _value_kinds() -> ValueKinds | None:
    """``facts.values.value_kinds``, imported when first needed: found neighbours need it, declared ones do not."""
    try:
        from .values import value_kinds
    except ImportError:
        logger.debug("chatfreeze.facts.values is not available: only the sheet's declared neighbours are used.")
        return None
    return value_kinds
