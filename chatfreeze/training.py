"""The freeze-tuning recipe end to end: resolve model -> plan -> data -> FreezeTrainer -> output directory.

``scripts/train.py`` parses arguments and calls ``run_training``; everything else lives here so that the
recipe can be driven from Python (the sweep and benchmark scripts do).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import transformers
from accelerate import PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType
from transformers.trainer_utils import get_last_checkpoint

from . import __version__
from .arguments import DataArguments, FreezeArguments, FreezeTrainingArguments, ModelArguments
from .data import DialogueCollator, build_dataset, load_dialogues_from_args
from .evaluation import evaluator_for_run
from .freezing import FreezePlan, make_plan
from .generation import generate_reply, support_generation_config
from .hub import redact_command, take_training_push
from .modeling import ResolvedModel, load_model, load_tokenizer, resolve_model, select_dtype
from .plots import write_plots
from .trainer import FreezeTrainer

logger = logging.getLogger(__name__)

RUN_INFO_FILENAME = "run_info.json"
SAMPLES_FILENAME = "samples.json"
NUM_SAMPLE_REPLIES = 3


class OutputDirError(ValueError):
    """The output directory holds something a run must not overwrite."""


def setup_logging(training_args: FreezeTrainingArguments) -> None:
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    logging.getLogger("chatfreeze").setLevel(level)
    transformers.utils.logging.set_verbosity(level if level > logging.INFO else logging.WARNING)


def check_output_dir(training_args: FreezeTrainingArguments) -> str | None:
    """Return the checkpoint to resume from, or None; refuse to write over a directory we did not make."""
    out = Path(training_args.output_dir)
    wanted = training_args.resume_from_checkpoint
    if wanted not in (None, "auto", "none", "None", ""):
        if not Path(wanted).is_dir():
            raise OutputDirError(f"--resume_from_checkpoint {wanted}: no such checkpoint directory.")
        return wanted
    if not out.is_dir() or not any(out.iterdir()):
        return None
    last = get_last_checkpoint(str(out))
    if last and wanted == "auto":
        return last
    if training_args.overwrite_output_dir:
        return None
    what = "a finished run" if (out / RUN_INFO_FILENAME).is_file() else "files"
    raise OutputDirError(
        f"--output_dir {out} already holds {what} and no checkpoint to resume; choose another --output_dir "
        "or pass --overwrite_output_dir true to replace what is there."
    )


def pick_precision(model_args: ModelArguments, training_args: FreezeTrainingArguments) -> torch.dtype:
    """Weights dtype to load; with ``auto`` keep fp32 master weights and turn on bf16 autocast on capable GPUs."""
    if model_args.model_dtype != "auto":
        return select_dtype(model_args.model_dtype)
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not (training_args.bf16 or training_args.fp16):
        training_args.bf16 = True
        # The Accelerator reads `mixed_precision`, which TrainingArguments derived from `bf16` in __post_init__.
        training_args.mixed_precision = "bf16"
    return torch.float32


def train_on_cpu_processes_without_gpus(training_args: FreezeTrainingArguments) -> bool:
    """Make `accelerate launch --multi_gpu` (or a multi-GPU config) on a machine without GPUs train with gloo.

    torchrun starts every process, but accelerate only goes distributed on the CPU when asked to (``cpu=True``):
    otherwise each process trains alone on all the data (world size 1) and all of them write the same output
    dir. When processes were launched but accelerate found no device to be distributed on, set up again as
    ``--use_cpu true`` would have: DistributedType.MULTI_CPU over the process group torchrun's env describes.
    Returns whether it did.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    state = training_args.distributed_state
    if not launched or training_args.use_cpu or state is None or state.distributed_type != DistributedType.NO:
        return False
    training_args.use_cpu = True
    training_args.dataloader_pin_memory = False
    training_args.__dict__.pop("_setup_devices", None)  # a cached_property: set up the devices once more
    _ = training_args.device
    return True


def is_sharded(trainer: FreezeTrainer) -> bool:
    return bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))


def parallel_info(trainer: FreezeTrainer) -> dict:
    """How this run was spread over processes, for run_info.json (``world_size`` stays a top-level key)."""
    state = PartialState()
    return dict(
        distributed_type=str(state.distributed_type).split(".")[-1],
        backend=state.backend,
        num_processes=state.num_processes,
        mixed_precision=str(trainer.accelerator.mixed_precision),
        per_device_train_batch_size=trainer.args.per_device_train_batch_size,
        gradient_accumulation_steps=trainer.args.gradient_accumulation_steps,
        global_train_batch_size=trainer.args.per_device_train_batch_size
        * trainer.args.gradient_accumulation_steps * state.num_processes,
    )


