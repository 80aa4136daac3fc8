"""Training questions that equal or nearly equal a held-out probe question, which would make the probe measure
recall of a seen sentence instead of knowledge of the fact.

Texts are compared after ``normalise``: lower case, every run of punctuation and white space collapsed to one
space. A drill question *overlaps* a probe question when, normalised,

* ``equal``: they are equal;
* ``jaccard``: the Jaccard similarity of their sets of word 3-grams is at least ``JACCARD_THRESHOLD`` (0.4). One
  word replaced in a 12-word question removes 3 of its 10 3-grams (Jaccard 7/13 = 0.54), two adjacent words 4
  (6/14 = 0.43): the same sentence with a word or two swapped is caught;
* ``containment``: at least ``CONTAINMENT_THRESHOLD`` (0.8) of the shorter one's 3-grams are in the longer one, and
  it has at least ``MIN_CONTAINED_NGRAMS`` (4, i.e. six words) of them: a probe question pasted inside a longer
  drill message ("Hi! I have a question. <probe question> Thanks"), or the reverse;
* ``first sentence``: both have more than one sentence and their first sentences are equal, with at least
  ``MIN_SENTENCE_CONTENT`` (2) content words: "I'd rather write than chat. Which address ...?" teaches the
  probe's own opening, whatever follows;
* ``content``: the shorter one's content words (``content_words``: stop words dropped, a plural's "s" too) are
  at least ``CONTENT_THRESHOLD`` (0.8) inside the longer one's, and it has at least ``MIN_CONTENT_WORDS`` (4) of
  them: a paraphrase that reorders or re-wraps the same words ("What's the usual refund processing time?" for
  "refund processing time?" once it is long enough to count);
* ``short``: the shorter one has at most ``SHORT_CONTENT_WORDS`` (3) content words, all of them in the longer one,
  and they are at least ``SHORT_SHARE`` (half) of the longer one's ("Hotline?" inside "Any hotline I can ring?",
  "express how many days" inside "express delivery = how many days?"): a short question is all keywords, so a
  drill that asks with the same keywords teaches its answer. The share keeps a one-keyword question ("where's my
  order no") from matching every long question that mentions an order.

Word 3-grams alone let paraphrases through (the four above score 0.20-0.27); content words alone would call every
two questions about shipping a copy, hence the thresholds. The stop words are our own list of function words and
the fillers customers put around a question ("please", "hi"), not a library's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

NGRAM = 3
JACCARD_THRESHOLD = 0.4
CONTAINMENT_THRESHOLD = 0.8
MIN_CONTAINED_NGRAMS = 4
CONTENT_THRESHOLD = 0.8
MIN_CONTENT_WORDS = 4
SHORT_CONTENT_WORDS = 3
MIN_SENTENCE_CONTENT = 2
SHORT_SHARE = 0.5

STOP_WORDS = frozenset("""
a about after again all also am an and any anything are as at be been before being but by can could d did do does
doing don done for from get got had has have having he her here hi hello hey how i if im in into is it its just
ll m me might more most much must my no not of on once one only or our out over please pls re s she should so some
something t than thank thanks that the their them then there these they this those to too u ur us ve very was we
were what whats when where which while who why will with would yes you your yours
""".split())

_SENTENCE_END = re.compile(r"[.!?]+\s+")


def normalise(text: str) -> str:
    """Lower case, punctuation and white space collapsed to single spaces, trimmed."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def word_ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """The distinct word ``n``-grams of the normalised text (the whole text as one gram when shorter)."""
    words = normalise(text).split()
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def content_words(text: str) -> frozenset[str]:
    """The normalised words that carry meaning: stop words dropped, a plural's trailing "s" cut ("days" = "day")."""
    words = (word for word in normalise(text).split() if word not in STOP_WORDS)
    return frozenset(word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
                     for word in words)


def first_sentence(text: str) -> str | None:
    """The normalised first sentence of a text of two sentences or more, else ``None``."""
    parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
    return normalise(parts[0]) if len(parts) == 2 and normalise(parts[1]) else None


@dataclass(frozen=True)
class Overlap:
    drill: str
    probe: str
    how: str  # "equal", "jaccard", "containment", "first sentence", "content" or "short"
    score: float  # 1.0 for equal; else the similarity that crossed its threshold


@dataclass(frozen=True)
class _Text:
    """A question as the rules read it, computed once per question."""

    raw: str
    text: str
    grams: frozenset
    words: frozenset[str]
    opening: str | None

    @classmethod
    def of(cls, raw: str) -> _Text:
        return cls(raw, normalise(raw), frozenset(word_ngrams(raw)), content_words(raw), first_sentence(raw))


def compare(drill: str, probe: str, *, jaccard: float = JACCARD_THRESHOLD,
            containment: float = CONTAINMENT_THRESHOLD) -> Overlap | None:
    """The overlap of one drill question with one probe question, or ``None``."""
    return _compare(_Text.of(drill), _Text.of(probe), jaccard, containment)


def _compare(drill: _Text, probe: _Text, jaccard: float, containment: float) -> Overlap | None:
    if drill.text == probe.text:
        return Overlap(drill.raw, probe.raw, "equal", 1.0)
    return (_near(drill, probe, jaccard, containment) or _same_opening(drill, probe)
            or _same_content(drill, probe))


def _near(drill: _Text, probe: _Text, jaccard: float, containment: float) -> Overlap | None:
    shared = len(drill.grams & probe.grams)
    if not shared:
        return None
    similarity = shared / len(drill.grams | probe.grams)
    if similarity >= jaccard:
        return Overlap(drill.raw, probe.raw, "jaccard", similarity)
    smaller = min(len(drill.grams), len(probe.grams))
    contained = shared / smaller
    if smaller >= MIN_CONTAINED_NGRAMS and contained >= containment:
        return Overlap(drill.raw, probe.raw, "containment", contained)
    return None


def _same_opening(drill: _Text, probe: _Text) -> Overlap | None:
    if (drill.opening is not None and drill.opening == probe.opening
            and len(content_words(drill.opening)) >= MIN_SENTENCE_CONTENT):
        return Overlap(drill.raw, probe.raw, "first sentence", 1.0)
    return None


def _same_content(drill: _Text, probe: _Text) -> Overlap | None:
    shorter, longer = sorted((drill.words, probe.words), key=len)
    if not shorter:
        return None
    inside = len(shorter & longer) / len(shorter)
    if len(shorter) <= SHORT_CONTENT_WORDS and inside == 1.0 and len(shorter) >= SHORT_SHARE * len(longer):
        return Overlap(drill.raw, probe.raw, "short", 1.0)
    if len(shorter) >= MIN_CONTENT_WORDS and inside >= CONTENT_THRESHOLD:
        return Overlap(drill.raw, probe.raw, "content", inside)
    return None


def find_overlaps(drill_questions: Iterable[str], probe_questions: Iterable[str], *,
                  jaccard: float = JACCARD_THRESHOLD, containment: float = CONTAINMENT_THRESHOLD) -> list[Overlap]:
    """Every (drill question, probe question) pair that overlaps, in drill order."""
    probes = [_Text.of(probe) for probe in probe_questions]
    found = []
    for drill in map(_Text.of, drill_questions):
        found += [near for probe in probes if (near := _compare(drill, probe, jaccard, containment)) is not None]
    return found
