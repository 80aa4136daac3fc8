"""Learning curves: at every evaluation the Trainer runs during training, the before/after evaluator measures the
facts probe's dev half, the skills probe's short answers and the teacher-forced keep measures
(``measure_during_training``), so a user sees when learning stopped and forgetting began.
``--metric_for_best_model facts_dev_accuracy`` with ``--load_best_model_at_end true`` keeps the checkpoint that knew
the most facts on the dev half (the test half, which the run reports as learned, is never read here);
``--metric_for_best_model facts_dev_accuracy_if_kept`` the one that knew the most among those that kept the base's
skills on the keep measures' dev splits (``facts_dev_accuracy_if_kept``).

The points go into the Trainer's eval metrics (``eval_facts_dev_accuracy``, ...: the log, ``trainer_state.json``
and the best-checkpoint choice read them there) and into ``learning_curves.json`` / ``learning_curves.png``. A
point's ``train_seconds`` is the wall time of the optimizer steps so far: evaluations (the Trainer's and these
measures) and checkpoint saves are left out, so runs that evaluate or save at different rates compare fairly.
Each checkpoint keeps the points and seconds so far (its own ``learning_curves.json``), so a resumed run keeps
the points measured before the interruption and continues their seconds.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from transformers import TrainerCallback

from ..evaluation.metrics_table import CURVE, TRAINER_METRICS
from ..evaluation.plots import plot_learning_curves
from ..retention.alpha_selection import keep_excess
from ..rundir import LEARNING_CURVES_FILENAME, LEARNING_CURVES_PLOT, read_json, write_json

logger = logging.getLogger(__name__)

# A checkpoint choice on the dev half *and* the general text's dev split (a row of the metrics table).
KEPT_DEV = "facts_dev_accuracy_if_kept"
TRAINER_LOSS = "eval_loss"  # the Trainer's own held-out support loss, also kept in each point

# The keep measure a checkpoint is held to, and the reported one whose bound it takes (keep_excess's rule): the
# general text's dev split, never the reported general perplexity, so what the run reports as kept is unchosen.
DEV_KEEP, REPORTED_KEEP = "general_dev_perplexity", "general_perplexity"


def facts_dev_accuracy_if_kept(measured: dict, before: dict | None, tolerance: float) -> float | None:
    """What ``--metric_for_best_model facts_dev_accuracy_if_kept`` ranks checkpoints by: the facts dev-half
    accuracy of a point whose general-text perplexity on the dev split stayed within ``tolerance`` of the base's
    (the ``--select_alpha`` rule, ``retention.alpha_selection.keep_excess``), else minus its relative excess over
    that bound (< 0). So every keeping checkpoint ranks above every other, the one that knows most facts first, and
    when none keeps, the least over its bound. None without a dev half or the dev split."""
    if "facts_dev_accuracy" not in measured or not before or DEV_KEEP not in measured or DEV_KEEP not in before:
        return None
    excess = keep_excess({REPORTED_KEEP: measured[DEV_KEEP]}, {REPORTED_KEEP: before[DEV_KEEP]}, tolerance)
    worst = max(excess.values())
    # A diverged point (an infinite excess) gets -1e9: JSON has no -Infinity.
    return measured["facts_dev_accuracy"] if worst <= 0 else -min(worst, 1e9)


def check_dev_keep_measure(before: dict) -> None:
    """``--metric_for_best_model facts_dev_accuracy_if_kept`` needs the base's dev-split measure (refused before
    training: a general text too short to leave text after the reported windows, or not found)."""
    if DEV_KEEP not in before:
        raise ValueError(f"--metric_for_best_model {KEPT_DEV}: the base has no general-text perplexity on the dev "
                         "split (it needs a --general_text with text left after the --general_max_windows reported "
                         "windows); nothing to hold the choice to.")


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
        self.resumed_seconds = 0.0  # the training seconds of the checkpoint a resumed run starts from

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.step_ended = time.perf_counter()
        self.paused_since, self.left_out = None, 0.0
        # A resumed run starts at its checkpoint's step (the Trainer has loaded its state): that checkpoint's own
        # points and seconds go on, the points measured after it (the steps about to be redone) do not.
        saved = read_json(self._checkpoint(state) / LEARNING_CURVES_FILENAME) if state.global_step else None
        self.points = list((saved or {}).get("points", []))
        self.resumed_seconds = float((saved or {}).get("seconds_at_save", 0.0))

    def _checkpoint(self, state) -> Path:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        return Path(self.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"

    def train_seconds(self) -> float:
        return self.resumed_seconds + self.step_ended - self.started - self.left_out

    def on_step_begin(self, args, state, control, **kwargs):
        # The Trainer evaluates and saves between a step's end and the next step's beginning.
        if self.paused_since is not None:
            self.left_out += time.perf_counter() - self.paused_since
            self.paused_since = None

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ended = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        self.paused_since = self.step_ended
        checkpoint = self._checkpoint(state)
        if self.evaluator is not None and checkpoint.is_dir():  # the points so far travel with the checkpoint
            write_json(checkpoint / LEARNING_CURVES_FILENAME,
                       {"points": self.points, "seconds_at_save": round(self.train_seconds(), 1)})

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        self.paused_since = self.step_ended
        measured = self._measure(model)
        if metrics is not None:
            metrics.update({f"eval_{key}": value for key, value in measured.items()})
        point = {"step": state.global_step, "train_seconds": round(self.train_seconds(), 1)}
        point |= measured | ({TRAINER_LOSS: metrics[TRAINER_LOSS]} if metrics and TRAINER_LOSS in metrics else {})
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
        out = Path(self.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        measures = {metric.key: metric.label for metric in CURVE} | {TRAINER_LOSS: TRAINER_METRICS[TRAINER_LOSS]}
        write_json(out / LEARNING_CURVES_FILENAME, {
            "points": self.points,
            "measures": {key: label for key, label in measures.items() if any(key in p for p in self.points)},
            "train_seconds": "wall time of the optimizer steps since training began (across a resume): evaluations "
                             "and checkpoint saves left out"})
        plot_learning_curves(self.points, out / LEARNING_CURVES_PLOT)
