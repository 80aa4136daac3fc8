"""Optional: EleutherAI's lm-evaluation-harness tasks, before and after (``--lm_eval_tasks hellaswag,arc_easy``).

``lm-eval`` is an optional extra (``pip install "chatfreeze[lm-eval]"``). Its public tasks download their data
from the Hub; ``--lm_eval_include_path DIR`` adds task YAMLs of your own (local data files work offline). Each
task's numeric metrics are reported as ``lm_eval:<task>:<metric>`` and land in the learn-vs-keep report's keep
section. A task that cannot run (no network, unknown name) is listed under ``not_measured`` with the reason.
"""

from __future__ import annotations

import importlib.util
import logging

logger = logging.getLogger(__name__)

PREFIX = "lm_eval:"
INSTALL_HINT = 'pip install "chatfreeze[lm-eval]" (or pip install lm-eval)'


def parse_tasks(value: str | None) -> list[str]:
    return [task.strip() for task in (value or "").split(",") if task.strip()]


def check_available(tasks: list[str]) -> None:
    """Fail before training (not after it) when tasks are asked for and lm-eval is not installed."""
    if tasks and importlib.util.find_spec("lm_eval") is None:
        raise ValueError(f"--lm_eval_tasks {','.join(tasks)}: lm-eval is not installed; {INSTALL_HINT}.")


def run_tasks(model, tokenizer, tasks: list[str], limit: int | None = None, include_path: str | None = None,
              batch_size: int = 8) -> dict[str, float]:
    """``{"lm_eval:<task>:<metric>": value}`` for ``model`` (an in-memory HF model) on ``tasks``."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    harness_model = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    output = lm_eval.simple_evaluate(model=harness_model, tasks=tasks, limit=limit, task_manager=manager,
                                     log_samples=False, verbosity="WARNING")
    metrics = {}
    for task, values in (output or {}).get("results", {}).items():
        for name, value in values.items():
            # "acc,none" -> "acc"; standard errors and aliases are left out.
            metric, _, _ = name.partition(",")
            if (isinstance(value, (int, float)) and not isinstance(value, bool) and not metric.endswith("_stderr")
                    and metric != "sample_len"):
                metrics[f"{PREFIX}{task}:{metric}"] = float(value)
    return metrics
