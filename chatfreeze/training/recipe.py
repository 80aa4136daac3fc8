"""The freeze-tuning recipe as steps: start -> load -> plan -> data -> trainer -> train -> finish.

``run_training`` runs them in order (``chatfreeze train`` / ``scripts/train.py``); scripts that compare methods
(the benchmark) call the same steps and never wire a trainer by hand. Each step reads and fills a
``RecipeRun``, so a caller can stop after any step, look at what it made, or replace what comes next. What the
output directory may hold before a run is ``output_dir``'s concern; what ``run_info.json`` records, ``run_info``'s;
where the training examples come from, ``sources``'; what a run chooses (an alpha, a best checkpoint), ``choices``'.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from accelerate import PartialState
from transformers import Trainer

from .. import timings
from ..common import is_sharded, share_weights_like_umask
from ..data import DialogueCollator, opening_prompts
from ..data.options import DataArguments
from ..evaluation import EvaluationArguments, evaluator_for_run, write_plots
from ..facts import FactsArguments
from ..facts.generate import prepare_faq
from ..facts.neighbours import neighbours_of
from ..freezing import FreezeArguments, FreezePlan, make_plan
from ..generation import generate_reply, support_generation_config
from ..modeling import (
    ModelArguments,
    ResolvedModel,
    check_tokenizer_fits,
    load_model,
    load_tokenizer,
    resolve_model,
    select_dtype,
)
from ..modeling.delta import write_delta
from ..progress import progress
from ..progress import set_enabled as show_progress
from ..publish.hub import take_training_push
from ..retention.alpha_selection import check_keep_measures
from ..retention.interpolate import trained_state
from ..rundir import read_run_info, write_run_info, write_samples
from .arguments import FreezeTrainingArguments
from .choices import (
    best_metric,
    check_best_metric,
    check_metric_name,
    check_select_alpha,
    choose_alpha,
    final_weights_step,
)
from .curves import KEPT_DEV, LearningCurves, check_dev_keep_measure
from .distributed import end_distributed, train_on_cpu_processes_without_gpus
from .methods import TrainingMethod, get_method
from .output_dir import check_output_dir
from .run_info import run_info_sections
from .sources import add_facts, add_replay, add_text_replay, mix_sources, prepare_datasets
from .trainer import FreezeTrainer

logger = logging.getLogger(__name__)

NUM_SAMPLE_REPLIES = 3


@dataclass
class RecipeRun:
    """Everything one run has made so far; each step fills its part."""

    model_args: ModelArguments
    data_args: DataArguments
    eval_args: EvaluationArguments
    freeze_args: FreezeArguments
    training_args: FreezeTrainingArguments
    resume_from: str | None = None
    hub_push: Any = None
    started: str = ""
    resolved: ResolvedModel | None = None
    model: Any = None
    tokenizer: Any = None
    base_dtype: torch.dtype = torch.float32
    plan: FreezePlan | None = None
    train_dataset: Any = None
    eval_dataset: Any = None
    train_report: Any = None
    eval_report: Any = None
    eval_dialogues: list = field(default_factory=list)
    replay_report: Any = None
    alpha_selection: Any = None  # retention.alpha_selection.AlphaSelection, with --select_alpha
    method: TrainingMethod | None = None  # --method's object (training.methods): everything that differs by method
    facts_args: FactsArguments = field(default_factory=FactsArguments)
    train_dialogues: list = field(default_factory=list)
    replay_dataset: Any = None
    text_replay_dataset: Any = None
    text_replay_report: Any = None  # retention.text_replay.TextReplayReport, with --text_replay_ratio
    facts: Any = None  # facts.TrainingDrills, with --facts: the sheet and the drills mixed into training
    exposure: Any = None  # facts.ExposureReport, with --facts: how many training examples state each fact
    trainer: FreezeTrainer | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def is_main_process(self) -> bool:
        return PartialState().is_main_process


# ----------------------------------------------------------------------------------------------------------
# start: processes, logging, the output directory, the Hub options
# ----------------------------------------------------------------------------------------------------------


def setup_logging(training_args: FreezeTrainingArguments) -> None:
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    logging.getLogger("chatfreeze").setLevel(level)
    transformers.utils.logging.set_verbosity(level if level > logging.INFO else logging.WARNING)


def note_cpu_threads(training_args: FreezeTrainingArguments, num_processes: int) -> None:
    """On CPU, say how many threads each process computes with: ``accelerate launch`` sets OMP_NUM_THREADS=1
    unless given ``--num_cpu_threads_per_process`` (or ``--cpu``), which halves a 2-core machine's speed."""
    if torch.cuda.is_available() and not training_args.use_cpu:
        return
    threads, cores = torch.get_num_threads(), os.cpu_count() or 1
    if threads * num_processes < cores:
        logger.warning("Training on CPU with %d thread(s) per process, %d process(es), on %d cores "
                       "(OMP_NUM_THREADS=%s): `accelerate launch --num_cpu_threads_per_process %d` uses them all.",
                       threads, num_processes, cores, os.environ.get("OMP_NUM_THREADS", "unset"),
                       max(1, cores // num_processes))
    else:
        logger.info("Training on CPU with %d thread(s) per process.", threads)


def start(model_args: ModelArguments, data_args: DataArguments, eval_args: EvaluationArguments,
          freeze_args: FreezeArguments, training_args: FreezeTrainingArguments,
          facts_args: FactsArguments | None = None) -> RecipeRun:
    """Set up processes and logging, check the output directory, take the Hub options out of the Trainer's."""
    on_cpu_processes = train_on_cpu_processes_without_gpus(training_args)
    setup_logging(training_args)
    state = PartialState()
    # The long loops below the Trainer (replay, evaluation, prefix cache, delta) show progress as its bars do.
    show_progress(state.is_local_main_process and not training_args.disable_tqdm)
    if on_cpu_processes and state.is_main_process:
        logger.info("No GPU found: %d CPU processes train together over %s.", state.num_processes, state.backend)
    if state.is_main_process:
        note_cpu_threads(training_args, state.num_processes)
    run = RecipeRun(model_args, data_args, eval_args, freeze_args, training_args,
                    method=get_method(training_args.method), facts_args=facts_args or FactsArguments())
    prepare_faq(run.facts_args, data_args, eval_args, training_args.seed)  # --faq: its drafted sheet and probe
    derive_training_args(run)
    check_metric_name(training_args)  # a misspelt or test-half metric fails before the model loads
    count_trained_tokens(training_args)
    run.resume_from = check_output_dir(training_args)
    # chatfreeze pushes once, model card included, after the final save: the Trainer must not push, nor pickle
    # the token into training_args.bin. Fails here (no token, bad repo id) rather than after training.
    run.hub_push = take_training_push(training_args)
    run.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return run


# ----------------------------------------------------------------------------------------------------------
# load, plan, data
# ----------------------------------------------------------------------------------------------------------


def derive_training_args(run: RecipeRun) -> None:
    """Every training argument the run derives from the others, decided once here before anything is built: the
    precision, what the method cannot honour (KL without a frozen prefix), no evaluation without held-out data."""
    args = run.training_args
    if run.model_args.model_dtype == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported() \
            and not (args.bf16 or args.fp16):
        # Keep fp32 master weights and turn on bf16 autocast on capable GPUs. The Accelerator reads
        # `mixed_precision`, which TrainingArguments derived from `bf16` in __post_init__.
        args.bf16 = True
        args.mixed_precision = "bf16"
    run.method.drop_unsupported(args)
    if not run.data_args.eval_dataset and not run.data_args.validation_split_ratio and args.eval_strategy != "no":
        args.eval_strategy = "no"


def count_trained_tokens(args: FreezeTrainingArguments) -> None:
    """Count the real (non-padding) tokens training sees, for the tokens/s of the timings table: the Trainer's own
    counter (``--include_num_input_tokens_seen``), unless the user chose how it counts."""
    if args.include_num_input_tokens_seen in ("no", False):
        args.include_num_input_tokens_seen = "non_padding"


def load_dtype(model_args: ModelArguments) -> torch.dtype:
    """Weights dtype to load: the one asked for, or fp32 master weights with ``auto``."""
    return torch.float32 if model_args.model_dtype == "auto" else select_dtype(model_args.model_dtype)


def load(run: RecipeRun) -> RecipeRun:
    """Resolve (main process first, so only one process downloads or converts) and load model + tokenizer."""
    model_args, state = run.model_args, PartialState()
    with state.main_process_first():
        run.resolved = resolve_model(model_args.model_name_or_path, model_args.model_revision)
    if state.is_main_process:
        logger.info("Model: %s", run.resolved.describe())
    run.tokenizer = load_tokenizer(run.resolved.path, model_args.trust_remote_code)
    if not run.tokenizer.chat_template:
        raise ValueError(
            f"--model_name_or_path {model_args.model_name_or_path}: the tokenizer has no chat template; "
            "chatfreeze fine-tunes chat models (use an -Instruct/-Chat checkpoint)."
        )
    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    dtype = load_dtype(model_args)
    run.model = load_model(run.resolved.path, dtype, model_args.trust_remote_code, **extra)
    check_tokenizer_fits(run.model, run.tokenizer, f"--model_name_or_path {model_args.model_name_or_path}")
    run.base_dtype = run.model.config.dtype if isinstance(run.model.config.dtype, torch.dtype) else torch.float32
    return run


def plan(run: RecipeRun, allow_no_freeze: bool = False) -> RecipeRun:
    """Decide what is frozen and print the plan (the trainer applies it). The method says which tensors it may
    change (``--method full`` plans nothing frozen, LoRA the adapted blocks)."""
    method = run.method
    spec, method_allows = method.plan_spec(run.freeze_args, run.training_args)
    if run.is_main_process and method.describe(run.freeze_args, run.training_args, run.model):
        logger.info("%s", method.describe(run.freeze_args, run.training_args, run.model))
    run.plan = make_plan(run.model, spec, allow_no_freeze=allow_no_freeze or method_allows)
    run.plan.spec.update(method.spec_record(run.training_args))
    if run.is_main_process:
        logger.info("\n%s", run.plan.format_table())
        if run.plan.tied_embeddings and run.plan.embeddings_frozen and not run.plan.untie_lm_head:
            logger.info("The LM head is tied to the frozen embeddings, so it stays frozen too "
                        "(--train_lm_head true unties and trains a copy).")
    return run


def data(run: RecipeRun) -> RecipeRun:
    (run.train_dataset, run.eval_dataset, run.train_report, run.eval_report, run.eval_dialogues,
     run.train_dialogues) = prepare_datasets(run.data_args, run.tokenizer, run.training_args.seed)
    check_select_alpha(run)
    check_best_metric(run)
    num_support = len(run.train_dataset) if run.train_dataset is not None else 0
    if run.facts_args.facts and not num_support:
        run = add_facts(run, num_support)  # drills alone (a FAQ, no dialogues): the replays are sized on them
    if run.training_args.replay_ratio > 0:
        run = add_replay(run)
    if run.training_args.text_replay_ratio > 0:
        run = add_text_replay(run)
    if run.facts_args.facts and num_support:
        run = add_facts(run, num_support)
    run.train_dataset = mix_sources(run)
    return run


# ----------------------------------------------------------------------------------------------------------
# trainer, train
# ----------------------------------------------------------------------------------------------------------


def build_trainer(run: RecipeRun, trainer_class: type[Trainer] = FreezeTrainer, **kwargs) -> RecipeRun:
    """The ``FreezeTrainer`` (or a subclass; ``kwargs`` go to it, e.g. ``callbacks``) for this run's plan and data.

    A plain ``transformers.Trainer`` class (or subclass) trains the same model, data and arguments with the plan
    applied as ``requires_grad`` only: the "freeze by hand" baseline, without the fast path or the guard.
    """
    run.model.generation_config = support_generation_config(run.model.generation_config, run.tokenizer)
    common = dict(model=run.model, args=run.training_args, train_dataset=run.train_dataset,
                  eval_dataset=run.eval_dataset, data_collator=DialogueCollator(run.tokenizer),
                  processing_class=run.tokenizer, **kwargs)
    run.trainer = run.method.build_trainer(run, trainer_class, common)
    return run


def final_eval_metrics(trainer: FreezeTrainer, support_perplexity: float | None = None, logged: bool = True) -> dict:
    """Eval metrics of the final weights: the evaluation the Trainer ran at the last step if it did (and
    ``logged``: not when ``--select_alpha`` moved the weights since; the chosen checkpoint's with
    ``--load_best_model_at_end``), else the before/after evaluator's support
    perplexity of the final weights (the same held-out tokens, token-weighted: no second pass over them), else a
    ``trainer.evaluate()``."""
    step = final_weights_step(trainer.state, trainer.args)
    for entry in reversed(trainer.state.log_history if logged else []):
        if "eval_loss" in entry and entry.get("step") == step:
            metrics = {k: v for k, v in entry.items() if k.startswith("eval_")}
            break
    else:
        if support_perplexity is not None:
            return {"eval_loss": math.log(support_perplexity), "eval_perplexity": support_perplexity}
        metrics = trainer.evaluate()
    metrics["eval_perplexity"] = math.exp(metrics["eval_loss"])
    return metrics


def training_speed(trainer: Trainer, metrics: dict, tokens_before: int) -> dict:
    """Optimizer steps, steps/s and real (non-padding) tokens/s of the training this process ran."""
    seconds = metrics.get("train_runtime") or 0.0
    tokens = trainer.state.num_input_tokens_seen - tokens_before
    speed = {"steps": trainer.state.global_step}
    if seconds > 0:
        if metrics.get("train_steps_per_second"):
            speed["steps_per_s"] = round(metrics["train_steps_per_second"], 4)
        if tokens > 0:
            speed["tokens_per_s"] = round(tokens / seconds, 1)
    return speed


def train(run: RecipeRun) -> RecipeRun:
    """Measure the base (if asked), train, measure again; ``run.metrics`` gets train, eval and before/after."""
    trainer = run.trainer
    if run.resume_from and run.is_main_process:
        logger.info("Resuming from %s", run.resume_from)
    # Support perplexity, forgetting and reply quality of the base model (main process; None when not asked).
    evaluator = evaluator_for_run(
        run.eval_args, run.tokenizer, trainer.model,
        # The base's frozen-prefix states are reused only under FreezeTrainer, which applies this plan unchanged.
        run.plan if isinstance(trainer, FreezeTrainer) else None, eval_dataset=run.eval_dataset,
        eval_dialogues=run.eval_dialogues, system_prompt=run.data_args.system_prompt,
        batch_size=run.training_args.per_device_eval_batch_size, is_main_process=trainer.is_world_process_zero(),
        sharded=is_sharded(trainer), facts_data=run.facts,
        neighbours=neighbours_of(run.facts.sheet) if run.facts is not None else None)
    if run.training_args.select_alpha and is_sharded(trainer):
        raise ValueError("--select_alpha: the model is sharded (FSDP/DeepSpeed); run `chatfreeze merge --alpha` "
                         "and `chatfreeze evaluate` on the saved run instead.")
    before = None
    if evaluator:
        with run.method.base_model(run.model), timings.phase("Evaluation before"):
            before = evaluator.measure(run.model, "before")
    if run.eval_args.eval_before_after and run.training_args.eval_strategy != "no":
        # Every process gets the callback (the others receive the main process's numbers).
        trainer.add_callback(LearningCurves(evaluator, run.training_args.output_dir, before=before,
                                            keep_tolerance=run.training_args.alpha_tolerance))
    if evaluator is not None:  # before training, not after it
        if run.training_args.select_alpha:
            check_keep_measures(before, "--select_alpha")
        if best_metric(run.training_args) == KEPT_DEV:
            check_dev_keep_measure(before)
    names = run.plan.trainable_parameter_names
    base_state = trained_state(run.model, names) if run.training_args.select_alpha else None
    with timings.phase("Training") as timed:
        tokens_before = trainer.state.num_input_tokens_seen
        run.metrics = dict(trainer.train(resume_from_checkpoint=run.resume_from).metrics)
        timed.detail.update(training_speed(trainer, run.metrics, tokens_before))
    run.metrics.update(run.method.trained_metrics(run.model))
    if base_state is not None:
        with timings.phase("Alpha selection"):
            run.alpha_selection = choose_alpha(run, evaluator, before, base_state)
    after = {}
    if evaluator:
        with timings.phase("Evaluation after"):
            after = evaluator.measure(run.model, "after")
    if run.eval_dataset is not None:
        # Only the main process measures before/after; reusing its number on one process only would leave the
        # others alone in trainer.evaluate()'s collectives, so several processes always evaluate together.
        reuse = after.get("support_perplexity") if PartialState().num_processes == 1 else None
        moved = run.alpha_selection is not None and run.alpha_selection.alpha != 1.0
        run.metrics.update(final_eval_metrics(trainer, reuse, logged=not moved))
    if evaluator:
        if run.alpha_selection is not None:
            evaluator.alpha_selection = run.alpha_selection.to_dict()
        run.metrics.update(evaluator.finish(run.training_args.output_dir, before, after))
    return run


# ----------------------------------------------------------------------------------------------------------
# finish: save, the output directory's evidence, push
# ----------------------------------------------------------------------------------------------------------


def write_sample_replies(model, tokenizer, samples: list[dict], output_dir: str) -> list[dict]:
    model.eval()
    torch.manual_seed(0)
    for sample in progress(samples, "Sample replies", unit="replies"):
        sample["reply"] = generate_reply(model, tokenizer, sample["messages"], do_sample=False)
    write_samples(output_dir, samples)
    return samples


def finish_output_dir(output_dir, model, tokenizer, plan: FreezePlan, sections: dict, samples: list[dict]) -> None:
    """Everything the chat, evaluation and Hub push read from a run besides the weights (main process only)."""
    os.makedirs(output_dir, exist_ok=True)
    plan.save(output_dir)
    tokenizer.save_pretrained(output_dir)
    model.generation_config.save_pretrained(output_dir)
    if samples:
        for sample in write_sample_replies(model, tokenizer, samples, output_dir):
            logger.info("Sample reply\n  user: %s\n  model: %s", sample["messages"][-1]["content"], sample["reply"])
    share_weights_like_umask(output_dir)
    sections["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_run_info(output_dir, **sections)
    write_plots(output_dir)
    logger.info("Saved the fine-tuned model, plan and run info to %s", output_dir)


def save(run: RecipeRun) -> RecipeRun:
    """Save the weights (in the base checkpoint's dtype), metrics, trainer state and the run's evidence."""
    trainer, output_dir = run.trainer, run.training_args.output_dir
    # A plain model that chat, evaluate and push load like any other (LoRA merges its adapters here).
    run.model = model = run.method.model_to_save(run.model)
    if model.dtype != run.base_dtype and not is_sharded(trainer):
        # Save in the checkpoint's own dtype: a bf16 base loaded into fp32 casts back exactly, so frozen
        # tensors stay bit-identical to the published ones. (FSDP/DeepSpeed own the storage of sharded
        # parameters and gather them to save: their checkpoints keep the training dtype, values unchanged.)
        model.to(run.base_dtype)
    if run.training_args.save_trained_only and not is_sharded(trainer):
        if run.is_main_process:
            save_delta(run, model, output_dir)
    else:
        run.method.save_model(trainer, model, output_dir, run.is_main_process)
    trainer.log_metrics("all", run.metrics)
    trainer.save_metrics("all", run.metrics)
    trainer.save_state()
    if run.is_main_process:
        # Generating needs the whole model in one process: a sharded model's forward gathers from the others.
        samples = [] if is_sharded(trainer) else opening_prompts(
            run.eval_dialogues, NUM_SAMPLE_REPLIES, run.data_args.system_prompt)
        finish_output_dir(output_dir, model, run.tokenizer, run.plan, run_info_sections(run), samples)
    return run


def save_delta(run: RecipeRun, model, output_dir: str) -> None:
    """``--save_trained_only``: the trained tensors and a manifest pinning the base (``modeling.delta``); the
    run's own checkpoints (full copies kept for resuming) are removed once the delta is written."""
    import shutil

    write_delta(model, run.plan.trainable_parameter_names, output_dir, run.resolved.to_dict())
    for checkpoint in sorted(Path(output_dir).glob("checkpoint-*")):
        if checkpoint.is_dir():
            shutil.rmtree(checkpoint)
            logger.info("--save_trained_only: removed %s (a full copy for resuming; the run is finished).",
                        checkpoint)


def finish(run: RecipeRun) -> RecipeRun:
    """Save, push (if asked), and shut the process group down."""
    with timings.phase("Saving"):
        save(run)
    PartialState().wait_for_everyone()
    report_timings(run)  # before the push: the pushed run_info.json and card carry them
    if run.hub_push is not None and run.is_main_process:
        with timings.phase("Hub push"):
            run.hub_push.push(run.training_args.output_dir)
    end_distributed()
    return run


def run_training(model_args: ModelArguments, data_args: DataArguments, eval_args: EvaluationArguments,
                 freeze_args: FreezeArguments, training_args: FreezeTrainingArguments,
                 facts_args: FactsArguments | None = None) -> dict:
    """Freeze, fine-tune, evaluate and save (the arguments of ``arguments.parse_args``). Returns the final
    metrics."""
    timings.reset()
    run = start(model_args, data_args, eval_args, freeze_args, training_args, facts_args)
    for step in (load, plan, data, build_trainer, train, finish):
        if step in STEP_PHASES:
            with timings.phase(STEP_PHASES[step]):
                run = step(run)
        else:  # its parts (evaluation before, training, evaluation after; saving, push) are phases of their own
            run = step(run)
    return run.metrics


def report_timings(run: RecipeRun) -> None:
    """Log where the run's time went and add it to ``run_info.json`` (``timings``; main process)."""
    if not run.is_main_process:
        return
    total = timings.process_seconds()
    logger.info("Where the time went (wall and CPU seconds; CPU/wall near %d: every thread busy):\n%s",
                torch.get_num_threads(), timings.format_table(total_wall_s=total))
    output_dir = run.training_args.output_dir
    info = read_run_info(output_dir)
    if info is not None:
        info["timings"] = {"total_wall_s": None if total is None else round(total, 1),
                           "threads": torch.get_num_threads(), "phases": timings.to_dict()}
        write_run_info(output_dir, **info)


# The recipe's steps timed as one phase each (``timings``); the others time their own parts.
STEP_PHASES = {load: "Model: resolve and load", plan: "Freeze plan",
               data: "Data: dialogues, replay, plain-text passages, drills", build_trainer: "Trainer set-up"}
