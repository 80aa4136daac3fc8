"""Before vs after training on fixed inputs: ``BeforeAfterEvaluator`` measures the base model and the tuned one
the same way, and writes ``evaluation.json``, the log summary and the metrics for ``all_results.json``."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..common import is_sharded
from ..data import opening_prompts
from ..rundir import write_evaluation
from .generation_metrics import generation_metrics
from .perplexity import general_perplexity, load_general_text, support_perplexity, tokenize_general_text

logger = logging.getLogger(__name__)

HEADLINE_METRICS = ("support_perplexity", "general_perplexity", "rougeL", "chrf")


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
        self.prompts = opening_prompts(eval_dialogues or [], settings.generation_samples)
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


def evaluator_for_run(data_args, tokenizer, eval_dataset, eval_dialogues, trainer) -> BeforeAfterEvaluator | None:
    """The before/after evaluator a training run asked for, or None (not asked, not the main process, or a
    sharded model that one process cannot run alone)."""
    if not getattr(data_args, "eval_before_after", False) or not trainer.is_world_process_zero():
        return None
    if is_sharded(trainer):
        logger.warning("Before/after evaluation skipped: the model is sharded (FSDP/DeepSpeed); run "
                       "`python -m chatfreeze.evaluate` on the saved model instead.")
        return None
    settings = EvaluationSettings.from_data_args(data_args, trainer.args.per_device_eval_batch_size)
    return BeforeAfterEvaluator(tokenizer, settings, eval_dataset, eval_dialogues)
