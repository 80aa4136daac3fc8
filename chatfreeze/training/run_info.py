"""What ``run_info.json`` records about a training run: versions, the base model and where it came from, every
option (tokens left out), the data reports, the metrics and the command (token redacted)."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict

import torch
import transformers
from accelerate import PartialState

from .. import __version__
from ..modeling.offline import read_provenance
from ..publish.staging import redact_command
from .arguments import FreezeTrainingArguments
from .distributed import parallel_info


def library_versions() -> dict[str, str]:
    import accelerate
    import datasets
    import peft

    return {
        "chatfreeze": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "peft": peft.__version__,
    }


def public_training_args(training_args: FreezeTrainingArguments) -> dict:
    """Training arguments safe to publish: no tokens, whatever their name."""
    return {k: v for k, v in training_args.to_dict().items() if "token" not in k.lower()}


def facts_section(run) -> dict | None:
    """The facts sheet, the drills and the exposure per fact of a ``--facts`` run (None without it)."""
    if run.facts is None:
        return None
    return {"options": asdict(run.facts_args), "facts": len(run.facts.sheet), "per_fact": run.facts.per_fact,
            "drills": len(run.facts.drills), "drills_used": run.facts.report.to_dict() if run.facts.report else None,
            "exposure": run.exposure.to_dict() if run.exposure else None}


def run_info_sections(run) -> dict:
    """What ``run_info.json`` records about ``run`` (a ``recipe.RecipeRun``: this module is imported by the recipe,
    so it does not import it back)."""
    state, args = PartialState(), run.training_args
    return dict(
        started=run.started,
        world_size=state.num_processes,
        parallel=parallel_info(run.trainer),
        versions=library_versions(),
        # Where the base weights came from travels with the run (the card states it wherever it is pushed from).
        base_model=run.resolved.to_dict() | {"dtype": str(run.base_dtype).replace("torch.", ""),
                                             "provenance": read_provenance(run.resolved.path)},
        freeze=asdict(run.freeze_args),
        model=asdict(run.model_args),
        data=dict(
            args=asdict(run.data_args),
            system_prompt=run.data_args.system_prompt,
            train=run.train_report.to_dict() if run.train_report else None,  # None: drills alone (a FAQ)
            eval=run.eval_report.to_dict() if run.eval_report else None,
            replay=run.replay_report.to_dict() if run.replay_report else None,
            text_replay=run.text_replay_report.to_dict() if run.text_replay_report else None,
        ),
        evaluation=asdict(run.eval_args),
        facts=facts_section(run),
        alpha_selection=run.alpha_selection.to_dict() if run.alpha_selection else None,
        training_args=public_training_args(args),
        metrics=run.metrics,
        command=redact_command(sys.argv),
        device=str(args.device),
    )
