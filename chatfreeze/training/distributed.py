"""How a run spreads over processes: CPU processes without GPUs, the run-info record of the layout, and a clean
shutdown of the process group."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType

from . import compat

if TYPE_CHECKING:
    from .arguments import FreezeTrainingArguments
    from .trainer import FreezeTrainer


def train_on_cpu_processes_without_gpus(training_args: FreezeTrainingArguments) -> bool:
    """Make `accelerate launch --multi_gpu` (or a multi-GPU config) on a machine without GPUs train with gloo.

    torchrun starts every process, but accelerate only goes distributed on the CPU when asked to (``cpu=True``):
    otherwise each process trains alone on all the data (world size 1) and all of them write the same output
    dir. When processes were launched but accelerate found no device to be distributed on, set up again as
    ``--use_cpu true`` would have: DistributedType.MULTI_CPU over the process group torchrun's env describes.
    Returns whether it did.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    state = training_args.distributed_state
    if not launched or training_args.use_cpu or state is None or state.distributed_type != DistributedType.NO:
        return False
    training_args.use_cpu = True
    training_args.dataloader_pin_memory = False
    compat.reset_device_setup(training_args)  # set up the devices once more
    _ = training_args.device
    return True


def parallel_info(trainer: FreezeTrainer) -> dict:
    """How this run was spread over processes, for run_info.json (``world_size`` stays a top-level key)."""
    state = PartialState()
    return dict(
        distributed_type=str(state.distributed_type).split(".")[-1],
        backend=state.backend,
        num_processes=state.num_processes,
        mixed_precision=str(trainer.accelerator.mixed_precision),
        per_device_train_batch_size=trainer.args.per_device_train_batch_size,
        gradient_accumulation_steps=trainer.args.gradient_accumulation_steps,
        global_train_batch_size=trainer.args.per_device_train_batch_size
        * trainer.args.gradient_accumulation_steps * state.num_processes,
    )


def end_distributed() -> None:
    """Wait for every process, then shut the process group down here rather than at interpreter exit, where
    the processes tear down in no defined order (runs that had finished were seen to abort there)."""
    PartialState().wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        # A later run in this process (a sweep) sets up a new group instead of using the destroyed one.
        compat.reset_accelerator_state()
