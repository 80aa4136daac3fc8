"""Where a recipe's training step spends its time, part by part, on the recipe's own batches.

    python scripts/profile_step.py                          # the default recipe, 2 warm-up + 8 timed steps
    python scripts/profile_step.py --recipe quick --steps 4
    python scripts/profile_step.py --json profile.json

The recipe's steps build the run (load, plan, data: its dialogues, drills, the base's replay and passages, cached as
a training run caches them; then its FreezeTrainer), with the before/after evaluation, logging and saving off. The
parts of the real code path are timed by wrapping them (CPU work is synchronous, so wall time is the part's):

* data collation (``DialogueCollator``), the frozen prefix pass (``FastPath.boundary``), the trained blocks'
  forward (``PrefixRunner.final_hidden``), the KL's base copy of the trained top (``FastPath.base_hidden``), the LM
  head and loss at labelled positions (``labelled_positions_loss``, with the KL terms when the recipe has them),
  the backward pass (``Accelerator.backward``: trained blocks, head and loss), gradient clipping and the optimizer
  step; "other" is the rest of the step (the Trainer's bookkeeping, moving batches).

The table gives each part's seconds per step and share; run it alone on the machine (``torch`` threads: all
cores, or ``--threads``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

PARTS = ("data collation", "frozen prefix pass", "trained blocks forward", "KL: base copy of the top",
         "LM head + loss (+ KL terms)", "backward", "gradient clipping", "optimizer step")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="default", help="packaged recipe name or YAML file (default: default)")
    parser.add_argument("--warmup_steps", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps (default: 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    return parser


class PartClock:
    """Seconds spent in each wrapped part, counted from the first timed step on."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.on = False

    def wrap(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            if not clock.on:
                return original(*args, **kwargs)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock.seconds[part] += time.perf_counter() - start

        setattr(owner, name, timed)

    @contextmanager
    def timing(self):
        self.on = True
        yield
        self.on = False


def build(recipe_name: str, max_steps: int, out: str):
    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import parse_args, recipe_file

    options = parse_args(["--config", str(recipe_file(recipe_name)), "--output_dir", out, "--max_steps", str(max_steps),
                          "--eval_before_after", "false", "--eval_strategy", "no", "--save_strategy", "no",
                          "--logging_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"])
    run = recipe.start(*options)
    for step in (recipe.load, recipe.plan, recipe.data, recipe.build_trainer):
        run = step(run)
    return run


def instrument(run, clock: PartClock) -> None:
    import chatfreeze.fastpath.fast_path as fast_path_module
    from chatfreeze.data import DialogueCollator
    from chatfreeze.fastpath.fast_path import FastPath
    from chatfreeze.fastpath.runner import PrefixRunner

    trainer = run.trainer
    clock.wrap(DialogueCollator, "__call__", "data collation")
    clock.wrap(FastPath, "boundary", "frozen prefix pass")
    clock.wrap(PrefixRunner, "final_hidden", "trained blocks forward")
    clock.wrap(FastPath, "base_hidden", "KL: base copy of the top")
    clock.wrap(fast_path_module, "labelled_positions_loss", "LM head + loss (+ KL terms)")
    clock.wrap(trainer.accelerator, "backward", "backward")
    clock.wrap(trainer.accelerator, "clip_grad_norm_", "gradient clipping")

    original_create = trainer.create_optimizer

    def create_optimizer(*args, **kwargs):
        optimizer = original_create(*args, **kwargs)
        clock.wrap(optimizer, "step", "optimizer step")
        return optimizer

    trainer.create_optimizer = create_optimizer


def step_clock(warmup: int, clock: PartClock):
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.started = self.ended = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                clock.on, self.started = True, time.perf_counter()
            self.ended = time.perf_counter()

    return StepClock()


def main(argv: list[str] | None = None) -> dict:
    import logging

    import torch

    args = make_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(format="%(name)s: %(message)s", level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="chatfreeze-profile-") as out:
        run = build(args.recipe, args.warmup_steps + args.steps, out)
        clock = PartClock()
        instrument(run, clock)
        steps = step_clock(args.warmup_steps, clock)
        run.trainer.add_callback(steps)
        run.trainer.train()
    total = steps.ended - steps.started
    rows = [(part, clock.seconds.get(part, 0.0)) for part in PARTS]
    rows.append(("other (Trainer bookkeeping, batch moves)", max(0.0, total - sum(s for _, s in rows))))
    print(f"{args.recipe} recipe: {args.steps} timed steps after {args.warmup_steps} warm-up, "
          f"{torch.get_num_threads()} threads, {total / args.steps:.2f} s per step")
    print("| part | s per step | share |\n|---|---:|---:|")
    for part, seconds in rows:
        print(f"| {part} | {seconds / args.steps:.3f} | {100 * seconds / total:.1f}% |")
    result = {"recipe": args.recipe, "steps": args.steps, "threads": torch.get_num_threads(),
              "seconds_per_step": total / args.steps,
              "parts": {part: seconds / args.steps for part, seconds in rows}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
