"""How often the training data states each fact: the exposure report, printed before any training.

An *exposure* of a fact is one training example (a support dialogue, a drill, a replay example) with at least one
assistant message that states the fact's value -- every one of its ``patterns`` matches that message. Only the
assistant's text counts: that is what the loss trains; a customer quoting a price teaches nothing.

Counts are as good as the patterns: a pattern that other facts' text also matches (a "1 business day" shared by
several policies) counts those too, so a count is an upper bound where values are shared.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .options import DEFAULT_MIN_EXPOSURES
from .sheet import FactsSheet

logger = logging.getLogger(__name__)
# The names of the training sources in the report, the log and run_info.json: one home for each. DRILLS_SOURCE is
# also what the drills' DataReport and the KL term's --kl_sources call the drills.
SUPPORT_SOURCE = "support"
DRILLS_SOURCE = "drills"


@dataclass
class FactExposure:
    fact: str
    counts: dict[str, int]  # source name -> examples of that source that state the value

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class ExposureReport:
    """Per fact, how many examples of each source state its value; ``below`` lists the facts under
    ``threshold``; ``planned``, when given, the drills planned for each fact."""

    sources: dict[str, int]  # source name -> number of examples in it
    rows: list[FactExposure] = field(default_factory=list)
    threshold: int = DEFAULT_MIN_EXPOSURES
    planned: dict[str, int] | None = None  # fact id -> drills planned

    @property
    def below(self) -> list[str]:
        return [row.fact for row in self.rows if row.total < self.threshold]

    def total(self, fact: str) -> int:
        return next(row.total for row in self.rows if row.fact == fact)

    def to_dict(self) -> dict:
        planned = {} if self.planned is None else {"planned": dict(self.planned)}
        return {"sources": dict(self.sources), "threshold": self.threshold, "below": self.below, **planned,
                "facts": {row.fact: {**row.counts, "total": row.total} for row in self.rows}}

    def format_table(self) -> str:
        """One line per fact: the drills planned for it (when known), its count in each source, the total, and
        ``<`` where under the threshold."""
        names = list(self.sources)
        width = max([len("fact")] + [len(row.fact) for row in self.rows])
        columns = [max(len(name), 6) for name in names]
        plan = self.planned is not None
        header = (f"{'fact':<{width}}  " + (f"{'planned':>7}  " if plan else "")
                  + "  ".join(f"{n:>{w}}" for n, w in zip(names, columns, strict=True)))
        lines = [header + f"  {'total':>6}", "-" * (len(header) + 8)]
        for row in self.rows:
            planned = f"{self.planned.get(row.fact, 0):>7}  " if plan else ""
            cells = "  ".join(f"{row.counts[n]:>{w}}" for n, w in zip(names, columns, strict=True))
            flag = "  <" if row.total < self.threshold else ""
            lines.append(f"{row.fact:<{width}}  {planned}{cells}  {row.total:>6}{flag}")
        examples = ", ".join(f"{count} {name}" for name, count in self.sources.items())
        lines.append(f"examples: {examples}; {len(self.below)} of {len(self.rows)} facts stated in fewer than "
                     f"{self.threshold} (<)")
        return "\n".join(lines)

    def warn(self) -> None:
        """Log a WARNING naming the facts under the threshold (nothing when there are none), and one when the
        support dialogues state none of the sheet's facts: the sheet is likely another company's (the default
        recipe's Kestrel & Co. sheet with a user's own ``--dataset``), and its drills would teach its values."""
        support = self.sources.get(SUPPORT_SOURCE, 0)
        if support and self.rows and not any(row.counts.get(SUPPORT_SOURCE) for row in self.rows):
            logger.warning("None of the %d facts of the facts sheet is stated in the %d support dialogues: is the "
                           "sheet (--facts) this data's? Its drills train its values into the model; give the sheet "
                           "of your own company's facts (--facts FILE, docs/facts_sheet.md) or no drills "
                           "(--facts_per_fact 0).", len(self.rows), support)
        if self.below:
            logger.warning("%d of %d facts are stated in fewer than %d training examples: %s. The model is likely "
                           "to invent these; add drills (--facts_per_fact) or phrasings to the facts sheet.",
                           len(self.below), len(self.rows), self.threshold, ", ".join(self.below))


def count_exposures(sheet: FactsSheet, sources: dict[str, list[list[dict]]],
                    threshold: int = DEFAULT_MIN_EXPOSURES, warn: bool = True,
                    planned: dict[str, int] | None = None) -> ExposureReport:
    """The exposure report of ``sources`` (name -> dialogues, each a list of ``{"role", "content"}`` messages):
    for every fact of ``sheet``, in sheet order, the examples of each source that state its value. ``planned``
    (fact id -> drills) is shown beside the counts."""
    counts = {fact.id: dict.fromkeys(sources, 0) for fact in sheet.facts}
    for name, dialogues in sources.items():
        for dialogue in dialogues:
            replies = [m["content"] for m in dialogue if m.get("role") == "assistant"]
            for fact in sheet.facts:
                counts[fact.id][name] += any(fact.states_value(reply) for reply in replies)
    report = ExposureReport({name: len(dialogues) for name, dialogues in sources.items()},
                            [FactExposure(fact_id, row) for fact_id, row in counts.items()], threshold, planned)
    if warn:
        report.warn()
    return report
