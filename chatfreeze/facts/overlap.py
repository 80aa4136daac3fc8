"""Training questions that equal or nearly equal a held-out probe question, which would make the probe measure
recall of a seen sentence instead of knowledge of the fact.

Texts are compared after ``normalise``: lower case, every run of punctuation and white space collapsed to one
space. A drill question *overlaps* a probe question when, normalised,

* they are equal, or
* the Jaccard similarity of their sets of word 3-grams is at least ``JACCARD_THRESHOLD`` (0.4). One word replaced
  in a 12-word question removes 3 of its 10 3-grams (Jaccard 7/13 = 0.54), two adjacent words 4 (6/14 = 0.43):
  the same sentence with a word or two swapped is caught, a question that only shares a phrase ("how long do I")
  is not; or
* at least ``CONTAINMENT_THRESHOLD`` (0.8) of the shorter one's 3-grams are in the longer one, and it has at least
  ``MIN_CONTAINED_NGRAMS`` (4, i.e. six words) of them: a probe question pasted inside a longer drill message
  ("Hi! I have a question. <probe question> Thanks"), or the reverse. A shorter text ("How long do I have?") is
  too generic to count as a copy when another text contains it.

Texts shorter than three words are compared on their whole normalised text only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

NGRAM = 3
JACCARD_THRESHOLD = 0.4
CONTAINMENT_THRESHOLD = 0.8
MIN_CONTAINED_NGRAMS = 4


def normalise(text: str) -> str:
    """Lower case, punctuation and white space collapsed to single spaces, trimmed."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def word_ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """The distinct word ``n``-grams of the normalised text (the whole text as one gram when shorter)."""
    words = normalise(text).split()
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class Overlap:
    drill: str
    probe: str
    how: str  # "equal", "jaccard" or "containment"
    score: float  # 1.0 for equal; else the similarity that crossed its threshold


def compare(drill: str, probe: str, *, jaccard: float = JACCARD_THRESHOLD,
            containment: float = CONTAINMENT_THRESHOLD) -> Overlap | None:
    """The overlap of one drill question with one probe question, or ``None``."""
    if normalise(drill) == normalise(probe):
        return Overlap(drill, probe, "equal", 1.0)
    return _near(drill, word_ngrams(drill), probe, word_ngrams(probe), jaccard, containment)


def _near(drill: str, a: set, probe: str, b: set, jaccard: float, containment: float) -> Overlap | None:
    shared = len(a & b)
    if not shared:
        return None
    similarity = shared / len(a | b)
    if similarity >= jaccard:
        return Overlap(drill, probe, "jaccard", similarity)
    smaller = min(len(a), len(b))
    contained = shared / smaller
    if smaller >= MIN_CONTAINED_NGRAMS and contained >= containment:
        return Overlap(drill, probe, "containment", contained)
    return None


def find_overlaps(drill_questions: Iterable[str], probe_questions: Iterable[str], *,
                  jaccard: float = JACCARD_THRESHOLD, containment: float = CONTAINMENT_THRESHOLD) -> list[Overlap]:
    """Every (drill question, probe question) pair that overlaps, in drill order."""
    probes = [(probe, normalise(probe), word_ngrams(probe)) for probe in probe_questions]
    found = []
    for drill in drill_questions:
        text, grams = normalise(drill), word_ngrams(drill)
        for probe, probe_text, probe_grams in probes:
            if text == probe_text:
                found.append(Overlap(drill, probe, "equal", 1.0))
            elif (near := _near(drill, grams, probe, probe_grams, jaccard, containment)) is not None:
                found.append(near)
    return found
