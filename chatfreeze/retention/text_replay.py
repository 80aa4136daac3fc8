"""Plain-text replay: training batches mix in plain (not chat-formatted) text, trained with the LM loss and, where
``--kl_sources`` covers ``text``, the KL to the base, so the top blocks keep modelling ordinary text as the base
did. Chat replay and the KL on the dialogues keep the chat skills, but they act on chat-formatted tokens only:
with many drills a run kept its short answers and self-agreement yet its general-text perplexity rose.

Two sources (``--text_replay``):

* ``base``: passages the base model writes itself, sampled from its document-start token (temperature 1,
  nucleus 0.95) — a sample of what it learned in pre-training, with no data to ship or download. The LM loss on
  the base's own samples is a sampled estimate of the distance to its distribution; the KL term adds the whole
  distribution at every position. Generated once per base model and cached per batch of passages (each batch
  seeded by its index, so a later run that asks for more reuses the first ones).
* a file of the user's own general text (``.txt``/``.raw``: the whole text; ``.jsonl``: a ``text`` field per
  line): cut into windows of ``--text_replay_tokens`` tokens, a seeded sample of them used — mixing a little
  pre-training-like data into fine-tuning is the classic guard against forgetting.

Each example is the document-start token (not trained) followed by the passage, every passage token labelled:
the same collator, masking and fast path as the dialogues.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import timings
from ..data.schema import IGNORE_INDEX
from ..evaluation.measurement_cache import MeasurementCache, inputs_fingerprint, weights_fingerprint
from ..evaluation.perplexity import _EvalMode
from ..generation import nucleus_sampling
from ..progress import Progress
from .options import missing_text_file

logger = logging.getLogger(__name__)

BASE_SOURCE = "base"
TEXT_REPLAY_SOURCE = "plain-text replay"
BASE_TOP_P = 0.95  # nucleus sampling: the base's own distribution without its least likely tail
# Passages per generation batch (each batch has its own seed, so the cache can grow). On a 2-core CPU SmolLM2-135M
# decodes 402 tokens/s at 64 rows against 281 at 32 (docs/performance.md).
BASE_BATCH = 64
MIN_PASSAGE_TOKENS = 8
DOCUMENT_SEPARATOR = "<|endoftext|>"  # a sample that ends sooner (the base closed the document at once) is not used


@dataclass
class TextReplayReport:
    """What the plain-text replay added to the training data (logged; saved in ``run_info.json``)."""

    source: str
    examples: int
    distinct_passages: int
    tokens: int
    trained_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


def document_separator(tokenizer) -> int | None:
    """The id of the tokenizer's ``<|endoftext|>`` (GPT-2, SmolLM, Qwen), if it has one."""
    return tokenizer.get_vocab().get(DOCUMENT_SEPARATOR)


def document_start(tokenizer) -> list[int]:
    """The token(s) a plain document starts with for this tokenizer: what it adds to an empty text (a BOS, for
    Llama-style tokenizers), else its ``<|endoftext|>`` document separator (GPT-2, SmolLM, Qwen), else its EOS."""
    added = tokenizer("", add_special_tokens=True)["input_ids"]
    if added:
        return list(added)
    separator = document_separator(tokenizer)
    if separator is not None:
        return [separator]
    if tokenizer.eos_token_id is None:
        raise ValueError("--text_replay: the tokenizer has no BOS, <|endoftext|> or EOS token to start a plain "
                         "document with.")
    return [tokenizer.eos_token_id]


def base_passages(model, tokenizer, count: int, tokens: int, seed: int, cache: MeasurementCache | None = None
                  ) -> list[list[int]]:
    """``count`` passages of up to ``tokens`` token ids that ``model`` writes from its document-start token,
    generated in seeded batches of ``BASE_BATCH`` and cached per batch. A passage ends at the first end-of-text
    token the model writes (included); passages shorter than ``MIN_PASSAGE_TOKENS`` are skipped."""
    start = document_start(tokenizer)
    keys = None if cache is None else (weights_fingerprint(model), inputs_fingerprint(
        "text-replay-v2", start, tokens, BASE_TOP_P, BASE_BATCH, seed))
    stored = (cache.get(*keys) if cache else None) or {}
    batches: list[list[list[int]]] = list(stored.get("batches") or [])
    usable = [passage for batch in batches for passage in batch]
    if len(usable) >= count:
        logger.info("Plain-text replay: %d passages the base model wrote come from the cache.", count)
        timings.note_cached("Plain-text replay generation", passages=count)
        return usable[:count]
    stops = {t for t in (tokenizer.eos_token_id, *start, document_separator(tokenizer)) if isinstance(t, int)}
    device = next(model.parameters()).device
    logger.info("Plain-text replay: the base model writes %d passage(s) of up to %d tokens now (sampled; %s).",
                count - len(usable), tokens, "no cache" if cache is None else f"{len(usable)} from the cache")
    with _EvalMode(model), Progress("Plain-text replay generation", count, "passages") as shown:
        shown.update(len(usable))
        while len(usable) < count:
            batch = _sample_batch(model, start, tokens, seed * 100_003 + len(batches), stops, device,
                                  tokenizer.pad_token_id if tokenizer.pad_token_id is not None else start[0])
            if not batch and len(batches) > 2 * math.ceil(count / BASE_BATCH) + 2:
                raise ValueError("--text_replay base: the base model ends its documents at once; give a "
                                 "file of general text instead.")
            batches.append(batch)
            usable += batch
            shown.update(len(batch))
            if cache:
                cache.put(*keys, {"batches": batches})
    return usable[:count]


