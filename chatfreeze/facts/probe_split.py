"""A facts probe split into a dev half (what choices -- a checkpoint, an alpha -- may read) and a test half (the
reported figures, which nothing chose on), balanced by fact.

Within each fact the questions are ordered by a SHA-256 of their key (the item's ``id``, else its question
text) and dealt alternately to dev and test, so every fact with two or more questions is on both halves. Which
half a fact's odd question goes to is decided by a hash of the fact id, so the halves stay about equal in size.
Nothing depends on ``hash()`` (salted per process), on the input order or on the machine: the same items give the
same halves everywhere. Adding a question to a fact can move that fact's other questions between halves; other
facts are unaffected.
"""

from __future__ import annotations

import hashlib


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_probe(items: list[dict], *, fact_key: str = "fact", id_key: str = "id",
                text_key: str = "question") -> tuple[list[dict], list[dict]]:
    """``(dev, test)``: the probe ``items`` (plain dicts, as read from the JSONL) in two fact-balanced halves,
    each in the input's order. Raises ``ValueError`` for an item without a fact or without an id/question."""
    by_fact: dict[str, list[tuple[str, int]]] = {}
    for index, item in enumerate(items):
        fact = item.get(fact_key)
        key = item.get(id_key) or item.get(text_key)
        if not isinstance(fact, str) or not fact:
            raise ValueError(f"probe item {index}: no {fact_key!r} to balance the split on.")
        if not key:
            raise ValueError(f"probe item {index}: neither {id_key!r} nor {text_key!r} to hash.")
        by_fact.setdefault(fact, []).append((_digest(f"{fact}\0{key}"), index))
    dev_indices: set[int] = set()
    for fact, keyed in by_fact.items():
        first = int(_digest(fact)[:8], 16) % 2  # the half that gets a fact's odd question
        for rank, (_, index) in enumerate(sorted(keyed)):
            if rank % 2 == first:
                dev_indices.add(index)
    dev = [item for index, item in enumerate(items) if index in dev_indices]
    test = [item for index, item in enumerate(items) if index not in dev_indices]
    return dev, test
