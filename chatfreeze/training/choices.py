"""What a run chooses after (or while) training, and the checks that it can: ``--select_alpha`` (the trained
blocks moved toward the base, chosen on teacher-forced keep measures) and a best checkpoint on a learning-curve
measure (``--metric_for_best_model facts_dev_accuracy``). Each function reads a ``recipe.RecipeRun``."""

from __future__ import annotations

from accelerate import PartialState

from ..evaluation.metrics_table import CURVE, TEST, describe
from ..retention.alpha_selection import parse_alphas, select_alpha
from ..retention.interpolate import apply_interpolation, trained_state
from .curves import KEPT_DEV


def check_select_alpha(run) -> None:
    """``--select_alpha`` needs the before/after evaluation (its measurements), held-out dialogues and a plan whose
    trained tensors can be interpolated (freeze or full, not LoRA adapters). Checked with the data, before the
    replay's generation: a wrong combination fails in seconds. (An unsharded model: checked in ``train``.)"""
    args = run.training_args
    if not args.select_alpha:
        return
    if not run.eval_args.eval_before_after:
        raise ValueError("--select_alpha: needs --eval_before_after true (it compares each alpha with the base).")
    if run.eval_dataset is None:
        raise ValueError("--select_alpha: needs held-out dialogues (--eval_dataset or --validation_split_ratio).")
    if not run.method.interpolates:
        raise ValueError(f"--select_alpha: interpolates trained tensors, not the adapters of --method "
                         f"{run.method.name}; use --method freeze or full (or `chatfreeze merge RUN OUT --alpha A` "
                         "on the merged run).")


# The learning-curve measures a checkpoint may be chosen on (all higher-is-better): the facts probe's dev half, the
# drilled questions (training data: allowed, never a default) and the dev half held to the keep measures. The
# others (short answers, perplexities, self-agreement) are what the run reports as kept or learned.
CHOOSABLE = ("facts_dev_accuracy", KEPT_DEV, "facts_drilled_accuracy")


def best_metric(training_args) -> str:
    """``--metric_for_best_model`` as the learning curves name it (the Trainer adds ``eval_``), or ``""``."""
    return (training_args.metric_for_best_model or "").removeprefix("eval_")


# The Trainer's own evaluation metric (what --metric_for_best_model defaults to).
TRAINER_LOSS = "loss"
RENAMED = {"facts_dev_kept": KEPT_DEV}  # an earlier name -> the one it has now


def check_metric_name(training_args) -> None:
    """``--metric_for_best_model`` names a measure an evaluation during training produces: the Trainer's loss or a
    learning-curve measure. A test-half measure is never one (the test half is what the run reports as learned,
    and no choice may read it); a misspelt name would fail only at the Trainer's first evaluation."""
    metric = best_metric(training_args)
    if not metric or metric == TRAINER_LOSS or metric in {m.key for m in CURVE} | {KEPT_DEV}:
        return
    if metric in RENAMED:
        raise ValueError(f"--metric_for_best_model {metric}: is now called {RENAMED[metric]}.")
    if describe(metric).half == TEST:
        raise ValueError(f"--metric_for_best_model {metric}: is a test-half measure, which no choice may read (the "
                         f"run reports it as learned, unbiased); choose on {', '.join(CHOOSABLE)} or loss.")
    raise ValueError(f"--metric_for_best_model {metric}: is not measured during training; choose on "
                     f"{', '.join(CHOOSABLE)} or loss.")


def check_best_metric(run) -> None:
    """A best checkpoint chosen on a learning-curve measure needs the curves: the before/after evaluation (its
    base measurements and probes) and evaluations during training."""
    check_metric_name(run.training_args)
    metric = best_metric(run.training_args)
    if metric not in {m.key for m in CURVE} | {KEPT_DEV}:
        return
    if metric not in CHOOSABLE:
        raise ValueError(f"--metric_for_best_model {metric}: is a measure the run reports as learned or kept, not one "
                         f"to choose on (the choice would make it optimistic); choose on {', '.join(CHOOSABLE)} or "
                         "loss.")
    if run.training_args.greater_is_better is False:
        raise ValueError(f"--greater_is_better false with --metric_for_best_model {metric}: it ranks checkpoints "
                         "higher-is-better; leave --greater_is_better unset.")
    if not run.eval_args.eval_before_after or run.training_args.eval_strategy == "no":
        raise ValueError(f"--metric_for_best_model {metric}: is a learning-curve measure; it needs "
                         "--eval_before_after true and an --eval_strategy (steps or epoch).")
    if metric in ("facts_dev_accuracy", KEPT_DEV) and not run.eval_args.facts_probe:
        raise ValueError(f"--metric_for_best_model {metric}: needs a --facts_probe (its dev half).")
    if metric == KEPT_DEV and not run.eval_args.general_text:
        raise ValueError(f"--metric_for_best_model {KEPT_DEV}: needs a --general_text (the checkpoints are held to "
                         "its dev split, the text after the reported windows).")
    if metric == "facts_drilled_accuracy" and (not run.facts_args.facts or run.facts_args.facts_per_fact == 0):
        raise ValueError("--metric_for_best_model facts_drilled_accuracy: needs --facts with drills (the questions "
                         "they ask; not --facts_per_fact 0).")


def final_weights_step(state, training_args) -> int:
    """The step whose weights the run ends with: the best checkpoint's with ``--load_best_model_at_end`` (the
    Trainer reloaded it), else the last step."""
    if training_args.load_best_model_at_end and state.best_global_step:
        return state.best_global_step
    return state.global_step


def choose_alpha(run, evaluator, before: dict | None, base_state: dict):
    """Pick α on the main process (``retention.alpha_selection``) and set every process's model to it."""
    from accelerate.utils import broadcast_object_list

    names = run.plan.trainable_parameter_names
    selection, failure = None, None
    if evaluator is not None:
        try:
            selection = select_alpha(run.model, names, base_state, parse_alphas(run.training_args.select_alpha),
                                     evaluator.measure_teacher_forced, before or {}, run.training_args.alpha_tolerance)
        except Exception as err:  # noqa: BLE001 - re-raised below, on every process (none is left waiting)
            failure = err
    if PartialState().num_processes > 1:
        # Failure or not, every process takes part in the broadcast: one left out would wait for it forever.
        selection, message = broadcast_object_list([selection, None if failure is None else str(failure)])
        if message is not None and failure is None:
            raise RuntimeError(f"--select_alpha failed on the main process: {message}")
    if failure is not None:
        raise failure
    if evaluator is None:  # the other processes: the same weights as the main one
        apply_interpolation(run.model, base_state, trained_state(run.model, names), selection.alpha, names)
    return selection
