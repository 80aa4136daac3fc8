"""Where training depends on private internals of transformers and accelerate, in one place.

Written against transformers 5.x and accelerate 1.x (the ranges ``pyproject.toml`` allows);
``tests/test_compat.py`` checks each assumption against the installed versions and fails loudly when a release
changes it.
"""

from __future__ import annotations

import torch


def reset_device_setup(training_args) -> None:
    """Make ``training_args.device`` set the devices up again. ``TrainingArguments._setup_devices`` is a
    ``functools.cached_property`` (transformers 5.x): its value lives in the instance ``__dict__``."""
    training_args.__dict__.pop("_setup_devices", None)


def reset_accelerator_state() -> None:
    """Forget accelerate's process-wide singletons, so a later run in this process (a sweep) sets up a new
    process group instead of using a destroyed one. ``AcceleratorState._reset_state`` (accelerate 1.x)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def keep_signature_column(trainer, column: str) -> None:
    """Make ``remove_unused_columns`` keep ``column``. Trainer (5.x) computes the kept columns once, in the private
    ``_set_signature_columns_if_needed``, into ``_signature_columns``; call from an override of that method."""
    if column not in trainer._signature_columns:
        trainer._signature_columns.append(column)


def training_loader_parts(trainer, dataset, collator):
    """``(dataset, collator)`` with unused columns removed exactly as ``Trainer.get_train_dataloader`` does (5.x:
    ``_remove_unused_columns`` for a ``datasets.Dataset``, ``_get_collator_with_removed_columns`` otherwise)."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        return trainer._remove_unused_columns(dataset), collator
    return dataset, trainer._get_collator_with_removed_columns(collator)


def scale_loss_like_trainer(trainer, loss: torch.Tensor, num_items) -> torch.Tensor:
    """The factor ``Trainer.compute_loss`` (5.x) applies after the model's loss when tokens are averaged across
    devices: the per-device sum was divided by the token count of all devices, and DDP averages gradients over
    processes, so the loss is multiplied back by the number of processes (``n_gpu`` under DataParallel)."""
    args = trainer.args
    if args.average_tokens_across_devices and trainer.model_accepts_loss_kwargs and num_items is not None:
        scale = trainer.accelerator.num_processes // trainer.get_tp_size()
        loss = loss * (scale if args.n_gpu <= 1 else args.n_gpu)
    return loss


def prepare_inputs(trainer, inputs: dict) -> dict:
    """A batch moved to the trainer's device as its own steps do (``Trainer._prepare_inputs``, 5.x)."""
    return trainer._prepare_inputs(inputs)


class EpochSeededSampler(torch.utils.data.Sampler):
    """A sampler that would draw its order from the global RNG, drawn instead from ``seed + epoch``.

    Trainer (5.x) builds ``group_by_length``'s ``LengthGroupedSampler`` without a generator, so each epoch's order
    comes from the global RNG when the epoch starts. A run resumed mid-epoch restores the checkpoint's RNG only
    after drawing that epoch's order (``_run_epoch``: ``rng_to_sync``), so it trained on other batches than the run
    it resumed. accelerate (1.x) ``DataLoaderShard.set_epoch`` reaches ``batch_sampler.sampler.set_epoch`` (through
    the ``SkipBatchSampler`` of a resumed epoch too) before each epoch's ``iter`` (``tests/test_resume.py`` checks
    both).
    """

    def __init__(self, sampler, seed: int):
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        self.sampler.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(self.sampler)


def seeded_by_epoch(sampler, args):
    """``sampler`` wrapped in ``EpochSeededSampler`` if it is transformers' generator-less length-grouped one."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    if not isinstance(sampler, LengthGroupedSampler) or sampler.generator is not None:
        return sampler
    return EpochSeededSampler(sampler, args.data_seed if args.data_seed is not None else args.seed)
