"""Learning curves: at every evaluation the Trainer runs during training, the before/after evaluator measures the
facts probe's dev half, the skills probe's short answers and the teacher-forced keep measures
(``measure_during_training``), so a user sees when learning stopped and forgetting began.
``--metric_for_best_model facts_dev_accuracy`` with ``--load_best_model_at_end true`` keeps the checkpoint that knew
the most facts on the dev half (the test half, which the run reports as learned, is never read here);
``--metric_for_best_model facts_dev_accuracy_if_kept`` the one that knew the most among those whose self-agreement and
general-text perplexity stayed within ``--alpha_tolerance`` of the base's (``facts_dev_accuracy_if_kept``).

The points go into the Trainer's eval metrics (``eval_facts_dev_accuracy``, ...: the log, ``trainer_state.json``
and the best-checkpoint choice read them there) and into ``learning_curves.json`` / ``learning_curves.png``. A
point's ``train_seconds`` is the wall time of the optimizer steps so far: evaluations (the Trainer's and these
measures) and checkpoint saves are left out, so runs that evaluate or save at different rates compare fairly.
"""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

from ..evaluation.plots import plot_learning_curves
from ..retention.alpha_selection import keep_excess
from ..rundir import LEARNING_CURVES_FILENAME, LEARNING_CURVES_PLOT, write_json

logger = logging.getLogger(__name__)

# A checkpoint choice on the dev half *and* the keep measures (``--metric_for_best_model facts_dev_accuracy_if_kept``).
KEPT_DEV = "facts_dev_accuracy_if_kept"


def facts_dev_accuracy_if_kept(measured: dict, before: dict | None, tolerance: float) -> float | None:
    """What ``--metric_for_best_model facts_dev_accuracy_if_kept`` ranks checkpoints by: the facts dev-half accuracy of a point
    that keeps -- its self-agreement ratio and general-text perplexity within ``tolerance`` of the base's, the
    ``--select_alpha`` rule (``retention.alpha_selection.keep_excess``) -- and otherwise minus its worst relative
    excess over a bound (< 0). So every keeping checkpoint ranks above every other, the one that knows most facts
    first, and when none keeps, the least over its bound. None without a dev half or a keep measure."""
    if "facts_dev_accuracy" not in measured or not before:
        return None
    excess = keep_excess(measured, before, tolerance)
    if not excess:
        return None
    worst = max(excess.values())
    # A diverged point (an infinite excess) gets -1e9: JSON has no -Infinity.
    return measured["facts_dev_accuracy"] if worst <= 0 else -min(worst, 1e9)


class LearningCurves(TrainerCallback):
    """Adds the evaluator's during-training measures to each evaluation and keeps them as learning curves.

    ``evaluator`` is the main process's ``BeforeAfterEvaluator`` (None on the others, which receive its numbers so
    that every process chooses the same best checkpoint)."""

    def __init__(self, evaluator, output_dir: str, *, before: dict | None, keep_tolerance: float):
        self.evaluator, self.output_dir = evaluator, output_dir
        self.before, self.keep_tolerance = before, keep_tolerance  # the base's measures, for facts_dev_accuracy_if_kept
        self.points: list[dict] = []
        self.started = self.step_ended = 0.0
        self.paused_since: float | None = None  # the end of a step that an evaluation or a save followed
        self.left_out = 0.0  # seconds of evaluations and saves, left out of the training wall time

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.step_ended = time.perf_counter()
        self.paused_since, self.left_out = None, 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        # The Trainer evaluates and saves between a step's end and the next step's beginning.
        if self.paused_since is not None:
            self.left_out += time.perf_counter() - self.paused_since
            self.paused_since = None

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ended = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        self.paused_since = self.step_ended

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        self.paused_since = self.step_ended
        measured = self._measure(model)
        if metrics is not None:
            metrics.update({f"eval_{key}": value for key, value in measured.items()})
        point = {"step": state.global_step, "train_seconds": round(self.step_ended - self.started - self.left_out, 1)}
        point |= measured | ({"eval_loss": metrics["eval_loss"]} if metrics and "eval_loss" in metrics else {})
        self.points.append(point)
        # The Trainer logged its eval metrics before this callback ran: add ours to trainer_state.json's history.
        state.log_history.append({"step": state.global_step} | {f"eval_{k}": v for k, v in measured.items()})
        if self.evaluator is not None:
            logger.info("Learning curve at step %d: %s", state.global_step,
                        ", ".join(f"{k} {v:.4g}" for k, v in point.items() if k != "step"))

    def _measure(self, model) -> dict:
        from accelerate import PartialState
        from accelerate.utils import broadcast_object_list

        measured = {}
        if self.evaluator is not None:
            was_training = model.training
            model.eval()
            measured = self.evaluator.measure_during_training(model)
            model.train(was_training)
            kept = facts_dev_accuracy_if_kept(measured, self.before, self.keep_tolerance)
            if kept is not None:
                measured[KEPT_DEV] = kept
        if PartialState().num_processes > 1:
            measured = broadcast_object_list([measured])[0]
        return measured

    def on_train_end(self, args, state, control, **kwargs):
        if self.evaluator is None or not self.points:
            return
        from pathlib import Path

        out = Path(self.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / LEARNING_CURVES_FILENAME, {
            "points": self.points,
            "measures": "facts_dev_accuracy: the facts probe's dev half (greedy); facts_drilled_accuracy (with "
                        "--facts): questions the drills asked, verbatim (greedy); skills_accuracy: the skills probe's "
                        "short answers (greedy); self_agreement_ratio, support_perplexity, general_perplexity: "
                        "teacher-forced; facts_dev_accuracy_if_kept: facts_dev_accuracy when self-agreement and general "
                        "perplexity are within --alpha_tolerance of the base's, else minus the worst relative excess "
                        "over that bound (what --metric_for_best_model facts_dev_accuracy_if_kept ranks); eval_loss: the "
                        "Trainer's",
            "train_seconds": "wall time of the optimizer steps since training began: evaluations and checkpoint "
                             "saves left out"})
        plot_learning_curves(self.points, out / LEARNING_CURVES_PLOT)
