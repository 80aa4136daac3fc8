"""What a training batch carries to the fast path: each example's dataset index (for the prefix cache) and
whether its layout (right padding, no packing) lets cached or shared states stand for it."""

from __future__ import annotations

from collections.abc import Callable

import torch

INDEX_COLUMN = "chatfreeze_example_index"
# Per example: the weight of its KL-to-the-base term (--kl_sources: 0 for the sources the KL must not hold back).
KL_WEIGHT_COLUMN = "chatfreeze_kl_weight"
# Columns the fast path reads beside the model's inputs, carried past the user's collator as tensors.
SIDE_COLUMNS = {INDEX_COLUMN: torch.long, KL_WEIGHT_COLUMN: torch.float32}


def with_example_index(dataset):
    """The dataset with an ``INDEX_COLUMN`` per example, or None if it is not a map-style dataset of dicts."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        if INDEX_COLUMN in dataset.column_names:
            return dataset
        return dataset.add_column(INDEX_COLUMN, list(range(len(dataset))))
    if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
        return None
    return _IndexedDataset(dataset)


def example_lengths(dataset) -> list[int] | None:
    import datasets

    try:
        if isinstance(dataset, datasets.Dataset):
            return [len(ids) for ids in dataset["input_ids"]]
        return [len(dataset[i]["input_ids"]) for i in range(len(dataset))]
    except (KeyError, TypeError, IndexError):
        return None


class IndexedCollator:
    """Carries each example's ``SIDE_COLUMNS`` (its dataset index for the prefix cache, its KL weight) past the
    user's collator as tensors."""

    def __init__(self, collator: Callable):
        self.collator = collator

    def __call__(self, features: list[dict]) -> dict:
        present = [name for name in SIDE_COLUMNS if features and name in features[0]]
        if not present:
            return self.collator(features)
        side = {name: torch.tensor([f[name] for f in features], dtype=SIDE_COLUMNS[name]) for name in present}
        batch = self.collator([{k: v for k, v in f.items() if k not in side} for f in features])
        return batch | side


class _IndexedDataset(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], INDEX_COLUMN: index}


def right_padded_layout(model_inputs: dict) -> torch.Tensor | None:
    """``[batch, seq]`` bool mask of the real tokens if the batch is laid out as the cache needs, else None.

    Needed: right padding (each row's tokens first, so their positions and causal context do not depend on
    the batch width) and no caller-supplied position ids or embeddings (packed rows keyed by one index).
    """
    if any(key in model_inputs for key in ("position_ids", "inputs_embeds", "cache", "past_key_values")):
        return None
    input_ids = model_inputs.get("input_ids")
    if input_ids is None or input_ids.dim() != 2:
        return None
    mask = model_inputs.get("attention_mask")
    if mask is None:
        return torch.ones_like(input_ids, dtype=torch.bool)
    if mask.shape != input_ids.shape or not bool(((mask == 0) | (mask == 1)).all()):
        return None
    if mask.shape[1] > 1 and not bool((mask[:, 1:] <= mask[:, :-1]).all()):
        return None
    return mask.bool()
