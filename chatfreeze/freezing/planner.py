"""Make a ``FreezePlan`` from ``FreezeArguments`` for one model, without changing it (``apply`` does that).

Every decision is made from parameter *names* and module structure, never from shapes or ``numel()`` (under
DeepSpeed ZeRO-3 a partitioned parameter reads shape ``[0]``); sizes are used for the report only."""

from __future__ import annotations

import math
import re
from dataclasses import asdict

import torch
from torch import nn

from .errors import FreezeSpecError
from .layout import locate
from .options import FreezeArguments, parse_layer_count
from .plan import FreezePlan, PlanRow


def _numel(param: torch.Tensor) -> int:
    # ZeRO-3 keeps the real size in ds_numel; only reports use sizes, never decisions.
    return int(getattr(param, "ds_numel", param.numel()))


def resolve_num_frozen(value: str, num_layers: int) -> int:
    """Turn the ``--num_frozen_layers`` form (N, -N, fraction) into a block count, checking the range."""
    count = parse_layer_count(value)
    if isinstance(count, float):
        return math.floor(count * num_layers)
    if not -num_layers <= count <= num_layers:
        raise FreezeSpecError(
            f"--num_frozen_layers {value}: the model has {num_layers} blocks; give 0..{num_layers} blocks to "
            f"freeze, -1..-{num_layers} to train only the top |N|, or a fraction in (0, 1)."
        )
    return num_layers + count if count < 0 else count


def _compile_patterns(patterns: list[str], option: str) -> list[re.Pattern]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise FreezeSpecError(f"--{option} {pattern!r}: not a valid regular expression ({err}).") from None
    return compiled


def _apply_patterns(names: list[str], patterns: list[str], option: str) -> set[str]:
    matched: set[str] = set()
    for pattern, regex in zip(patterns, _compile_patterns(patterns, option), strict=True):
        hits = {name for name in names if regex.fullmatch(name)}
        if not hits:
            raise FreezeSpecError(
                f"--{option} {pattern!r}: matches no parameter (patterns are anchored: the whole name must match; "
                f"names look like {names[len(names) // 2]!r})."
            )
        matched |= hits
    return matched


def make_plan(model: nn.Module, args: FreezeArguments, allow_no_freeze: bool = False) -> FreezePlan:
    """Decide which parameters train. Pure: the model is not changed (``apply_plan`` does that)."""
    layout = locate(model)
    num_frozen = resolve_num_frozen(args.num_frozen_layers, layout.num_layers)
    untie = bool(args.train_lm_head and layout.tied_embeddings and args.freeze_embeddings)

    named = list(model.named_parameters())  # shared (tied) tensors appear once
    names = [name for name, _ in named]
    frozen: set[str] = set()
    for name in names:
        component = layout.component_of(name)
        if component == "block" and layout.block_of(name) < num_frozen:
            frozen.add(name)
        elif component == "embeddings" and args.freeze_embeddings:
            frozen.add(name)
        elif component == "head" and not args.train_lm_head:
            frozen.add(name)
        elif component == "norm" and args.freeze_final_norm:
            frozen.add(name)
    frozen |= _apply_patterns(names, args.extra_frozen_patterns, "extra_frozen_patterns")
    frozen -= _apply_patterns(names, args.extra_trainable_patterns, "extra_trainable_patterns")

    trainable = [name for name in names if name not in frozen]
    if not trainable:
        raise FreezeSpecError(
            "--num_frozen_layers/--freeze_*: the spec freezes every parameter, so nothing would train; "
            "freeze fewer blocks (e.g. --num_frozen_layers -2) or add --extra_trainable_patterns."
        )
    if not frozen and not allow_no_freeze and not untie:
        raise FreezeSpecError(
            "--num_frozen_layers 0 with --freeze_embeddings false freezes nothing: that is full fine-tuning, not "
            "freeze-tuning; freeze at least the embeddings or some blocks."
        )

    sizes = {name: _numel(param) for name, param in named}
    extra_head = _numel(model.get_output_embeddings().weight) if untie else 0
    frozen_layers = sorted(
        {layout.block_of(n) for n in names if layout.block_of(n) is not None}
        - {layout.block_of(n) for n in trainable if layout.block_of(n) is not None}
    )
    lm_head_trainable = bool(args.train_lm_head) or (layout.tied_embeddings and not args.freeze_embeddings)
    plan = FreezePlan(
        model_class=type(model).__name__,
        num_layers=layout.num_layers,
        blocks_prefix=layout.blocks_prefix,
        frozen_layers=frozen_layers,
        trainable_layers=[i for i in range(layout.num_layers) if i not in frozen_layers],
        embeddings_frozen=all(n in frozen for n in names if layout.component_of(n) == "embeddings"),
        tied_embeddings=layout.tied_embeddings,
        untie_lm_head=untie,
        lm_head_trainable=lm_head_trainable,
        final_norm_frozen=all(n in frozen for n in names if layout.component_of(n) == "norm"),
        trainable_parameter_names=trainable + ([f"{layout.head_prefix}.weight"] if untie else []),
        frozen_parameter_names=sorted(frozen, key=names.index),
        total_parameters=sum(sizes.values()) + extra_head,
        trainable_parameters=sum(sizes[n] for n in trainable) + extra_head,
        spec=asdict(args),
    )
    plan.rows = _plan_rows(layout, names, sizes, frozen, untie, extra_head)
    return plan


def _span(indices: list[int]) -> str:
    return f"{indices[0]}" if len(indices) == 1 else f"{indices[0]}-{indices[-1]}"


def _plan_rows(layout, names, sizes, frozen, untie, extra_head) -> list[PlanRow]:
    """Group parameters into table rows: embeddings, runs of frozen/trainable blocks, norm, head."""

    def row(component: str, members: list[str], note: str = "") -> PlanRow:
        total = sum(sizes[n] for n in members)
        return PlanRow(component, total, sum(sizes[n] for n in members if n not in frozen), note)

    rows = []
    embed = [n for n in names if layout.component_of(n) == "embeddings"]
    if embed:
        note = "shared with the LM head" if layout.tied_embeddings and not untie else ""
        rows.append(row("embeddings", embed, note))
    # Consecutive blocks with the same status share a row, e.g. "blocks 0-23 frozen", "blocks 24-29 trainable".
    per_block: dict[int, list[str]] = {}
    for n in names:
        if layout.block_of(n) is not None:
            per_block.setdefault(layout.block_of(n), []).append(n)
    run: list[int] = []
    for index in range(layout.num_layers):
        status = row("", per_block.get(index, [])).status
        if run and row("", per_block.get(run[-1], [])).status != status:
            rows.append(row(f"blocks {_span(run)}", [n for i in run for n in per_block.get(i, [])]))
            run = []
        run.append(index)
    if run:
        rows.append(row(f"blocks {_span(run)}", [n for i in run for n in per_block.get(i, [])]))
    other = [n for n in names if layout.component_of(n) == "norm"]
    if other:
        rows.append(row("final norm" if all("norm" in n or "ln_f" in n for n in other) else "final norm & other", other))
    head = [n for n in names if layout.component_of(n) == "head"]
    if untie:
        rows.append(PlanRow("lm_head", extra_head, extra_head, "untied copy of the embeddings, trained"))
    elif head:
        rows.append(row("lm_head", head, "weight shared with the embeddings" if layout.tied_embeddings else ""))
    elif layout.tied_embeddings:
        status_note = "frozen with them" if embed and all(n in frozen for n in embed) else "trained with them"
        rows.append(PlanRow("lm_head", 0, 0, f"tied to the embeddings: {status_note}"))
    return rows
