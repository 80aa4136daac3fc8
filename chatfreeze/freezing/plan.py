"""The ``FreezePlan``: which parameters of one model train and why; saved as ``freeze_plan.json`` and printed as a
table (like PEFT's ``print_trainable_parameters``, per component). Pure data: the model card reads it without
importing torch. ``chatfreeze.freezing.planner`` makes one."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..rundir import PLAN_FILENAME


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
