"""What fine-tuning bought and what it cost: support perplexity, forgetting, generation metrics.

* **Support perplexity** on the assistant tokens of held-out dialogues, rendered and masked exactly as for
  training (``chatfreeze.data.build_dataset``): ``exp(sum of token NLL / number of scored tokens)`` over the
  whole set, i.e. token-weighted, not a mean of per-batch losses (Trainer's ``eval_loss`` is the latter, so
  ``exp(eval_loss)`` differs slightly when batches hold different numbers of assistant tokens).
* **Forgetting**: perplexity on general text (a plain-text file or a Hub dataset) before vs after. The
  text is tokenized once and scored in windows of ``window`` tokens that start every ``stride`` tokens;
  only the tokens a window adds beyond the previous one are scored (the sliding-window method of the
  transformers "Perplexity of fixed-length models" guide), so no token is scored twice. With
  ``stride == window`` the first token of each window has no context and is not scored.
* **Generation metrics** on held-out prompts: greedy replies scored against the reference replies with
  ROUGE-L and chrF, two ``evaluate`` modules kept in ``chatfreeze/metrics`` and loaded by path (offline).

``BeforeAfterEvaluator`` runs all of it before and after training and writes ``evaluation.json``;
``evaluate_checkpoint`` is the ``python -m chatfreeze.evaluate`` command's Python API.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import IGNORE_INDEX, DialogueCollator, build_dataset, load_dialogues

logger = logging.getLogger(__name__)

EVALUATION_FILENAME = "evaluation.json"
METRICS_DIR = Path(__file__).resolve().parent / "metrics"
HEADLINE_METRICS = ("support_perplexity", "general_perplexity", "rougeL", "chrf")


# --------------------------------------------------------------------------------------------------------
# Support perplexity
# --------------------------------------------------------------------------------------------------------


def support_dataset(dialogues: list[list[dict]], tokenizer, max_length: int = 1024,
                    overlong_policy: str = "drop_oldest_turns", source: str = "support"):
    """Tokenized ``input_ids``/``labels`` with the training path's rendering and assistant-only labels."""
    dataset, _ = build_dataset(dialogues, tokenizer, max_length=max_length, overlong_policy=overlong_policy,
                               source=source)
    return dataset


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _target_nll(model, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
    """Sum of next-token NLL over positions whose label is not -100, and how many there are."""
    device = _model_device(model)
    labels = batch["labels"].to(device)
    logits = model(input_ids=batch["input_ids"].to(device),
                   attention_mask=batch["attention_mask"].to(device)).logits
    targets = labels[:, 1:]
    scored = targets != IGNORE_INDEX
    # Select the scored positions before the softmax: a full (batch, length, vocab) float32 copy of
    # SmolLM2's 49k-entry vocabulary would cost 200 MB per 1k tokens.
    selected = logits[:, :-1][scored].float()
    nll = F.cross_entropy(selected, targets[scored], reduction="sum")
    return float(nll), int(scored.sum())


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
def support_perplexity(model, dataset, tokenizer, batch_size: int = 4) -> dict:
    """Token-weighted perplexity of ``model`` on the labelled (assistant) tokens of ``dataset``.

    ``dataset`` holds ``input_ids``/``labels`` as ``build_dataset`` makes them. Returns
    ``support_perplexity``, ``support_nll`` (mean NLL per scored token, nats), ``support_tokens`` (scored
    tokens) and ``support_examples``.
    """
    collator = DialogueCollator(tokenizer)
    total_nll, total_tokens = 0.0, 0
    with _EvalMode(model):
        for start in range(0, len(dataset), batch_size):
            rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
            nll, count = _target_nll(model, collator(list(rows)))
            total_nll += nll
            total_tokens += count
    if total_tokens == 0:
        raise ValueError("support perplexity: no assistant token to score.")
    mean = total_nll / total_tokens
    return {"support_perplexity": math.exp(mean), "support_nll": mean, "support_tokens": total_tokens,
            "support_examples": len(dataset)}


# --------------------------------------------------------------------------------------------------------
# General-text perplexity (forgetting)
# --------------------------------------------------------------------------------------------------------


def load_general_text(source: str, config_name: str | None = None, split: str = "test") -> str:
    """The text of a plain-text file, or a Hub dataset's ``text`` column (else its first string column)
    joined with blank lines, as the transformers perplexity guide joins WikiText."""
    path = Path(source).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if path.exists() or source.startswith(("/", ".", "~")) or source.lower().endswith((".txt", ".raw")):
        raise FileNotFoundError(f"--general_text {source}: no such file.")
    import datasets

    try:
        loaded = datasets.load_dataset(source, config_name, split=split)
    except Exception as err:  # noqa: BLE001 - any failure means the source is unusable; say which
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
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


@torch.inference_mode()
def general_perplexity(model, token_ids: list[int], window: int = 512, stride: int = 512,
                       max_windows: int | None = None, batch_size: int = 2) -> dict:
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
        for start in range(0, len(spans), batch_size):
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
            nll, count = _target_nll(model, batch)
            total_nll += nll
            total_tokens += count
    mean = total_nll / total_tokens
    return {"general_perplexity": math.exp(mean), "general_nll": mean, "general_tokens": total_tokens,
            "general_windows": len(spans)}


# --------------------------------------------------------------------------------------------------------
# Generation metrics (ROUGE-L, chrF) with the package's own evaluate modules
# --------------------------------------------------------------------------------------------------------


def load_metric(name: str):
    """``evaluate.load`` of ``chatfreeze/metrics/<name>/<name>.py``: from disk, no Hub, no network."""
    import evaluate as hf_evaluate  # the library (absolute import), not chatfreeze.evaluate, the CLI

    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(f"metric {name!r}: no module {path}/{name}.py (have: "
                         f"{', '.join(sorted(p.name for p in METRICS_DIR.iterdir() if p.is_dir()))}).")
    return hf_evaluate.load(str(path), keep_in_memory=True)


def held_out_prompts(dialogues: list[list[dict]], n: int) -> list[dict]:
    """``{"messages", "reference"}`` for the first ``n`` dialogues: the turns before the first assistant
    reply, and that reply."""
    prompts = []
    for dialogue in dialogues[:n]:
        cut = next(i for i, message in enumerate(dialogue) if message["role"] == "assistant")
        prompts.append({"messages": dialogue[:cut], "reference": dialogue[cut]["content"]})
    return prompts


def greedy_config(model, tokenizer, max_new_tokens: int):
    """Deterministic decoding for comparable replies: greedy, the chat's repetition penalty, capped length.

    Built fresh rather than from ``model.generation_config``, whose sampling settings differ before and
    after a run (training saves the chat's defaults) and would make the two measurements incomparable.
    """
    from transformers import GenerationConfig

    from .generation import DEFAULT_GENERATION

    own = model.generation_config
    return GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        repetition_penalty=DEFAULT_GENERATION["repetition_penalty"],
        eos_token_id=own.eos_token_id if own.eos_token_id is not None else tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=own.bos_token_id,
    )


