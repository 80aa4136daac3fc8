"""The options of the facts drills and the exposure report (to be collected into the training arguments)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Drills per fact when neither --facts_per_fact nor --facts_ratio is given: a 135M model answered 85% of unseen
# paraphrases once each fact had been seen ~50+ times in varied wordings; 60 leaves room for drills dropped as
# over-long and for facts the support dialogues never state.
DEFAULT_PER_FACT = 60

# Facts stated in fewer training examples than this are named in a warning (same evidence as above).
DEFAULT_MIN_EXPOSURES = 50


@dataclass
class FactsArguments:
    facts: str | None = field(
        default=None,
        metadata={"help": "Facts sheet (YAML, see docs/facts_sheet.md): each company fact with its value, value "
                  "patterns, question and answer phrasings. Adds short question/answer drills to the training "
                  "data and reports how many training examples state each fact. Empty or 'none': off."},
    )
    facts_per_fact: int | None = field(
        default=None,
        metadata={"help": f"Drills per fact, the same number for every fact (default {DEFAULT_PER_FACT}; 0: no "
                  "drills, only the exposure report). Not together with --facts_ratio."},
    )
    facts_ratio: float | None = field(
        default=None,
        metadata={"help": "Instead of --facts_per_fact: this many drills per support dialogue in all (1.0 = as "
                  "many drills as dialogues), shared equally by the facts (each gets round(ratio * dialogues / "
                  "facts), at least 1)."},
    )
    facts_min_exposures: int = field(
        default=DEFAULT_MIN_EXPOSURES,
        metadata={"help": "Warn about every fact that fewer training examples state (support dialogues, drills "
                  "and replay counted on the assistant's text); 0: no warning. With --facts_plan need, also the "
                  "number each fact's drills are topped up to."},
    )
    facts_plan: str = field(
        default="uniform",
        metadata={"help": "uniform: the same drills for every fact (--facts_per_fact or --facts_ratio). need: "
                  "those, plus drills for every fact the other training data states less often, until each is "
                  "stated in --facts_min_exposures examples (the exposure report's count and its 'planned' "
                  "column).", "choices": ["uniform", "need"]},
    )

    faq: str | None = field(
        default=None,
        metadata={"help": "A FAQ (.csv/.jsonl with question and answer columns, or .md): at the run's start its "
                  "draft facts sheet and probe (as `chatfreeze facts init` makes them) become --facts and "
                  "--facts_probe. Without --dataset the run trains on the drills alone (recipes/faq.yaml)."},
    )
    faq_catalogue: str | None = field(
        default=None,
        metadata={"help": "A product catalogue (.csv, a row per product, a column per attribute) drafted into the "
                  "same sheet as --faq (or alone)."},
    )
    faq_company: str | None = field(
        default=None,
        metadata={"help": "The company's name, for --faq's questions ('... at NAME?') and the system prompt when "
                  "none is set."},
    )

    def __post_init__(self):
        self.validate_facts()

    def validate_facts(self) -> None:
        if self.facts in ("", "none", "None"):
            self.facts = None
        for name in ("faq", "faq_catalogue", "faq_company"):
            if getattr(self, name) in ("", "none", "None"):
                setattr(self, name, None)
        if self.facts and self.facts.lower().endswith((".csv", ".jsonl", ".md", ".markdown")) and not self.faq:
            self.faq, self.facts = self.facts, None  # a FAQ given as the facts: drafted at the run's start
        if self.facts_per_fact is not None and self.facts_ratio is not None:
            raise ValueError(f"--facts_per_fact {self.facts_per_fact} and --facts_ratio {self.facts_ratio}: give "
                             "one of them (drills per fact, or drills per support dialogue).")
        if self.facts_per_fact is not None and not 0 <= self.facts_per_fact <= 10_000:
            raise ValueError(f"--facts_per_fact {self.facts_per_fact}: give drills per fact, 0 (none) to 10000.")
        if self.facts_ratio is not None and not 0.0 < self.facts_ratio <= 100.0:
            raise ValueError(f"--facts_ratio {self.facts_ratio}: give drills per support dialogue, above 0 and "
                             "at most 100.")
        if self.facts_plan not in ("uniform", "need"):
            raise ValueError(f"--facts_plan {self.facts_plan!r}: choose uniform or need.")
        if self.facts_min_exposures < 0:
            raise ValueError(f"--facts_min_exposures {self.facts_min_exposures}: must be >= 0 (0: no warning).")

    def per_fact(self, num_support: int, num_facts: int) -> int:
        """Drills per fact for a run with ``num_support`` support dialogues and a sheet of ``num_facts`` facts."""
        if self.facts_ratio is not None:
            return max(1, round(self.facts_ratio * num_support / max(1, num_facts)))
        return DEFAULT_PER_FACT if self.facts_per_fact is None else self.facts_per_fact
