"""Measure one checkpoint (a Hub id or a directory): the Python API of ``python -m chatfreeze.evaluate``."""

from __future__ import annotations

import torch

from ..data import load_dialogues, opening_prompts
from ..modeling import load_model, load_tokenizer, resolve_model, select_dtype
from ..rundir import trained_system_prompt
from .generation_metrics import generation_metrics
from .perplexity import (
    general_perplexity,
    load_general_text,
    support_dataset,
    support_perplexity,
    tokenize_general_text,
)


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
        scores, replies = generation_metrics(model, tokenizer, opening_prompts(dialogues, generation_samples),
                                             max_new_tokens)
        result.update(scores, generation_samples=len(replies), replies=replies)
    return result