def end_distributed() -> None:
    """Wait for every process, then shut the process group down here rather than at interpreter exit, where
    the processes tear down in no defined order (runs that had finished were seen to abort there)."""
    PartialState().wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        # A later run in this process (a sweep) sets up a new group instead of using the destroyed one.
        AcceleratorState._reset_state(reset_partial_state=True)


def load_for_training(model_args: ModelArguments, training_args: FreezeTrainingArguments):
    """Resolve (main process first, so only one process downloads or converts) and load model + tokenizer."""
    state = PartialState()
    with state.main_process_first():
        resolved = resolve_model(model_args.model_name_or_path, model_args.model_revision)
    if state.is_main_process:
        logger.info("Model: %s", resolved.describe())
    tokenizer = load_tokenizer(resolved.path, model_args.trust_remote_code)
    if not tokenizer.chat_template:
        raise ValueError(
            f"--model_name_or_path {model_args.model_name_or_path}: the tokenizer has no chat template; "
            "chatfreeze fine-tunes chat models (use an -Instruct/-Chat checkpoint)."
        )
    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    dtype = pick_precision(model_args, training_args)
    model = load_model(resolved.path, dtype, model_args.trust_remote_code, **extra)
    return resolved, model, tokenizer


def prepare_datasets(data_args: DataArguments, tokenizer, seed: int):
    """Tokenized train/eval datasets and their reports (counts of dialogues, turns, tokens, drops)."""
    train_dialogues = load_dialogues_from_args(data_args)
    eval_dialogues = load_dialogues_from_args(data_args, eval=True) if data_args.eval_dataset else []
    if not eval_dialogues and data_args.validation_split_ratio > 0:
        import random

        order = list(range(len(train_dialogues)))
        random.Random(seed).shuffle(order)
        cut = max(1, int(len(order) * data_args.validation_split_ratio))
        eval_dialogues = [train_dialogues[i] for i in order[:cut]]
        train_dialogues = [train_dialogues[i] for i in order[cut:]]
    common = dict(max_length=data_args.max_length, overlong_policy=data_args.overlong_policy)
    train_ds, train_report = build_dataset(train_dialogues, tokenizer, source=data_args.dataset, **common)
    eval_ds, eval_report = None, None
    if eval_dialogues:
        eval_ds, eval_report = build_dataset(
            eval_dialogues, tokenizer, source=data_args.eval_dataset or f"{data_args.dataset} (held out)", **common
        )
    return train_ds, eval_ds, train_report, eval_report, eval_dialogues


def final_eval_metrics(trainer: FreezeTrainer) -> dict:
    """Eval metrics of the final weights, reusing the evaluation the Trainer ran at the last step if it did."""
    last = trainer.state.log_history[-2:] if trainer.state.log_history else []
    for entry in reversed(last):
        if "eval_loss" in entry and entry.get("step") == trainer.state.global_step:
            return {k: v for k, v in entry.items() if k.startswith("eval_")}
    return trainer.evaluate()


def sample_prompts(eval_dialogues: list[list[dict]], system_prompt: str | None, n: int = NUM_SAMPLE_REPLIES):
    """The opening (system +) user turn of the first ``n`` held-out dialogues, with the reference reply."""
    samples = []
    for dialogue in eval_dialogues[:n]:
        cut = next(i for i, m in enumerate(dialogue) if m["role"] == "assistant")
        prompt = dialogue[:cut]
        if system_prompt and prompt[0]["role"] != "system":
            prompt = [{"role": "system", "content": system_prompt}] + prompt
        samples.append({"messages": prompt, "reference": dialogue[cut]["content"]})
    return samples


def write_sample_replies(model, tokenizer, samples: list[dict], output_dir: str) -> list[dict]:
    model.eval()
    torch.manual_seed(0)
    for sample in samples:
        sample["reply"] = generate_reply(model, tokenizer, sample["messages"], do_sample=False)
    Path(output_dir, SAMPLES_FILENAME).write_text(json.dumps(samples, indent=2, ensure_ascii=False) + "\n")
    return samples


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


