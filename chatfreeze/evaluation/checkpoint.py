"""Measure one checkpoint, or compare a model with its base (Hub ids or directories): the Python API of
``python -m chatfreeze.evaluate``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import load_dialogues
from ..modeling import load_model, load_tokenizer, resolve_model, select_dtype
from ..rundir import trained_system_prompt, write_evaluation
from .before_after import BeforeAfterEvaluator
from .options import EvaluationArguments
from .perplexity import support_dataset
from .plots import write_plots


def load_for_evaluation(name: str, dtype: str = "float32", revision: str | None = None,
                        trust_remote_code: bool = False, flag: str = "--model_name_or_path"):
    """``(model in eval mode, tokenizer, ResolvedModel)``; the tokenizer must have a chat template."""
    resolved = resolve_model(name, revision)
    tokenizer = load_tokenizer(resolved.path, trust_remote_code)
    if not tokenizer.chat_template:
        raise ValueError(f"{flag} {name}: the tokenizer has no chat template.")
    model = load_model(resolved.path, select_dtype(dtype), trust_remote_code).eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return model, tokenizer, resolved


@dataclass
class HeldOut:
    """Which support dialogues a command-line evaluation reads (the data side; what is measured on them is
    ``EvaluationArguments``)."""

    dataset: str | None = None
    split: str = "train"
    dataset_config: str | None = None
    data_format: str = "auto"
    system_prompt: str | None = None  # None: the one the model was trained with, for a chatfreeze run
    max_length: int = 1024
    max_examples: int | None = None

    def load(self, tokenizer, model_path: str):
        """``(dialogues, tokenized dataset or None, system prompt)`` for a model stored at ``model_path``."""
        system_prompt = self.system_prompt if self.system_prompt is not None else trained_system_prompt(model_path)
        if not self.dataset:
            return [], None, system_prompt
        dialogues = load_dialogues(self.dataset, split=self.split, config_name=self.dataset_config,
                                   data_format=self.data_format, system_prompt=system_prompt)[:self.max_examples]
        return dialogues, support_dataset(dialogues, tokenizer, self.max_length, source=self.dataset), system_prompt


def evaluate_checkpoint(model_name_or_path: str, held_out: HeldOut, settings: EvaluationArguments, *,
                        batch_size: int = 4, dtype: str = "float32", revision: str | None = None,
                        trust_remote_code: bool = False) -> dict:
    """Load a model (Hub id or directory) and measure it on ``held_out`` as ``settings`` say, through the same
    evaluator as a training run; returns a flat dict of metrics, counts and settings."""
    model, tokenizer, resolved = load_for_evaluation(model_name_or_path, dtype, revision, trust_remote_code)
    dialogues, dataset, system_prompt = held_out.load(tokenizer, resolved.path)
    evaluator = BeforeAfterEvaluator(tokenizer, settings, dataset, dialogues, system_prompt=system_prompt,
                                     batch_size=batch_size)
    result: dict = {"model": model_name_or_path, "dataset": held_out.dataset} | evaluator.measure(model)
    details = evaluator.details
    result.update({key: details[key] for key in ("support_examples", "support_tokens", "general_windows",
                                                 "general_tokens") if key in details})
    if "general_perplexity" in result:
        result.update(general_text=settings.general_text, window=settings.general_window,
                      stride=settings.general_stride)
    if evaluator.replies:
        replies = next(iter(evaluator.replies.values()))
        result.update(generation_samples=len(replies), replies=replies)
    return result


def compare_models(model_name_or_path: str, base: str, held_out: HeldOut, settings: EvaluationArguments, *,
                   batch_size: int = 4, dtype: str = "float32", output_dir: str | None = None) -> dict:
    """The learn-vs-keep report of ``model_name_or_path`` against ``base``: the same record a training run writes
    to ``evaluation.json`` ("before" = the base, "after" = the model), written to ``output_dir`` when given."""
    base_model, tokenizer, _ = load_for_evaluation(base, dtype, flag="--base")
    model, model_tokenizer, resolved = load_for_evaluation(model_name_or_path, dtype)
    if model_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"--base {base}: its tokenizer differs from {model_name_or_path}'s; self-agreement and "
                         "perplexities compare only models that share a tokenizer.")
    dialogues, dataset, system_prompt = held_out.load(model_tokenizer, resolved.path)
    evaluator = BeforeAfterEvaluator(model_tokenizer, settings, dataset, dialogues, system_prompt=system_prompt,
                                     batch_size=batch_size)
    before = evaluator.measure(base_model, "before")
    del base_model
    after = evaluator.measure(model, "after")
    record = evaluator.record(before, after) | {"model": model_name_or_path, "base": base}
    if output_dir:
        write_evaluation(output_dir, record)
        write_plots(output_dir)
    return record
