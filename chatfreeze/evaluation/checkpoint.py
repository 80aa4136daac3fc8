"""Measure one checkpoint, or compare a model with its base (Hub ids or directories): the Python API of
``python -m chatfreeze.evaluate``."""

from __future__ import annotations

import torch

from ..data import load_dialogues, opening_prompts
from ..modeling import load_model, load_tokenizer, resolve_model, select_dtype
from ..rundir import trained_system_prompt, write_evaluation
from .before_after import BeforeAfterEvaluator, EvaluationSettings
from .generation_metrics import generation_metrics
from .perplexity import (
    general_perplexity,
    load_general_text,
    support_dataset,
    support_perplexity,
    tokenize_general_text,
)
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
    model, tokenizer, resolved = load_for_evaluation(model_name_or_path, dtype, revision, trust_remote_code)
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
        scores, replies = generation_metrics(model, tokenizer, opening_prompts(dialogues, generation_samples),
                                             max_new_tokens)
        result.update(scores, generation_samples=len(replies), replies=replies)
    return result


def compare_models(
    model_name_or_path: str,
    base: str,
    *,
    dataset: str | None = None,
    facts_probe: str | None = None,
    skills_probe: str | None = "builtin",
    general_text: str | None = None,
    general_text_config: str | None = None,
    general_text_split: str = "test",
    max_examples: int | None = None,
    split: str = "train",
    dataset_config: str | None = None,
    data_format: str = "auto",
    system_prompt: str | None = None,
    max_length: int = 1024,
    window: int = 512,
    stride: int = 512,
    max_windows: int | None = 40,
    generation_samples: int = 0,
    max_new_tokens: int = 96,
    batch_size: int = 4,
    dtype: str = "float32",
    output_dir: str | None = None,
    cache: bool = True,
) -> dict:
    """The learn-vs-keep report of ``model_name_or_path`` against ``base``: the same record a training run writes
    to ``evaluation.json`` ("before" = the base, "after" = the model), written to ``output_dir`` when given."""
    base_model, tokenizer, _ = load_for_evaluation(base, dtype, flag="--base")
    model, model_tokenizer, resolved = load_for_evaluation(model_name_or_path, dtype)
    if model_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"--base {base}: its tokenizer differs from {model_name_or_path}'s; self-agreement and "
                         "perplexities compare only models that share a tokenizer.")
    if system_prompt is None:
        system_prompt = trained_system_prompt(resolved.path)
    dialogues, eval_dataset = [], None
    if dataset:
        dialogues = load_dialogues(dataset, split=split, config_name=dataset_config, data_format=data_format,
                                   system_prompt=system_prompt)[:max_examples]
        eval_dataset = support_dataset(dialogues, model_tokenizer, max_length, source=dataset)
    settings = EvaluationSettings(
        general_text=general_text, general_text_config=general_text_config, general_text_split=general_text_split,
        window=window, stride=stride, max_windows=max_windows, generation_samples=generation_samples,
        max_new_tokens=max_new_tokens, batch_size=batch_size, facts_probe=facts_probe, skills_probe=skills_probe,
        system_prompt=system_prompt, cache=cache,
    )
    evaluator = BeforeAfterEvaluator(model_tokenizer, settings, eval_dataset, dialogues)
    before = evaluator.measure(base_model, "before")
    del base_model
    after = evaluator.measure(model, "after")
    record = evaluator.record(before, after) | {"model": model_name_or_path, "base": base}
    if output_dir:
        write_evaluation(output_dir, record)
        write_plots(output_dir)
    return record
