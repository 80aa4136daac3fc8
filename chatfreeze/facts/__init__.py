"""A company's facts, taught and counted: the facts sheet (``sheet``: values, value patterns, question and answer
phrasings), drills planned by fact (``drills``), confusable facts (``neighbours``),
how often the training data states each fact (``exposure``),
the facts probe in dev/test halves (``probe_split``) and training questions too close to probe questions
(``overlap``); and a draft sheet and probe made from a FAQ or a catalogue by rules (``values``: the values a text
states; ``faq``, ``catalogue``: the readers; ``phrasing``: question and answer rules; ``draft``; ``generate``).

Layer: above ``data`` (drills are tokenized by its ``build_dataset``), below ``fastpath``, ``evaluation`` and
``training``; it imports only ``common`` and ``data``.
"""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "options": ("FactsArguments", "DEFAULT_PER_FACT", "DEFAULT_MIN_EXPOSURES"),
    "sheet": ("Fact", "FactsSheet", "FactsSheetError", "QA", "load_facts_sheet", "parse_facts_sheet"),
    "drills": ("Drill", "TrainingDrills", "plan_drills", "plan_by_need", "render_drills", "drills_dataset",
               "facts_dataset", "common_system_prompt"),
    "exposure": ("ExposureReport", "FactExposure", "count_exposures", "DRILLS_SOURCE", "SUPPORT_SOURCE"),
    "neighbours": ("neighbours_of",),
    "probe_split": ("split_probe",),
    "overlap": ("Overlap", "find_overlaps", "normalise"),
    "values": ("Value", "KINDS", "find_values", "value_kinds", "same_value"),
    "faq": ("FaqEntry", "FaqError", "read_faq"),
    "catalogue": ("read_catalogue", "product_names"),
    "draft": ("Draft", "DraftFact", "draft_facts"),
    "generate": ("draft_from_files", "write_draft", "prepare_faq"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
