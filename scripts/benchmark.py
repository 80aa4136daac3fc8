"""Time freeze-tuning on the same data and optimizer steps, four ways, each in its own subprocess.

    python scripts/benchmark.py                          # defaults: SmolLM2-135M-Instruct, blocks 0-23 of 30 frozen
    python scripts/benchmark.py --json bench.json        # also write the results as JSON
    python scripts/benchmark.py --steps 4 --warmup_steps 1 --variants naive_freeze chatfreeze
    python scripts/benchmark.py --recipe default         # the default recipe's plan, batch, KL and training mix

Variants (all fp32, torch's default thread count, the Trainer's default optimizer (fused AdamW), constant LR,
gradient clipping at 1.0, the same seed):

* ``full``              plain ``transformers.Trainer``, every parameter trained;
* ``naive_freeze``      plain ``Trainer`` with ``requires_grad=False`` on the embeddings + frozen blocks;
* ``chatfreeze``        ``FreezeTrainer`` (fast path: prefix without autograd, loss at labelled positions,
  leading tokens the rows of a batch share, i.e. the system prompt, computed once);
* ``chatfreeze_cached`` ``FreezeTrainer`` training from its prefix cache (a later epoch): the cache is filled
  first (timed separately, reported as ``prefill_s``), then the same steps run from it;
* ``chatfreeze_kl``     ``FreezeTrainer`` with ``--kl_to_base 0.1``: the base's frozen top copy runs on the same
  boundary states; its tokens/s against ``chatfreeze`` is the cost of KL to the base (losses differ by design).

Data: ``--dataset`` (data/train.jsonl) rendered with the model's chat template, labels on assistant turns
only, at real lengths (dialogues over ``--max_length`` dropped, none truncated). With ``--recipe NAME|FILE`` (a
packaged recipe's name, e.g. ``default``, or a recipe file) the data is that recipe's own training mix, built by
the recipe's steps (support dialogues, fact drills, the base's replay replies and plain-text passages, each
example with the KL weight of its source), and the recipe sets the model, the frozen blocks, the batch size, the
learning rate and ``chatfreeze_kl``'s KL weight; ``chatfreeze_kl`` then trains exactly as the recipe does (KL on the
recipe's ``--kl_sources`` only) and its tokens/s against ``full``'s is the recipe's speed-up. ``warmup + steps`` batches are
picked evenly spread over one epoch of the recipe's sampler (length-grouped, ``--seed``), so they are as long
and as padded as a real run's, and every variant trains on exactly those batches in that order (sequential
sampler), each padded to its longest row by the recipe's ``DialogueCollator``. Tokens/s counts
real (non-padding) tokens of the timed steps (each variant runs ``--rounds`` times, interleaved with the others,
and its fastest round counts: other processes on a shared machine slow single rounds down; every round is in
the JSON); a step's time runs from the end of the previous optimizer step
to the end of its own (data loading, forward, backward, clipping, optimizer). Peak memory is the child's
``ru_maxrss``. ``max_abs_diff`` is the largest absolute difference between ``naive_freeze`` and
``chatfreeze`` / ``chatfreeze_cached`` in per-step loss and in the trained weights after the last step. The
maths is the same; the order of floating-point sums is not (shared tokens are computed as one row), which
moves losses by ~1e-7, and AdamW turns that into ~1e-5 on the few weights whose gradient is ~1e-8, where its
epsilon makes the update most sensitive (with ``--optim sgd`` weights agree to ~1e-7).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from chatfreeze.fastpath.batch import KL_WEIGHT_COLUMN
from chatfreeze.studies.results import Column, markdown_table
from chatfreeze.studies.runner import Variant, log_tail, run_process

REPO_ROOT = Path(__file__).resolve().parents[1]
# Each variant is the worker's options on top of the shared ones (the model, --num_frozen_layers, the steps, ...);
# the worker's own start with an underscore (internal: the JSON's settings leave them out).
VARIANTS = (
    Variant("full", "plain Trainer, nothing frozen",
            ("--_trainer", "plain", "--num_frozen_layers", "0", "--_freeze_embeddings", "false")),
    Variant("naive_freeze", "plain Trainer, requires_grad=False on the frozen part", ("--_trainer", "plain")),
    Variant("chatfreeze", "FreezeTrainer (fast path)", ("--_trainer", "chatfreeze")),
    Variant("chatfreeze_cached", "FreezeTrainer from its prefix cache, filled first",
            ("--_trainer", "chatfreeze", "--_prefix_cache", "ram", "--_prefill_cache")),
    Variant("chatfreeze_kl", "FreezeTrainer with KL to the base", ("--_trainer", "chatfreeze", "--_kl_to_base", "0.1"),
            notes="its tokens/s against chatfreeze's is what KL costs; its losses differ by design"),
)
NAMES = tuple(variant.name for variant in VARIANTS)
# What KL to the base (--kl_to_base) costs: chatfreeze_kl's tokens/s over chatfreeze's (a ratio, not a target).
KL_COST = ("chatfreeze_kl", "chatfreeze")
COMPARED = ("chatfreeze", "chatfreeze_cached")  # against naive_freeze, for max_abs_diff
WEIGHTS_SAVED = ("naive_freeze", *COMPARED)  # the variants whose trained weights compare() reads
# (variant, baseline, minimum speed-up) from the issue; memory: chatfreeze peak RSS <= 60% of full's.
SPEED_TARGETS = (
    ("chatfreeze", "full", 2.5),
    ("chatfreeze", "naive_freeze", 1.2),
    ("chatfreeze_cached", "full", 4.5),
    ("chatfreeze_cached", "naive_freeze", 2.0),
)
MEMORY_TARGET = ("chatfreeze", "full", 0.60)
# With --recipe (the first-run issue): the recipe's own step, KL included, >= 2x full fine-tuning's tokens/s, and
# the KL costing at most 20% of chatfreeze's tokens/s.
RECIPE_TARGETS = (("chatfreeze_kl", "full", 2.0), ("chatfreeze_kl", "chatfreeze", 0.8))


def make_parser() -> argparse.ArgumentParser:
    from chatfreeze.modeling import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_name_or_path", default=DEFAULT_MODEL, help="model to fine-tune (default: %(default)s)")
    parser.add_argument("--dataset", default=str(REPO_ROOT / "data" / "train.jsonl"), help="training dialogues")
    parser.add_argument("--num_frozen_layers", default="24", help="blocks to freeze (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=4, help="dialogues per optimizer step (default: 4)")
    parser.add_argument("--max_length", type=int, default=512, help="max tokens per dialogue (default: 512)")
    parser.add_argument("--warmup_steps", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps (default: 6)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="run every variant this many times, interleaved, and keep each one's fastest round: "
                        "other processes on a shared machine slow single rounds down (default: 2)")
    parser.add_argument("--learning_rate", type=float, default=1e-4, help="learning rate (default: 1e-4)")
    parser.add_argument("--optim", default=None, help="Trainer optimizer name (default: the Trainer's default)")
    parser.add_argument("--seed", type=int, default=0, help="data draw and training seed (default: 0)")
    parser.add_argument("--no_group_by_length", action="store_true",
                        help="random batch composition instead of the recipe's length grouping")
    parser.add_argument("--variants", nargs="+", choices=NAMES, default=list(NAMES), help="what to run")
    parser.add_argument("--recipe", default=None, metavar="NAME|FILE",
                        help="time this recipe's plan, batch size, learning rate, KL weight and training mix "
                        "(a packaged recipe's name, e.g. default, or a YAML file) instead of --dataset's dialogues")
    parser.add_argument("--json", metavar="FILE", help="write the results here as JSON")
    add_worker_options(parser)
    return parser


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """The worker's options: which variant it is and what it sets (a variant's overrides), not for users."""
    hidden = argparse.SUPPRESS
    parser.add_argument("--_variant", choices=NAMES, help=hidden)  # worker mode
    parser.add_argument("--_workdir", help=hidden)
    parser.add_argument("--_save_weights", action="store_true", help=hidden)
    parser.add_argument("--_trainer", choices=("plain", "chatfreeze"), default="chatfreeze", help=hidden)
    parser.add_argument("--_freeze_embeddings", choices=("true", "false"), default="true", help=hidden)
    parser.add_argument("--_prefix_cache", default="auto", help=hidden)
    parser.add_argument("--_prefill_cache", action="store_true", help=hidden)
    parser.add_argument("--_kl_to_base", type=float, default=0.0, help=hidden)


# ----------------------------------------------------------------------------------------------------------
# Parent: data once, one subprocess per variant, comparison and report
# ----------------------------------------------------------------------------------------------------------


def prepare_data(args, model_path: str, workdir: Path) -> dict:
    """Tokenize the dataset, pick the benchmark's batches, write them in order to ``workdir/data.json``.

    The batches are spread evenly over one epoch of the recipe's sampler (length-grouped, seeded), so they
    are as long and as padded as a real run's; ``--no_group_by_length`` spreads them over a random order.
    Returns the padding of a whole epoch both ways, measured on the tokenized dataset.
    """
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from chatfreeze.data import build_dataset, load_dialogues
    from chatfreeze.modeling import load_tokenizer

    if args.recipe:
        dataset = recipe_training_mix(args)
    else:
        tokenizer = load_tokenizer(model_path)
        dataset, _ = build_dataset(load_dialogues(args.dataset), tokenizer, max_length=args.max_length,
                                   overlong_policy="drop_example")
    lengths = [len(ids) for ids in dataset["input_ids"]]
    size = args.batch_size
    grouped = get_length_grouped_indices(lengths, size, generator=torch.Generator().manual_seed(args.seed))
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(args.seed)).tolist()
    order = shuffled if args.no_group_by_length else grouped
    epoch_batches = [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
    count = args.warmup_steps + args.steps
    if len(epoch_batches) < count:
        raise SystemExit(f"error: {len(dataset)} usable dialogues make {len(epoch_batches)} batches of {size}; "
                         f"{count} steps need more.")
    picked = [epoch_batches[round(i * len(epoch_batches) / count)] for i in range(count)]
    rows = [dataset[i] for batch in picked for i in batch]
    columns = ["input_ids", "labels", *([KL_WEIGHT_COLUMN] if KL_WEIGHT_COLUMN in dataset.column_names else [])]
    (workdir / "data.json").write_text(json.dumps({column: [r[column] for r in rows] for column in columns}))
    batch_tokens = [sum(lengths[i] for i in batch) for batch in picked]
    labelled = sum(sum(label != -100 for label in r["labels"]) for r in rows)
    used = padding_share(lengths, [i for batch in picked for i in batch], size)
    return {
        "dataset_dialogues": len(dataset),
        "benchmark_dialogues": len(rows),
        "labelled_share": labelled / sum(batch_tokens),
        "epoch_padding_share_random": padding_share(lengths, shuffled, size),
        "epoch_padding_share_length_grouped": padding_share(lengths, grouped, size),
        "padding_share_used": used,
        "timed_tokens": sum(batch_tokens[args.warmup_steps :]),
    }


def recipe_path(name: str) -> Path:
    from chatfreeze.training.arguments import recipe_file

    path = recipe_file(name)
    if not path.is_file():
        raise SystemExit(f"error: --recipe {name}: neither a packaged recipe ({name}.yaml) nor a file.")
    return path


def apply_recipe(args) -> None:
    """``--recipe``: the recipe's model, plan, batch, learning rate and KL weight replace the benchmark's own."""
    from chatfreeze.training.arguments import parse_args

    options = parse_args(["--config", str(recipe_path(args.recipe)), "--output_dir", "unused"])
    args.model_name_or_path = options.model.model_name_or_path
    args.num_frozen_layers = str(options.freeze.num_frozen_layers)
    args.batch_size = options.training.per_device_train_batch_size
    args.learning_rate = options.training.learning_rate
    args.max_length = options.data.max_length
    # chatfreeze_kl is the recipe's step; a recipe without KL keeps the benchmark's 0.1, to show what KL would cost.
    args.kl_to_base = options.training.kl_to_base or 0.1


def recipe_training_mix(args):
    """The recipe's own training data, through its steps (load, plan, data): dialogues, drills, the base's replay
    replies and passages (generated once per base model and cached, as a training run does), KL weights."""
    import logging

    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import parse_args

    logging.basicConfig(format="%(name)s: %(message)s", level=logging.INFO)
    with tempfile.TemporaryDirectory(prefix="chatfreeze-benchmark-recipe-") as out:
        options = parse_args(["--config", str(recipe_path(args.recipe)), "--output_dir", out, "--disable_tqdm",
                              "true"])
        run = recipe.start(*options)
        for step in (recipe.load, recipe.plan, recipe.data):
            run = step(run)
    return run.train_dataset


def padding_share(lengths: list[int], order: list[int], batch_size: int) -> float:
    padded = real = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start : start + batch_size]]
        padded += max(batch) * len(batch)
        real += sum(batch)
    return 1 - real / padded


def worker_command(args, model_path: str, variant: Variant, workdir: Path) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--_variant", variant.name, "--_workdir", str(workdir),
               "--model_name_or_path", model_path, "--num_frozen_layers", str(args.num_frozen_layers),
               "--batch_size", str(args.batch_size), "--warmup_steps", str(args.warmup_steps),
               "--steps", str(args.steps), "--learning_rate", str(args.learning_rate), "--seed", str(args.seed)]
    if args.optim:
        command += ["--optim", args.optim]
    command += [*variant.overrides, *(["--_save_weights"] if variant.name in WEIGHTS_SAVED else [])]
    if args.recipe and "--_kl_to_base" in variant.overrides:  # the recipe's KL weight (the last flag wins)
        command += ["--_kl_to_base", str(args.kl_to_base)]
    return command


def run_variant(args, model_path: str, variant: Variant, workdir: Path, round_label: str = "",
                show_notes: bool = True) -> dict:
    print(f"[benchmark] {variant.name}{round_label} ...", flush=True)
    log = workdir / f"{variant.name}.log"
    record = run_process(worker_command(args, model_path, variant, workdir), log, cwd=REPO_ROOT)
    if record.returncode != 0:
        sys.stderr.write(log_tail(log))
        raise SystemExit(f"error: the {variant.name} worker failed (exit {record.returncode}).")
    report = json.loads((workdir / f"{variant.name}.json").read_text())
    report["notes"] = [line.split(": ", 1)[-1] for line in log.read_text().splitlines()
                       if "chatfreeze.fastpath" in line]
    print(f"[benchmark] {variant.name}{round_label}: {report['tokens_per_s']:.1f} tokens/s, peak RSS "
          f"{report['peak_rss_mb']:.0f} MB ({record.wall_seconds:.0f} s)", flush=True)
    if show_notes:
        for note in report["notes"]:
            print(f"[benchmark]   {note}", flush=True)
    return report


def run_rounds(args, model_path: str, workdir: Path) -> dict:
    """Every variant ``--rounds`` times, interleaved; each variant's fastest round, with all rounds' speeds."""
    variants = [variant for variant in VARIANTS if variant.name in args.variants]
    rounds: dict[str, list[dict]] = {variant.name: [] for variant in variants}
    for number in range(1, args.rounds + 1):
        label = f" (round {number} of {args.rounds})" if args.rounds > 1 else ""
        for variant in variants:
            rounds[variant.name].append(run_variant(args, model_path, variant, workdir, label,
                                                    show_notes=number == 1))
    reports = {}
    for variant, runs in rounds.items():
        best = dict(max(runs, key=lambda run: run["tokens_per_s"]))
        best["tokens_per_s_rounds"] = [run["tokens_per_s"] for run in runs]
        best["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
        reports[variant] = best
    return reports


def weight_difference(workdir: Path, a: str, b: str) -> tuple[float, int, int]:
    """Largest absolute difference of the trained weights, how many elements differ by > 1e-6, of how many."""
    import torch

    first = torch.load(workdir / f"{a}.weights.pt")
    second = torch.load(workdir / f"{b}.weights.pt")
    if first.keys() != second.keys():
        raise SystemExit(f"error: {a} and {b} trained different parameters.")
    differences = [(first[name] - second[name]).abs() for name in first]
    return (max(d.max().item() for d in differences), sum(int((d > 1e-6).sum()) for d in differences),
            sum(d.numel() for d in differences))


def compare(reports: dict, workdir: Path) -> tuple[dict, dict]:
    """Largest |naive_freeze - X| per loss and weights, and per X (weights differing by > 1e-6, all weights)."""
    details, counts = {}, {}
    if "naive_freeze" in reports:
        reference = reports["naive_freeze"]["losses"]
        for variant in COMPARED:
            if variant in reports:
                losses = reports[variant]["losses"]
                details[f"loss_{variant}"] = max(abs(x - y) for x, y in zip(reference, losses, strict=True))
                largest, over, total = weight_difference(workdir, "naive_freeze", variant)
                details[f"weights_{variant}"] = largest
                counts[variant] = (over, total)
    return details, counts


def targets(reports: dict, recipe: str | None = None) -> list[tuple[str, float, float, bool]]:
    rows = []
    speed = {v: r["tokens_per_s"] for v, r in reports.items()}
    for variant, baseline, minimum in (*SPEED_TARGETS, *(RECIPE_TARGETS if recipe else ())):
        if variant in speed and baseline in speed:
            ratio = speed[variant] / speed[baseline]
            rows.append((f"{variant} tokens/s >= {minimum}x {baseline}", ratio, minimum, ratio >= minimum))
    variant, baseline, maximum = MEMORY_TARGET
    if variant in reports and baseline in reports:
        share = reports[variant]["peak_rss_mb"] / reports[baseline]["peak_rss_mb"]
        rows.append((f"{variant} peak RSS <= {maximum:.0%} of {baseline}", share, maximum, share <= maximum))
    return rows


def speed_columns(speed: dict[str, float], steps: int) -> list[Column]:
    """The speed table's columns; an item is ``(variant, its report)``."""

    def tokens_per_s(item) -> str:
        rounds = item[1].get("tokens_per_s_rounds", [])
        every = f" ({', '.join(f'{r:.0f}' for r in rounds)})" if len(rounds) > 1 else ""
        return f"{speed[item[0]]:.1f}{every}"

    def times(baseline: str):
        return lambda item: f"{speed[item[0]] / speed[baseline]:.2f}" if baseline in speed else "-"

    return [Column("variant", lambda item: item[0]), Column("tokens/s (each round)", tokens_per_s, "---:"),
            Column("x full", times("full"), "---:"), Column("x naive_freeze", times("naive_freeze"), "---:"),
            Column("s/step", lambda item: f"{item[1]['timed_s'] / steps:.2f}", "---:"),
            Column("peak RSS MB", lambda item: f"{item[1]['peak_rss_mb']:.0f}", "---:")]