def _sample_batch(model, start: list[int], tokens: int, seed: int, stops: set[int], device, pad_id: int
                  ) -> list[list[int]]:
    prompt = torch.tensor([start] * BASE_BATCH, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        torch.manual_seed(seed)
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=tokens,
                             pad_token_id=pad_id, **nucleus_sampling(BASE_TOP_P),
                             eos_token_id=sorted(stops))
    passages = []
    for row in out[:, len(start):].tolist():
        cut = next((i + 1 for i, token in enumerate(row) if token in stops), len(row))
        if cut >= MIN_PASSAGE_TOKENS:
            passages.append(row[:cut])
    return passages


def read_text_file(path: str) -> list[str]:
    """The documents of a general-text file: one per ``text`` field of a ``.jsonl``, else the whole file."""
    file = Path(path)
    if not file.is_file():
        raise missing_text_file(path)
    if file.suffix == ".jsonl":
        documents = []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}, line {number}: not JSON ({err.msg}); each line needs "
                                 "{{\"text\": ...}}.") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"{path}, line {number}: no 'text' string; each line needs {{\"text\": ...}}.")
            documents.append(row["text"])
    else:
        try:
            documents = [file.read_text(encoding="utf-8")]
        except UnicodeDecodeError as err:
            raise ValueError(f"--text_replay {path}: not UTF-8 text ({err.reason} at byte {err.start}).") from None
    return [document for document in documents if document.strip()]


def file_passages(path: str, tokenizer, count: int, tokens: int, seed: int) -> tuple[list[list[int]], int]:
    """``(passages, distinct)``: ``count`` windows of ``tokens`` token ids from the file's documents, a seeded
    sample (repeated in that order when the file has fewer windows than asked for)."""
    windows = []
    for document in read_text_file(path):
        ids = tokenizer(document, add_special_tokens=False, verbose=False)["input_ids"]
        windows += [ids[i:i + tokens] for i in range(0, len(ids), tokens) if len(ids[i:i + tokens]) >= MIN_PASSAGE_TOKENS]
    if not windows:
        raise ValueError(f"--text_replay {path}: no text of at least {MIN_PASSAGE_TOKENS} tokens in it.")
    random.Random(seed).shuffle(windows)
    return [windows[i % len(windows)] for i in range(count)], min(count, len(windows))


def text_replay_dataset(model, tokenizer, num_support: int, ratio: float, *, source: str = BASE_SOURCE,
                        tokens: int = 128, seed: int = 0, cache: bool = True):
    """``(datasets.Dataset, TextReplayReport)`` of ``round(ratio * num_support)`` plain-text examples (at least
    one), or ``(None, None)`` for ``ratio == 0``."""
    import datasets

    if ratio <= 0:
        return None, None
    wanted = max(1, round(ratio * num_support))
    if source == BASE_SOURCE:
        passages = base_passages(model, tokenizer, wanted, tokens, seed, MeasurementCache() if cache else None)
        distinct = len(passages)
    else:
        passages, distinct = file_passages(source, tokenizer, wanted, tokens, seed)
    start = document_start(tokenizer)
    rows = {"input_ids": [start + passage for passage in passages],
            "labels": [[IGNORE_INDEX] * len(start) + passage for passage in passages]}
    report = TextReplayReport(source="the base model's own text" if source == BASE_SOURCE else source,
                              examples=len(passages), distinct_passages=distinct,
                              tokens=sum(len(ids) for ids in rows["input_ids"]),
                              trained_tokens=sum(len(passage) for passage in passages))
    logger.info("Plain-text replay: %d examples (%d distinct passages, %d trained tokens) from %s, mixed into %d "
                "support dialogues.", report.examples, distinct, report.trained_tokens, report.source, num_support)
    return datasets.Dataset.from_dict(rows), report