def generation_metrics(model, tokenizer, prompts: list[dict], max_new_tokens: int = 96) -> tuple[dict, list[str]]:
    """Greedy replies to ``prompts`` and their ROUGE-L (0..1) and chrF (0..100) against the references."""
    from .generation import generate_reply

    config = greedy_config(model, tokenizer, max_new_tokens)
    with _EvalMode(model):
        replies = [generate_reply(model, tokenizer, p["messages"], generation_config=config) for p in prompts]
    references = [p["reference"] for p in prompts]
    rouge = load_metric("rouge_l").compute(predictions=replies, references=references)
    chrf = load_metric("chrf").compute(predictions=replies, references=references)
    return {"rougeL": rouge["rougeL"], "chrf": chrf["chrf"]}, replies


# --------------------------------------------------------------------------------------------------------
# Before vs after training
# --------------------------------------------------------------------------------------------------------


@dataclass
class EvaluationSettings:
    """What ``BeforeAfterEvaluator`` measures (filled from ``DataArguments``; saved as evaluation.json's config)."""

    general_text: str | None = None
    general_text_config: str | None = None
    general_text_split: str = "test"
    window: int = 512
    stride: int = 512
    max_windows: int | None = 40
    generation_samples: int = 8
    max_new_tokens: int = 96
    batch_size: int = 4

    @classmethod
    def from_data_args(cls, data_args, batch_size: int = 4) -> EvaluationSettings:
        return cls(
            general_text=data_args.general_text,
            general_text_config=data_args.general_text_config,
            general_text_split=data_args.general_text_split,
            window=data_args.general_window,
            stride=data_args.general_stride,
            max_windows=data_args.general_max_windows or None,
            generation_samples=data_args.generation_eval_samples,
            max_new_tokens=data_args.generation_max_new_tokens,
            batch_size=batch_size,
        )


def _general_source_missing(source: str) -> bool:
    """A path-like general text that is not there (a Hub id is tried, and fails loudly, when loaded)."""
    path = Path(source).expanduser()
    return not path.exists() and (source.startswith(("/", ".", "~")) or path.suffix.lower() in (".txt", ".raw"))


