"""Decide and apply what is frozen: find a causal LM's parts, build a ``FreezePlan``, set ``requires_grad``.

Every decision is made from parameter *names* and module structure, never from shapes or ``numel()``
(under DeepSpeed ZeRO-3 a partitioned parameter reads shape ``[0]``); sizes are used for the report only.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .arguments import FreezeArguments, parse_layer_count

logger = logging.getLogger(__name__)

PLAN_FILENAME = "freeze_plan.json"


class FreezeSpecError(ValueError):
    """A freeze spec that cannot be applied to this model; the message names the option."""


# ----------------------------------------------------------------------------------------------------------
# Locating the parts of a causal LM
# ----------------------------------------------------------------------------------------------------------


@dataclass
class ModelLayout:
    """Qualified parameter-name prefixes of a causal LM's parts."""

    blocks_prefix: str  # e.g. "model.layers" (Llama), "transformer.h" (GPT-2), "gpt_neox.layers"
    num_layers: int
    embedding_prefixes: list[str]  # token embeddings first, then learned position embeddings if any
    head_prefix: str | None  # e.g. "lm_head"; None if the model has no separate output projection
    tied_embeddings: bool

    def block_of(self, name: str) -> int | None:
        match = re.match(re.escape(self.blocks_prefix) + r"\.(\d+)\.", name)
        return int(match.group(1)) if match else None

    def component_of(self, name: str) -> str:
        """``embeddings``, ``block``, ``head`` or ``norm`` (the final norm and any other top-level parameter)."""
        if self.block_of(name) is not None:
            return "block"
        if any(name.startswith(prefix + ".") for prefix in self.embedding_prefixes):
            return "embeddings"
        if self.head_prefix and name.startswith(self.head_prefix + "."):
            return "head"
        return "norm"


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(module): name for name, module in model.named_modules()}


