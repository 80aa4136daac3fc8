"""The facts probe's dev and test halves, scored: the one place the halves are split (``facts_halves``) and scored
(``half_scores``: accuracy, wrong values and neighbour errors per half). The before/after evaluation, the checkpoint
choice and the studies read these."""

from __future__ import annotations

import re

from . import probes


def facts_halves(items: list[probes.ProbeItem]) -> dict[str, set[str]]:
    """The facts probe's dev and test halves (``facts.probe_split``: fact-balanced, by a stable hash), as ids;
    empty when the probe has fewer than two questions."""
    from ..facts.probe_split import split_probe

    if len(items) < 2:
        return {}
    dev, test = split_probe([{"fact": item.group, "id": item.id} for item in items])
    return {"dev": {row["id"] for row in dev}, "test": {row["id"] for row in test}}


def neighbour_error(item: probes.ProbeItem, reply: str, neighbours: dict[str, tuple[str, ...]],
                    fact_patterns: dict[str, tuple[str, ...]]) -> bool:
    """Whether ``reply`` gets ``item`` wrong by stating a neighbour fact's value: every value pattern of one of the
    asked fact's confusable facts (``facts.neighbours``) matches it, and the reply is not right."""
    if item.check(reply)[0]:
        return False
    return any(fact_patterns.get(other) and all(re.search(pattern, reply, re.IGNORECASE)
                                                for pattern in fact_patterns[other])
               for other in neighbours.get(item.group, ()))


def half_scores(items: list[probes.ProbeItem], replies: list[str], halves: dict[str, set[str]],
                neighbours: dict[str, tuple[str, ...]] | None = None,
                fact_patterns: dict[str, tuple[str, ...]] | None = None) -> dict:
    """Per half of the facts probe (``facts_halves``): ``facts_<half>_accuracy``, ``facts_<half>_wrong_values``
    (questions answered with a value a ``reject`` regex names) and, given the sheet's neighbours and value
    patterns, ``facts_<half>_neighbour_errors`` (questions answered with a neighbour's value). The one place the
    halves are scored: the evaluation and the studies read these."""
    result = {}
    for half, ids in halves.items():
        chosen = [(item, reply) for item, reply in zip(items, replies, strict=True) if item.id in ids and item.checkable]
        if not chosen:
            continue
        checked = [item.check(reply) for item, reply in chosen]
        result[f"facts_{half}_accuracy"] = sum(right for right, _ in checked) / len(checked)
        result[f"facts_{half}_wrong_values"] = sum(bool(wrong) for _, wrong in checked)
        if neighbours is not None and fact_patterns is not None:
            result[f"facts_{half}_neighbour_errors"] = sum(neighbour_error(item, reply, neighbours, fact_patterns)
                                                           for item, reply in chosen)
    return result