class BeforeAfterEvaluator:
    """Measures a model before and after training on fixed inputs, so the two results are comparable.

    The held-out dialogues, the general-text tokens and the prompts are prepared once in ``__init__``;
    ``measure(model)`` returns the headline metrics; ``finish`` writes ``evaluation.json``, logs a
    before -> after summary and returns ``before_*``/``after_*`` metrics for ``all_results.json``.
    """

    def __init__(self, tokenizer, settings: EvaluationSettings, eval_dataset=None,
                 eval_dialogues: list[list[dict]] | None = None):
        self.tokenizer, self.settings, self.eval_dataset = tokenizer, settings, eval_dataset
        self.prompts = held_out_prompts(eval_dialogues or [], settings.generation_samples)
        self.general_ids: list[int] | None = None
        self.replies: dict[str, list[str]] = {}
        self.details: dict = {}
        self.skipped: list[str] = []
        if eval_dataset is None:
            self._skip("support perplexity and generation metrics: no held-out dialogues "
                       "(set --eval_dataset or --validation_split_ratio)")
        source = settings.general_text
        if not source:
            self._skip("forgetting: no --general_text given")
        elif _general_source_missing(source):
            self._skip(f"forgetting: --general_text {source} does not exist")
        else:
            text = load_general_text(source, settings.general_text_config, settings.general_text_split)
            self.general_ids = tokenize_general_text(
                tokenizer, text, settings.window, settings.stride, settings.max_windows
            )

    def _skip(self, what: str) -> None:
        self.skipped.append(what)
        logger.info("Not measured: %s.", what)

    def measure(self, model, label: str = "") -> dict:
        """Headline metrics of ``model`` now (``label`` only names the run in the log)."""
        started, settings, result = time.perf_counter(), self.settings, {}
        if self.eval_dataset is not None:
            support = support_perplexity(model, self.eval_dataset, self.tokenizer, settings.batch_size)
            result["support_perplexity"] = support["support_perplexity"]
            self.details.update(support_examples=support["support_examples"], support_tokens=support["support_tokens"])
        if self.general_ids is not None:
            general = general_perplexity(model, self.general_ids, settings.window, settings.stride,
                                         settings.max_windows, max(1, settings.batch_size // 2))
            result["general_perplexity"] = general["general_perplexity"]
            self.details.update(general_windows=general["general_windows"], general_tokens=general["general_tokens"])
        if self.prompts:
            scores, replies = generation_metrics(model, self.tokenizer, self.prompts, settings.max_new_tokens)
            result.update(scores)
            self.replies[label or str(len(self.replies))] = replies
        logger.info("Evaluation%s took %.0f s: %s", f" ({label})" if label else "", time.perf_counter() - started,
                    ", ".join(f"{k} {v:.4g}" for k, v in result.items()))
        return result

    def config(self) -> dict:
        return asdict(self.settings) | self.details | {
            "generation_prompts": len(self.prompts),
            "decoding": "greedy, repetition_penalty 1.1",
            "support_perplexity": "exp(total NLL / scored tokens) over assistant tokens (training's labels)",
            "general_scoring": "sliding windows; each window scores the tokens it adds beyond the previous one",
            "not_measured": self.skipped,
        }

    def finish(self, output_dir: str | Path, before: dict, after: dict) -> dict:
        """Write ``evaluation.json``, log the summary, return the metrics to merge into all_results.json."""
        record = {"before": before, "after": after, "config": self.config(), "change": changes(before, after)}
        if self.replies:
            record["replies"] = [
                {"prompt": p["messages"][-1]["content"], "reference": p["reference"]}
                | {label: replies[index] for label, replies in self.replies.items()}
                for index, p in enumerate(self.prompts)
            ]
        write_evaluation(output_dir, record)
        logger.info("Before -> after training:\n%s", summarize(before, after))
        return flat_metrics(before, after)


def changes(before: dict, after: dict) -> dict:
    """Relative change (%) of each perplexity, absolute change of each generation score."""
    out = {}
    for key in HEADLINE_METRICS:
        if key in before and key in after:
            if key.endswith("perplexity"):
                out[f"{key}_change_pct"] = 100.0 * (after[key] / before[key] - 1.0)
            else:
                out[f"{key}_change"] = after[key] - before[key]
    return out


def flat_metrics(before: dict, after: dict) -> dict:
    """``before_<metric>``, ``after_<metric>`` and the changes, for the Trainer's metrics files."""
    flat = {f"before_{k}": v for k, v in before.items()} | {f"after_{k}": v for k, v in after.items()}
    return flat | changes(before, after)


def summarize(before: dict, after: dict) -> str:
    """One line per metric, e.g. ``general perplexity (forgetting): 21.3 -> 22.0 (+3.3%)``."""
    names = {"support_perplexity": "support perplexity", "general_perplexity": "general perplexity (forgetting)",
             "rougeL": "ROUGE-L", "chrf": "chrF"}
    lines = []
    for key, name in names.items():
        if key in before and key in after:
            if key.endswith("perplexity"):
                change = f"{100.0 * (after[key] / before[key] - 1.0):+.1f}%"
            else:
                change = f"{after[key] - before[key]:+.3g}"
            lines.append(f"  {name}: {before[key]:.4g} -> {after[key]:.4g} ({change})")
    return "\n".join(lines) or "  nothing measured"


def write_evaluation(output_dir: str | Path, record: dict) -> Path:
    path = Path(output_dir) / EVALUATION_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def evaluator_for_run(data_args, tokenizer, eval_dataset, eval_dialogues, trainer) -> BeforeAfterEvaluator | None:
    """The before/after evaluator a training run asked for, or None (not asked, not the main process, or a
    sharded model that one process cannot run alone)."""
    if not getattr(data_args, "eval_before_after", False) or not trainer.is_world_process_zero():
        return None
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
        logger.warning("Before/after evaluation skipped: the model is sharded (FSDP/DeepSpeed); run "
                       "`python -m chatfreeze.evaluate` on the saved model instead.")
        return None
    settings = EvaluationSettings.from_data_args(data_args, trainer.args.per_device_eval_batch_size)
    return BeforeAfterEvaluator(tokenizer, settings, eval_dataset, eval_dialogues)


# --------------------------------------------------------------------------------------------------------
# One checkpoint, from the command line (python -m chatfreeze.evaluate)
# --------------------------------------------------------------------------------------------------------


def trained_system_prompt(model_path: str | Path) -> str | None:
    """The system prompt a chatfreeze run trained with (its run_info.json), so it is evaluated the same way."""
    run_info = Path(model_path) / "run_info.json"
    if not run_info.is_file():
        return None
    data = json.loads(run_info.read_text()).get("data") or {}
    return data.get("system_prompt")


def evaluate_checkpoint(
    model_name_or_path: str,
    dataset: str,
    *,
    general_text: str | None = None,
    max_examples: int | None = None,
    split: str = "train",
    dataset_config: str | None = None,
    data_format: str = "auto",
    system_prompt: str | None = None,
    max_length: int = 1024,
    general_text_config: str | None = None,
    general_text_split: str = "test",
    window: int = 512,
    stride: int = 512,
    max_windows: int | None = None,
    generation_samples: int = 0,
    max_new_tokens: int = 96,
    batch_size: int = 4,
    dtype: str = "float32",
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> dict:
    """Load a model (Hub id or directory) and measure it; returns a flat dict of metrics and settings."""
    from .modeling import load_model, load_tokenizer, resolve_model, select_dtype

    resolved = resolve_model(model_name_or_path, revision)
    tokenizer = load_tokenizer(resolved.path, trust_remote_code)
    if not tokenizer.chat_template:
        raise ValueError(f"--model_name_or_path {model_name_or_path}: the tokenizer has no chat template.")
    model = load_model(resolved.path, select_dtype(dtype), trust_remote_code)
    if torch.cuda.is_available():
        model.to("cuda")
    if system_prompt is None:
        system_prompt = trained_system_prompt(resolved.path)
    dialogues = load_dialogues(dataset, split=split, config_name=dataset_config, data_format=data_format,
                               system_prompt=system_prompt)
    if max_examples is not None:
        dialogues = dialogues[:max_examples]
    result: dict = {"model": model_name_or_path, "dataset": dataset}
    support = support_perplexity(model, support_dataset(dialogues, tokenizer, max_length, source=dataset),
                                 tokenizer, batch_size)
    result.update(support)
    if general_text:
        text = load_general_text(general_text, general_text_config, general_text_split)
        ids = tokenize_general_text(tokenizer, text, window, stride, max_windows)
        result.update(general_perplexity(model, ids, window, stride, max_windows, max(1, batch_size // 2)))
        result.update(general_text=general_text, window=window, stride=stride)
    if generation_samples:
        scores, replies = generation_metrics(model, tokenizer, held_out_prompts(dialogues, generation_samples),
                                             max_new_tokens)
        result.update(scores, generation_samples=len(replies), replies=replies)
    return result