# An item is a row of targets(): (target, measured, limit, passed).
TARGET_COLUMNS = [Column("target", lambda row: row[0]), Column("measured", lambda row: f"{row[1]:.2f}", "---:"),
                  Column("PASS/FAIL", lambda row: "PASS" if row[3] else "FAIL")]


def format_table(reports: dict, data: dict, details: dict, counts: dict, args) -> str:
    speed = {v: r["tokens_per_s"] for v, r in reports.items()}
    mix = f"the {args.recipe} recipe's training mix" if args.recipe else "dialogues"
    lines = [
        f"Model {args.model_name_or_path}, {args.num_frozen_layers} blocks frozen, batch {args.batch_size}, {mix}, "
        f"{args.warmup_steps} warm-up + {args.steps} timed steps, {data['timed_tokens']} real tokens timed, "
        f"{data['labelled_share']:.0%} of them labelled; padding {data['padding_share_used']:.1%} of computed "
        f"positions ({'random' if args.no_group_by_length else 'length-grouped'} batches). Over a whole epoch of "
        f"{data['dataset_dialogues']} dialogues, random batches pad {data['epoch_padding_share_random']:.1%}, "
        f"length-grouped ones {data['epoch_padding_share_length_grouped']:.1%}.",
        "",
        *markdown_table(reports.items(), speed_columns(speed, args.steps)),
    ]
    with_kl, without = KL_COST
    if with_kl in speed and without in speed:
        lines.append(f"\nKL to the base costs {with_kl} {speed[with_kl] / speed[without]:.2f}x the tokens/s of "
                     f"{without} (the base's frozen top copy runs once more per step).")
    if "chatfreeze_cached" in reports:
        lines.append(f"\nchatfreeze_cached filled its prefix cache first in "
                     f"{reports['chatfreeze_cached']['prefill_s']:.1f} s (not in its tokens/s).")
    rows = targets(reports, args.recipe)
    if rows:
        lines += ["", *markdown_table(rows, TARGET_COLUMNS)]
    if details:
        lines += ["", "max |naive_freeze - X| (per-step loss, trained weights after the last step): "
                  + ", ".join(f"{k} {v:.2e}" for k, v in details.items())]
        lines += [f"{variant}: {over:,} of {total:,} trained weights differ from naive_freeze's by more than 1e-6."
                  for variant, (over, total) in counts.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = make_parser().parse_args(argv)
    if args._variant:
        return worker(args)
    if not args.recipe and not Path(args.dataset).is_file():
        raise SystemExit(f"error: --dataset {args.dataset}: no such file (make it with scripts/make_support_data.py).")
    started = time.perf_counter()
    from chatfreeze.modeling import resolve_model

    if args.recipe:
        apply_recipe(args)
    model_path = resolve_model(args.model_name_or_path).path  # once; the workers load the local copy
    with tempfile.TemporaryDirectory(prefix="chatfreeze-benchmark-") as tmp:
        workdir = Path(tmp)
        data = prepare_data(args, model_path, workdir)
        json.dump(vars(args), (workdir / "args.json").open("w"))
        reports = run_rounds(args, model_path, workdir)
        details, counts = compare(reports, workdir)
    table = format_table(reports, data, details, counts, args)
    print("\n" + table)
    print(f"\nTotal wall time {time.perf_counter() - started:.0f} s.")
    result = {
        "tokens_per_s": {v: r["tokens_per_s"] for v, r in reports.items()},
        "peak_rss_mb": {v: r["peak_rss_mb"] for v, r in reports.items()},
        "max_abs_diff": max(details.values()) if details else None,
        "max_abs_diff_detail": details,
        "weights_differing_over_1e-6": {v: {"count": c[0], "of": c[1]} for v, c in counts.items()},
        "targets": [{"target": n, "measured": round(v, 4), "limit": t, "pass": ok} for n, v, t, ok in targets(reports, args.recipe)],
        "prefill_s": reports.get("chatfreeze_cached", {}).get("prefill_s"),
        "kl_to_base_speed_ratio": (reports[KL_COST[0]]["tokens_per_s"] / reports[KL_COST[1]]["tokens_per_s"]
                                   if all(v in reports for v in KL_COST) else None),
        "data": data,
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "json"},
        "per_variant": {v: {k: r[k] for k in ("tokens_per_s_rounds", "timed_s", "step_s", "median_step_tokens_per_s",
                                              "losses", "notes")}
                        for v, r in reports.items()},
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"Wrote {args.json}")
    return result


