"""Perplexity, token-weighted, with the training path's rendering and masking.

* **Support perplexity** on the assistant tokens of held-out dialogues, rendered and masked exactly as for
  training (``chatfreeze.data.build_dataset``): ``exp(sum of token NLL / number of scored tokens)`` over the
  whole set, i.e. token-weighted, not a mean of per-batch losses (Trainer's ``eval_loss`` is the latter, so
  ``exp(eval_loss)`` differs slightly when batches hold different numbers of assistant tokens).
* **General-text perplexity** (forgetting): a plain-text file or a Hub dataset, tokenized once and scored in
  windows of ``window`` tokens that start every ``stride`` tokens; only the tokens a window adds beyond the
  previous one are scored (the sliding-window method of the transformers "Perplexity of fixed-length models"
  guide), so no token is scored twice. With ``stride == window`` each window's first token is not scored.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from ..common import first_line, looks_like_path
from ..data import DialogueCollator, build_dataset
from ..data.schema import IGNORE_INDEX
from ..fastpath.loss import labelled_nll
from ..progress import progress

logger = logging.getLogger(__name__)

GENERAL_TEXT_SUFFIXES = (".txt", ".raw")  # a --general_text with these is a file, never a Hub id


def support_dataset(dialogues: list[list[dict]], tokenizer, max_length: int = 1024,
                    overlong_policy: str = "drop_oldest_turns", source: str = "support"):
    """Tokenized ``input_ids``/``labels`` with the training path's rendering and assistant-only labels."""
    dataset, _ = build_dataset(dialogues, tokenizer, max_length=max_length, overlong_policy=overlong_policy,
                               source=source)
    return dataset


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def target_nll(model, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
    """Sum of next-token NLL over positions whose label is not -100, and how many there are. The LM head runs
    at those positions only (``fastpath.loss.labelled_nll``): a full (batch, length, vocab) float32 copy of
    SmolLM2's 49k-entry vocabulary would cost 200 MB per 1k tokens, and most positions are not scored."""
    device = _model_device(model)
    mask = batch.get("attention_mask")
    nll, count = labelled_nll(model, batch["input_ids"].to(device), None if mask is None else mask.to(device),
                              batch["labels"].to(device))
    return float(nll), count


class _EvalMode:
    """``model.eval()`` for the block, then back to the mode it was in."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


@torch.inference_mode()
def support_perplexity(model, dataset, tokenizer, batch_size: int = 4, prefix_states=None,
                       what: str | None = "Support perplexity") -> dict:
    """Token-weighted perplexity of ``model`` on the labelled (assistant) tokens of ``dataset``.

    ``dataset`` holds ``input_ids``/``labels`` as ``build_dataset`` makes them. Returns
    ``support_perplexity``, ``support_nll`` (mean NLL per scored token, nats), ``support_tokens`` (scored
    tokens) and ``support_examples``. With ``prefix_states`` (``FrozenPrefixStates``) the frozen prefix of each
    batch is computed once and reused when the same (tuned) model is measured again. ``what`` names the phase in
    the progress shown.
    """
    collator = DialogueCollator(tokenizer)
    total_nll, total_tokens = 0.0, 0
    with _EvalMode(model):
        for start in progress(range(0, len(dataset), batch_size), what, unit="batches"):
            rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
            batch = collator(list(rows))
            nll, count = (prefix_states.nll(model, ("support", start), batch) if prefix_states is not None
                          else target_nll(model, batch))
            total_nll += nll
            total_tokens += count
    if total_tokens == 0:
        raise ValueError("support perplexity: no assistant token to score.")
    mean = total_nll / total_tokens
    return {"support_perplexity": math.exp(mean), "support_nll": mean, "support_tokens": total_tokens,
            "support_examples": len(dataset)}


def load_general_text(source: str, config_name: str | None = None, split: str = "test") -> str:
    """The text of a plain-text file, or a Hub dataset's ``text`` column (else its first string column)
    joined with blank lines, as the transformers perplexity guide joins WikiText."""
    path = Path(source).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if path.exists() or looks_like_path(source, GENERAL_TEXT_SUFFIXES):
        raise FileNotFoundError(f"--general_text {source}: no such file.")
    import datasets

    try:
        loaded = datasets.load_dataset(source, config_name, split=split)
    except Exception as err:  # noqa: BLE001 - any failure means the source is unusable; say which
        first = first_line(err)
        raise ValueError(f"--general_text {source}: not a file, and the Hub dataset could not be loaded "
                         f"(config {config_name!r}, split {split!r}): {first}") from None
    strings = [name for name, feature in loaded.features.items() if getattr(feature, "dtype", None) == "string"]
    if not strings:
        raise ValueError(f"--general_text {source}: the dataset has no text column ({', '.join(loaded.features)}).")
    column = "text" if "text" in strings else strings[0]
    return "\n\n".join(loaded[column])


def window_spans(num_tokens: int, window: int, stride: int, max_windows: int | None = None
                 ) -> list[tuple[int, int, int]]:
    """``(begin, end, targets)`` per window: tokens ``[begin, end)`` go in, the last ``targets`` are scored.

    ``targets = end - previous end``, so every token after the first is scored at most once: exactly once
    when ``stride < window``; with ``stride == window`` each window's first token goes unscored (it would
    be predicted from nothing). Windows with nothing left to score are dropped.
    """
    if window < 2 or not 1 <= stride <= window:
        raise ValueError(f"window={window}, stride={stride}: need window >= 2 and 1 <= stride <= window.")
    spans, previous_end = [], 0
    for begin in range(0, num_tokens, stride):
        end = min(begin + window, num_tokens)
        targets = min(end - previous_end, end - begin - 1)  # position `begin` has no context in its window
        if targets > 0:
            spans.append((begin, end, targets))
        previous_end = end
        if end == num_tokens or (max_windows and len(spans) >= max_windows):
            break
    return spans


def tokenize_general_text(tokenizer, text: str, window: int, stride: int, max_windows: int | None) -> list[int]:
    """Token ids of ``text`` (the tokenizer's default special tokens, as the perplexity guide does), only as
    many as ``max_windows`` windows need: a prefix of the characters is tokenized first, so a large corpus
    costs little when few windows are scored."""
    needed = None if not max_windows else (max_windows - 1) * stride + window + 1
    if needed is not None:
        # English BPE averages ~4 characters per token; 8x leaves room for dense text. The token at the cut
        # may differ from the whole text's, so a prefix counts only if it has tokens to spare.
        ids = tokenizer(text[: needed * 8], verbose=False)["input_ids"]
        if len(ids) > needed or needed * 8 >= len(text):
            return ids[:needed]
    return tokenizer(text, verbose=False)["input_ids"]


def dev_windows(max_windows: int | None) -> int:
    """How many general-text windows a dev split holds beside ``max_windows`` reported ones: a quarter as many (at
    least one). Choices (``--metric_for_best_model facts_dev_accuracy_if_kept``) read them, never the reported."""
    return max(1, (max_windows or 0) // 4)


def split_general_ids(token_ids: list[int], window: int, stride: int, max_windows: int | None
                      ) -> tuple[list[int], list[int]]:
    """``(reported, dev)``: the tokens the reported windows score, and the text after them (the dev split, no
    token shared). Without ``max_windows`` (every window reported) the last quarter of the text is the dev split."""
    if max_windows:
        cut = (max_windows - 1) * stride + window + 1
    else:
        cut = len(token_ids) - len(token_ids) // 4
    return token_ids[:cut], token_ids[cut:]


@torch.inference_mode()
def general_perplexity(model, token_ids: list[int], window: int = 512, stride: int = 512,
                       max_windows: int | None = None, batch_size: int = 2,
                       what: str | None = "General-text perplexity") -> dict:
    """Perplexity on ``token_ids`` in windows (see ``window_spans``), token-weighted over all windows.

    Returns ``general_perplexity``, ``general_nll``, ``general_tokens`` (scored), ``general_windows``.
    """
    spans = window_spans(len(token_ids), window, stride, max_windows)
    if not spans:
        raise ValueError(f"general text: {len(token_ids)} token(s) is too short to score.")
    logger.info("General text: scoring %d tokens in %d windows of up to %d tokens (stride %d).",
                sum(t for _, _, t in spans), len(spans), window, stride)
    ids = torch.tensor(token_ids, dtype=torch.long)
    total_nll, total_tokens = 0.0, 0
    with _EvalMode(model):
        for start in progress(range(0, len(spans), batch_size), what, unit="batches"):
            chunk = spans[start : start + batch_size]
            width = max(end - begin for begin, end, _ in chunk)
            input_ids = torch.zeros((len(chunk), width), dtype=torch.long)
            labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
            attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (begin, end, targets) in enumerate(chunk):
                length = end - begin
                input_ids[row, :length] = ids[begin:end]
                labels[row, length - targets : length] = ids[end - targets : end]
                attention_mask[row, :length] = 1
            batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
            nll, count = target_nll(model, batch)
            total_nll += nll
            total_tokens += count
    mean = total_nll / total_tokens
    return {"general_perplexity": math.exp(mean), "general_nll": mean, "general_tokens": total_tokens,
            "general_windows": len(spans)}