def _configured_num_layers(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of transformer blocks: uniform, holds parameters, and as long as the config says."""
    expected = _configured_num_layers(model)
    candidates: list[tuple[str, nn.ModuleList]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        uniform = len({type(child) for child in module}) == 1
        has_params = any(True for _ in module[0].parameters())
        if uniform and has_params:
            candidates.append((name, module))
    exact = [c for c in candidates if expected is None or len(c[1]) == expected]
    # The blocks are the outermost qualifying list (a block may itself hold lists, e.g. MoE experts).
    exact = [c for c in exact if not any(c[0].startswith(o[0] + ".") for o in exact if o is not c)]
    if len(exact) == 1:
        return exact[0]
    found = ", ".join(f"{n} ({len(m)} x {type(m[0]).__name__})" for n, m in candidates) or "no ModuleList"
    raise FreezeSpecError(
        f"--model_name_or_path: cannot find the transformer blocks of {type(model).__name__} "
        f"(config says {expected} layers; found {found}). Use --extra_frozen_patterns to freeze by name."
    )


def locate(model: nn.Module) -> ModelLayout:
    """Find the input embeddings, the ordered blocks, the LM head and whether head and embeddings are tied."""
    names = _module_names(model)
    blocks_prefix, blocks = find_blocks(model)
    input_embeddings = model.get_input_embeddings()
    if input_embeddings is None or id(input_embeddings) not in names:
        raise FreezeSpecError(f"--model_name_or_path: {type(model).__name__} exposes no input embeddings.")
    embedding_prefixes = [names[id(input_embeddings)]]
    # Learned position embeddings (GPT-2's wpe, OPT's embed_positions) belong with the token embeddings:
    # both sit below block 0 and encode what the pretrained model knows about its input.
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and module is not input_embeddings and not name.startswith(blocks_prefix):
            embedding_prefixes.append(name)
    output_embeddings = model.get_output_embeddings()
    head_prefix = names.get(id(output_embeddings)) if output_embeddings is not None else None
    tied = bool(
        output_embeddings is not None
        and getattr(output_embeddings, "weight", None) is not None
        and output_embeddings.weight is input_embeddings.weight
    )
    return ModelLayout(blocks_prefix, len(blocks), embedding_prefixes, head_prefix, tied)


# ----------------------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------------------


def _numel(param: torch.Tensor) -> int:
    # ZeRO-3 keeps the real size in ds_numel; only reports use sizes, never decisions.
    return int(getattr(param, "ds_numel", param.numel()))


@dataclass
class PlanRow:
    component: str
    parameters: int
    trainable_parameters: int
    note: str = ""

    @property
    def status(self) -> str:
        if self.trainable_parameters == 0:
            return "frozen"
        if self.trainable_parameters == self.parameters:
            return "trainable"
        return f"partly trainable ({self.trainable_parameters:,} of {self.parameters:,})"


@dataclass
class FreezePlan:
    """What is frozen and why, for one model. The trainer receives it; it is saved as ``freeze_plan.json``."""

    model_class: str
    num_layers: int
    blocks_prefix: str
    frozen_layers: list[int]
    trainable_layers: list[int]
    embeddings_frozen: bool
    tied_embeddings: bool  # tied in the pretrained model
    untie_lm_head: bool  # the plan copies a tied head so it can train while the embeddings stay frozen
    lm_head_trainable: bool
    final_norm_frozen: bool
    trainable_parameter_names: list[str]
    frozen_parameter_names: list[str]
    total_parameters: int
    trainable_parameters: int
    rows: list[PlanRow] = field(default_factory=list)
    spec: dict = field(default_factory=dict)

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_parameters / self.total_parameters if self.total_parameters else 0.0

    @property
    def first_trainable_layer(self) -> int:
        return self.trainable_layers[0] if self.trainable_layers else self.num_layers

    def to_dict(self) -> dict:
        data = asdict(self)
        data["trainable_percent"] = round(100 * self.trainable_fraction, 4)
        return data

    def save(self, output_dir: str | Path) -> Path:
        path = Path(output_dir) / PLAN_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> FreezePlan:
        path = Path(path)
        if path.is_dir():
            path = path / PLAN_FILENAME
        data = json.loads(path.read_text())
        data.pop("trainable_percent", None)
        data["rows"] = [PlanRow(**row) for row in data.get("rows", [])]
        return cls(**data)

    def format_table(self) -> str:
        tie = "tied to the LM head" if self.tied_embeddings else "untied"
        header = f"Freeze plan for {self.model_class}: {self.num_layers} blocks, embeddings {tie}"
        width = max(len(row.component) for row in self.rows) + 2
        lines = [header, f"{'component':<{width}}{'parameters':>14}  status"]
        lines.append("-" * (width + 40))
        for row in self.rows:
            note = f"  ({row.note})" if row.note else ""
            lines.append(f"{row.component:<{width}}{row.parameters:>14,}  {row.status}{note}")
        lines.append("-" * (width + 40))
        lines.append(f"{'total':<{width}}{self.total_parameters:>14,}")
        lines.append(
            f"{'trainable':<{width}}{self.trainable_parameters:>14,}  {100 * self.trainable_fraction:.2f}% of all"
        )
        return "\n".join(lines)


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


# ----------------------------------------------------------------------------------------------------------
# Applying it
# ----------------------------------------------------------------------------------------------------------


def untie_lm_head(model: nn.Module) -> None:
    """Give the LM head its own copy of the embedding matrix and record in the config that they are untied."""
    head = model.get_output_embeddings()
    head.weight = nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    if text_config is not None and text_config is not model.config:
        text_config.tie_word_embeddings = False


def apply_plan(model: nn.Module, plan: FreezePlan) -> None:
    """Set ``requires_grad`` from the plan (by name). Call before the optimizer and any DDP/FSDP wrapper exist."""
    if plan.untie_lm_head and model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        untie_lm_head(model)
    trainable = set(plan.trainable_parameter_names)
    seen = set()
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
        seen.add(name)
    missing = trainable - seen
    if missing:
        raise FreezeSpecError(
            f"freeze plan does not fit this model: no parameter named {sorted(missing)[0]!r} "
            f"(plan made for {plan.model_class})."
        )


def frozen_fingerprints(model: nn.Module) -> dict[str, str]:
    """A hash of every frozen tensor's bytes, to prove after training that none of them moved."""
    import hashlib

    prints = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            data = param.detach().cpu().contiguous().view(torch.uint8).numpy()
            prints[name] = hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()
    return prints


def changed_frozen_tensors(model: nn.Module, before: dict[str, str]) -> list[str]:
    after = frozen_fingerprints(model)
    return [name for name, digest in before.items() if after.get(name) != digest]