# ----------------------------------------------------------------------------------------------------------
# Worker: one variant, in its own process so that its peak memory is its own
# ----------------------------------------------------------------------------------------------------------


def recording(trainer_class):
    """``trainer_class`` that keeps every training step's loss in ``self.losses``."""

    class Recording(trainer_class):
        def training_step(self, *a, **k):
            loss = super().training_step(*a, **k)
            self.losses.append(loss.item())
            return loss

    return Recording


def step_clock():
    """A callback that notes the time at the start of training and at the end of every optimizer step."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_train_begin(self, *a, **k):
            self.ends.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            self.ends.append(time.perf_counter())

    return StepClock()


def build_worker_trainer(args, model, tokenizer, dataset, clock):
    """The variant's trainer through the recipe's steps: its options say what is frozen, which trainer
    (plain ``Trainer`` or ``FreezeTrainer``), the prefix cache and KL to the base."""
    from transformers import Trainer

    from chatfreeze.data import DataArguments
    from chatfreeze.evaluation import EvaluationArguments
    from chatfreeze.freezing import FreezeArguments
    from chatfreeze.modeling import ModelArguments
    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import FreezeTrainingArguments
    from chatfreeze.training.methods import get_method
    from chatfreeze.training.trainer import FreezeTrainer

    # full: nothing frozen; naive_freeze and chatfreeze: the same plan, applied by hand or by FreezeTrainer.
    spec = FreezeArguments(num_frozen_layers=args.num_frozen_layers, freeze_embeddings=args._freeze_embeddings == "true")
    common = dict(
        output_dir=str(Path(args._workdir) / args._variant), max_steps=args.warmup_steps + args.steps,
        per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, seed=args.seed, data_seed=args.seed,
        train_sampling_strategy="sequential", logging_strategy="no", save_strategy="no", eval_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True, dataloader_pin_memory=False,
    )
    if args.optim:
        common["optim"] = args.optim
    training_args = FreezeTrainingArguments(**common, prefix_cache=args._prefix_cache, kl_to_base=args._kl_to_base)
    run = recipe.RecipeRun(ModelArguments(model_name_or_path=args.model_name_or_path), DataArguments(),
                           EvaluationArguments(), spec, training_args, method=get_method("freeze"), model=model,
                           tokenizer=tokenizer, train_dataset=dataset)
    run = recipe.plan(run, allow_no_freeze=True)
    trainer_class = recording(Trainer if args._trainer == "plain" else FreezeTrainer)
    trainer = recipe.build_trainer(run, trainer_class, callbacks=[clock]).trainer
    trainer.losses = []
    return trainer


def prefill(trainer, examples: int) -> float:
    """Fill the trainer's prefix cache with every example; the seconds it took."""
    start = time.perf_counter()
    cached = trainer.fill_prefix_cache()
    if cached != examples:
        raise SystemExit(f"error: the prefix cache holds {cached} of {examples} examples.")
    return time.perf_counter() - start


