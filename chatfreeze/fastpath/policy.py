"""When the fast path, its prefix skipping and its cache may run: everything that cannot be exact is switched
off with a reason. Architectures whose logit processing is not verified, DeepSpeed/FSDP and label smoothing turn
off the whole fast path; randomness in the prefix, collators not known to be deterministic and runs that see no
example twice turn off the cache."""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from ..common import text_config
from ..data.dataset import DialogueCollator
from ..modeling.compat import LOGIT_PROCESSING

# Config fields that turn on randomness inside blocks or embeddings when > 0 (functional dropout in
# attention is invisible as a module); heads for classification/summary tasks are not part of a causal LM.
_RANDOM_CONFIG_FIELD = re.compile(r"(dropout|pdrop|layerdrop)")

_UNRELATED_CONFIG_FIELD = re.compile(r"^(classifier|summary|cls)_")


def prefix_randomness(model: nn.Module, blocks_prefix: str, num_prefix_blocks: int) -> str | None:
    """Why embeddings + blocks ``0..num_prefix_blocks-1`` are not deterministic in training, or None if they are."""
    config = getattr(model, "config", None)
    if config is not None:
        for key, value in sorted(text_config(config).to_dict().items()):
            if (_RANDOM_CONFIG_FIELD.search(key) and not _UNRELATED_CONFIG_FIELD.match(key)
                    and isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                return f"config {key}={value} (dropout in the blocks or embeddings)"
    trainable_block = re.compile(re.escape(blocks_prefix) + r"\.(\d+)(\.|$)")
    head = model.get_output_embeddings()
    head_names = {name for name, module in model.named_modules() if module is head}
    for name, module in model.named_modules():
        match = trainable_block.match(name)
        if match and int(match.group(1)) >= num_prefix_blocks:
            continue
        if any(name == h or name.startswith(h + ".") for h in head_names):
            continue
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"{name} is {type(module).__name__}(p={module.p})"
    return None


def collator_is_deterministic(collator) -> bool:
    """Known to give each example the same tokens every epoch (padding aside)."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, default_data_collator

    collator = getattr(collator, "collator", collator)  # our IndexedCollator
    if getattr(collator, "deterministic", False):
        return True  # a user collator can declare it
    return collator is default_data_collator or isinstance(
        collator, (DialogueCollator, DataCollatorWithPadding, DataCollatorForSeq2Seq)
    )


def planned_epochs(args, num_examples: int) -> float | None:
    """How many passes over the data this run makes (None if unknown)."""
    if num_examples <= 0:
        return None
    if args.max_steps is not None and args.max_steps > 0:
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        return args.max_steps * per_step / num_examples
    return float(args.num_train_epochs)


@dataclass(frozen=True)
class TrainerSetup:
    """What the fast path must know about the trainer that runs it, as plain values (the trainer fills them in)."""

    sharded: bool = False  # DeepSpeed/FSDP own the parameters
    data_parallel_gpus: int = 0  # > 1: torch.nn.DataParallel over that many GPUs in one process
    needs_all_logits: bool = False  # label smoothing or a custom compute_loss_func
    world_size: int = 1  # processes training together


def fast_path_refusal(model: nn.Module, settings, setup: TrainerSetup) -> str | None:
    """Why the fast path cannot train ``model`` exactly under ``settings`` (``FastPathSettings``) in a trainer
    described by ``setup``, or None if it can."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if not settings.fast_path:
        return "--fast_path false"
    if setup.sharded:
        return "DeepSpeed/FSDP shard the model; their engines run the plain forward"
    if setup.data_parallel_gpus > 1:
        # torch.nn.DataParallel (several GPUs, one process): its replicas would share one list of captured
        # boundary states across threads. Launch with accelerate/torchrun (DDP) to keep the fast path.
        return (f"torch.nn.DataParallel over {setup.data_parallel_gpus} GPUs in one process (its replicas would "
                "share the captured states); launch with `accelerate launch` or torchrun for DDP instead")
    if setup.needs_all_logits:
        return "label smoothing or a custom compute_loss_func needs logits at every position"
    if model_type not in LOGIT_PROCESSING:
        return (f"model type {model_type!r} is not among those whose LM-head processing is reproduced "
                f"exactly ({', '.join(sorted(LOGIT_PROCESSING))})")
    if model.get_output_embeddings() is None:
        return "the model exposes no output embeddings (LM head)"
    return None


def cache_refusal(fast, setup: TrainerSetup, collator, plan_epochs: float | None) -> str | None:
    """Why the prefix cache of ``fast`` (a ``FastPath``) cannot (or, under ``auto``, should not) be used in this
    run, whose batches ``collator`` makes; None if it can."""
    mode = fast.settings.prefix_cache
    if mode == "off":
        return "--prefix_cache off"
    if setup.world_size > 1:
        # Each rank would hold room for the whole dataset, and the sampler reshuffles which rank sees which
        # example every epoch, so a rank's cache would rarely hold the examples it is given next.
        return (f"{setup.world_size} processes train together and the distributed sampler moves examples between "
                "them every epoch (few cache hits for the memory)")
    if not fast.skip_prefix:
        return "no frozen prefix to cache"
    if not fast.cache_wanted:
        return "the training dataset is not a map-style dataset whose examples can be indexed"
    randomness = prefix_randomness(fast.model, fast.blocks_prefix, fast.runner.num_prefix_blocks)
    if randomness:
        return f"the frozen prefix is random in training: {randomness}; cached states would freeze one draw"
    if not collator_is_deterministic(collator):
        inner = getattr(collator, "collator", collator)
        return (f"the data collator {type(inner).__name__} is not known to give the same tokens every epoch "
                "(set `deterministic = True` on it if it does)")
    if mode == "auto" and plan_epochs is not None and plan_epochs <= 1:
        return f"this run covers {plan_epochs:.3g} epoch(s), so no example is seen twice"
    return None
