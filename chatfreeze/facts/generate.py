"""From files to files: a FAQ and/or a catalogue drafted into a facts sheet and a probe (``draft_from_files``,
``write_draft``), and the run-start step of ``--faq`` (``prepare_faq``), which drafts them into chatfreeze's cache
and points ``--facts`` and ``--facts_probe`` at them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ..common import cache_root
from .catalogue import read_catalogue
from .draft import Draft, draft_facts, probe_jsonl, sheet_yaml
from .faq import FaqError, read_faq
from .options import FactsArguments

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the rules change what a FAQ drafts into, so cached drafts are remade


def draft_from_files(faq: str | None, catalogue: str | None = None, company: str | None = None,
                     seed: int = 0) -> Draft:
    """The draft of a FAQ file, a catalogue file, or both in one sheet."""
    if not faq and not catalogue:
        raise FaqError("give a FAQ file (.csv, .jsonl or .md), a --catalogue .csv, or both.")
    entries = (read_faq(faq) if faq else []) + (read_catalogue(catalogue) if catalogue else [])
    return draft_facts(entries, company, seed)


def sources_label(faq: str | None, catalogue: str | None) -> str:
    return " and ".join(str(p) for p in (faq, catalogue) if p)


def check_writable(path: str | Path, flag: str, force: bool) -> None:
    """Refuse to write over a file the user may have edited (the draft is theirs once written)."""
    path = Path(path)
    if path.is_dir():
        raise FaqError(f"{flag} {path}: a directory; give a file name.")
    if path.exists() and not force:
        raise FaqError(f"{flag} {path}: already exists (maybe edited by hand); choose another file or pass --force "
                       "to replace it.")


def write_draft(draft: Draft, source: str, sheet_path: str | Path, probe_path: str | Path) -> None:
    """Write the sheet and the probe; each file whole or not at all (written beside, then renamed)."""
    for path, text in ((Path(sheet_path), sheet_yaml(draft, source)), (Path(probe_path), probe_jsonl(draft))):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # processes of one run may draft at once
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)


def default_probe_path(sheet_path: str | Path) -> Path:
    """``SHEET.yaml`` -> ``SHEET_probe.jsonl`` beside it."""
    sheet_path = Path(sheet_path)
    return sheet_path.with_name(f"{sheet_path.stem}_probe.jsonl")


def cached_draft(faq: str | None, catalogue: str | None, company: str | None, seed: int) -> tuple[Path, Path]:
    """``(sheet, probe)`` drafted from the files into the cache, keyed by their bytes, the company, the seed and
    the generator's version (the same inputs reuse the same files; an edited FAQ makes new ones)."""
    digest = hashlib.sha256(f"v{GENERATOR_VERSION}\0{company}\0{seed}".encode())
    for path in (faq, catalogue):
        digest.update(b"\0" + (Path(path).read_bytes() if path and Path(path).is_file() else b""))
    folder = cache_root() / "faq" / digest.hexdigest()[:16]
    sheet, probe = folder / "facts.yaml", folder / "facts_probe.jsonl"
    if not (sheet.is_file() and probe.is_file()):
        draft = draft_from_files(faq, catalogue, company, seed)
        write_draft(draft, sources_label(faq, catalogue), sheet, probe)
    return sheet, probe


def default_system_prompt(company: str | None) -> str:
    who = f"{company}'s" if company else "the company's"
    return (f"You are {who} customer-support assistant. Be concise, friendly and accurate. Answer only from "
            f"{company or 'the company'}'s policies and never make up prices, dates or policies.")


def prepare_faq(facts_args: FactsArguments, data_args, eval_args, seed: int) -> None:
    """At a run's start, with ``--faq`` (or ``--faq_catalogue``): draft the sheet and probe (cached) and use them as
    ``--facts`` and ``--facts_probe``, and, when no system prompt is set, a plain one naming ``--faq_company``.
    Without support dialogues the run trains on the drills (with the replays the recipe asks for)."""
    if not facts_args.faq and not facts_args.faq_catalogue:
        if not data_args.dataset and not facts_args.facts:
            raise ValueError("no training data: give --dataset (support dialogues), --faq FILE (a FAQ), or both.")
        return
    sheet, probe = cached_draft(facts_args.faq, facts_args.faq_catalogue, facts_args.faq_company, seed)
    facts_args.facts = str(sheet)
    eval_args.facts_probe = str(probe)
    if not data_args.system_prompt:
        data_args.system_prompt = default_system_prompt(facts_args.faq_company)
    logger.info("--faq %s: facts sheet %s and probe %s drafted (chatfreeze facts init writes them where you can "
                "read and edit them).", sources_label(facts_args.faq, facts_args.faq_catalogue), sheet, probe)