def worker_report(args, clock, losses: list[float], input_ids: list[list[int]], prefill_s: float | None) -> dict:
    import torch

    step_s = [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)]
    timed_s = sum(step_s[args.warmup_steps :])
    real = [sum(len(ids) for ids in input_ids[i : i + args.batch_size])
            for i in range(0, len(input_ids), args.batch_size)]
    rates = sorted(tokens / seconds for tokens, seconds in zip(real[args.warmup_steps :],
                                                                step_s[args.warmup_steps :], strict=True))
    return {
        "tokens_per_s": sum(real[args.warmup_steps :]) / timed_s,
        "median_step_tokens_per_s": rates[len(rates) // 2],  # robust to a step disturbed by other processes
        "timed_s": timed_s,
        "step_s": step_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "losses": losses,
        "prefill_s": prefill_s,
        "threads": torch.get_num_threads(),
    }


def worker(args) -> dict:
    import logging

    import torch
    from datasets import Dataset

    from chatfreeze.modeling import load_model, load_tokenizer, resolve_model

    logging.basicConfig(format="%(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("chatfreeze.fastpath").setLevel(logging.INFO)
    logging.getLogger("chatfreeze.training").setLevel(logging.WARNING)
    workdir = Path(args._workdir)
    path = resolve_model(args.model_name_or_path).path
    tokenizer = load_tokenizer(path)
    data = json.loads((workdir / "data.json").read_text())
    dataset = Dataset.from_dict(data)
    model = load_model(path, torch.float32)
    clock = step_clock()
    trainer = build_worker_trainer(args, model, tokenizer, dataset, clock)
    prefill_s = prefill(trainer, len(dataset)) if args._prefill_cache else None
    trainer.train()
    report = worker_report(args, clock, trainer.losses, data["input_ids"], prefill_s)
    if args._save_weights:
        torch.save({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad},
                   workdir / f"{args._variant}.weights.pt")
    (workdir / f"{args._variant}.json").write_text(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