def write_run_info(output_dir: str, **sections) -> Path:
    path = Path(output_dir) / RUN_INFO_FILENAME
    path.write_text(json.dumps(sections, indent=2, default=str, ensure_ascii=False) + "\n")
    return path


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    freeze_args: FreezeArguments,
    training_args: FreezeTrainingArguments,
) -> dict:
    """Freeze, fine-tune, evaluate and save. Returns the final metrics."""
    on_cpu_processes = train_on_cpu_processes_without_gpus(training_args)
    setup_logging(training_args)
    state = PartialState()
    if on_cpu_processes and state.is_main_process:
        logger.info("No GPU found: %d CPU processes train together over %s.", state.num_processes, state.backend)
    resume_from = check_output_dir(training_args)
    # chatfreeze pushes once, model card included, after the final save: the Trainer must not push, nor pickle
    # the token into training_args.bin. Fails here (no token, bad repo id) rather than after training.
    hub_push = take_training_push(training_args)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    resolved, model, tokenizer = load_for_training(model_args, training_args)
    base_dtype = model.config.dtype if isinstance(model.config.dtype, torch.dtype) else torch.float32
    plan = make_plan(model, freeze_args)
    if state.is_main_process:
        logger.info("\n%s", plan.format_table())
        if plan.tied_embeddings and plan.embeddings_frozen and not plan.untie_lm_head:
            logger.info("The LM head is tied to the frozen embeddings, so it stays frozen too "
                        "(--train_lm_head true unties and trains a copy).")

    train_ds, eval_ds, train_report, eval_report, eval_dialogues = prepare_datasets(
        data_args, tokenizer, training_args.seed
    )
    if eval_ds is None and training_args.eval_strategy != "no":
        training_args.eval_strategy = "no"

    model.generation_config = support_generation_config(model.generation_config, tokenizer)
    trainer = FreezeTrainer(
        model=model,
        args=training_args,
        freeze_plan=plan,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=DialogueCollator(tokenizer),
        processing_class=tokenizer,
    )
    if resume_from and state.is_main_process:
        logger.info("Resuming from %s", resume_from)
    # Support perplexity, forgetting and reply quality of the base model (main process; None when not asked).
    evaluator = evaluator_for_run(data_args, tokenizer, eval_ds, eval_dialogues, trainer)
    before = evaluator.measure(model, "before") if evaluator else None
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    metrics = dict(train_result.metrics)
    if eval_ds is not None:
        eval_metrics = final_eval_metrics(trainer)
        eval_metrics["eval_perplexity"] = float(torch.exp(torch.tensor(eval_metrics["eval_loss"])))
        metrics.update(eval_metrics)
    if evaluator:
        metrics.update(evaluator.finish(training_args.output_dir, before, evaluator.measure(model, "after")))

    if model.dtype != base_dtype and not is_sharded(trainer):
        # Save in the checkpoint's own dtype: a bf16 base loaded into fp32 casts back exactly, so frozen
        # tensors stay bit-identical to the published ones. (FSDP/DeepSpeed own the storage of sharded
        # parameters and gather them to save: their checkpoints keep the training dtype, values unchanged.)
        model.to(base_dtype)
    trainer.save_model(training_args.output_dir)
    trainer.log_metrics("all", metrics)
    trainer.save_metrics("all", metrics)
    trainer.save_state()
    if state.is_main_process:
        finish_output_dir(
            training_args.output_dir, model, tokenizer, plan, resolved,
            sections=dict(
                started=started,
                world_size=state.num_processes,
                parallel=parallel_info(trainer),
                versions=library_versions(),
                base_model=resolved.to_dict() | {"dtype": str(base_dtype).replace("torch.", "")},
                freeze=asdict(freeze_args),
                model=asdict(model_args),
                data=dict(
                    args=asdict(data_args),
                    system_prompt=data_args.system_prompt,
                    train=train_report.to_dict(),
                    eval=eval_report.to_dict() if eval_report else None,
                ),
                training_args=public_training_args(training_args),
                metrics=metrics,
                command=redact_command(sys.argv),
                device=str(training_args.device),
            ),
            # Generating needs the whole model in one process: a sharded model's forward gathers from the others.
            samples=[] if is_sharded(trainer) else sample_prompts(eval_dialogues, data_args.system_prompt),
        )
    state.wait_for_everyone()
    if hub_push is not None and state.is_main_process:
        hub_push.push(training_args.output_dir)
    end_distributed()
    return metrics


def finish_output_dir(output_dir, model, tokenizer, plan: FreezePlan, resolved: ResolvedModel, sections: dict,
                      samples: list[dict]) -> None:
    """Everything the chat, evaluation and Hub push read from a run besides the weights (main process only)."""
    os.makedirs(output_dir, exist_ok=True)
    plan.save(output_dir)
    tokenizer.save_pretrained(output_dir)
    model.generation_config.save_pretrained(output_dir)
    if samples:
        for sample in write_sample_replies(model, tokenizer, samples, output_dir):
            logger.info("Sample reply\n  user: %s\n  model: %s", sample["messages"][-1]["content"], sample["reply"])
    sections["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_run_info(output_dir, **sections)
    write_plots(output_dir)
    logger.info("Saved the freeze-tuned model, plan and run info to %s", output_dir)
