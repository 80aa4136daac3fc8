"""kill -9 mid-run, then the same command again: training resumes from the newest checkpoint (the global step
continues), the frozen tensors stay bit-identical to the base, and the trained ones and the losses equal an
uninterrupted run's with the same seed: with the prefix cache off, in RAM and on disk.

What that takes, each checked here on its own too: every epoch's order drawn from the seed (a run resumed mid-epoch
trains on the batches the interrupted run would have), a batch's frozen-prefix states that depend on that batch
alone (not on the batches before it), and a prefix cache refilled with the states the interrupted run had cached."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO_ROOT, build_chatml_tokenizer, build_tiny_model
from datasets import Dataset
from safetensors.torch import load_file

from chatfreeze.data import DialogueCollator
from chatfreeze.fastpath import PrefixRunner
from chatfreeze.freezing import make_plan
from chatfreeze.training.arguments import FreezeArguments, FreezeTrainingArguments
from chatfreeze.training.trainer import FreezeTrainer

# 16 dialogues + 4 replay examples (the default recipe's replay_ratio 0.25) in batches of 2: 10 steps an epoch, so
# checkpoint-15 is mid-epoch, with the uninterrupted run's prefix cache full since step 10.
STEPS, SAVE_EVERY, KILL_AFTER = 60, 5, 15


def command(model_dir, data, out, prefix_cache: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "--model_name_or_path", str(model_dir),
            "--dataset", str(data), "--eval_dataset", "none", "--num_frozen_layers", "2", "--max_steps", str(STEPS),
            "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--save_strategy", "steps",
            "--save_steps", str(SAVE_EVERY), "--save_total_limit", "3", "--logging_steps", "1", "--seed", "0",
            "--output_dir", str(out), "--report_to", "none", "--use_cpu", "true", "--eval_before_after", "false",
            "--prefix_cache", prefix_cache, "--prefix_cache_dir", str(out.parent / "prefix-cache"),
            # the default recipe's drills and plain-text passages off: the checks count the 16 dialogues + 4 replay
            "--facts", "none", "--facts_probe", "none", "--text_replay_ratio", "0"]


def environment() -> dict:
    # Read when a test runs, after conftest pointed CHATFREEZE_MEASUREMENT_CACHE (the replay's cache) at tmp.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def step_losses(out) -> dict[int, float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


@pytest.mark.slow
@pytest.mark.parametrize("prefix_cache", ["off", "ram", "disk"])
def test_kill_9_between_checkpoints_then_rerun_resumes_and_matches(tiny_model_dir, tmp_path, prefix_cache):
    rows = [{"messages": [{"role": "user", "content": f"Where is order {i}? " + "please " * (i % 5)},
                          {"role": "assistant", "content": f"Order {i} ships in {i % 4 + 1} days."}]}
            for i in range(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "prefix-cache").mkdir()

    whole = tmp_path / "whole"
    done = subprocess.run(command(tiny_model_dir, data, whole, prefix_cache), capture_output=True, text=True,
                          env=environment(), cwd=REPO_ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(command(tiny_model_dir, data, out, prefix_cache), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=environment(), cwd=REPO_ROOT)
    deadline = time.monotonic() + 600
    while not (out / f"checkpoint-{KILL_AFTER}" / "trainer_state.json").is_file():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "run_info.json").exists()  # it really died mid-run

    again = subprocess.run(command(tiny_model_dir, data, out, prefix_cache), capture_output=True, text=True,
                           env=environment(), cwd=REPO_ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = [line for line in again.stderr.splitlines() if "Resuming from" in line]
    assert resumed, again.stderr[-3000:]
    step = int(resumed[0].rsplit("checkpoint-", 1)[1])
    assert 2 * SAVE_EVERY <= step < STEPS
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    assert min(e["step"] for e in state["log_history"] if "loss" in e) <= step  # the history was carried over
    if prefix_cache != "off":
        where = "in RAM" if prefix_cache == "ram" else "a disk memmap in"
        for run in (done, again):
            assert "Prefix cache: 20 examples" in run.stderr and where in run.stderr, run.stderr[-3000:]
            served = [line for line in run.stderr.splitlines() if "batches served from the cache" in line]
            assert served and not served[-1].split("Prefix cache: ")[1].startswith("0 "), served
        assert "Prefix cache: 20 of 20 examples put back" in again.stderr, again.stderr[-3000:]

    expected, got = step_losses(whole), step_losses(out)
    assert expected.keys() == got.keys() == set(range(1, STEPS + 1))
    for at in expected:
        assert abs(got[at] - expected[at]) <= 1e-6, (at, got[at], expected[at])
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    expected, got = load_file(str(whole / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert expected.keys() == got.keys()
    frozen = [n for n in got if n.startswith(("model.embed_tokens.", "model.layers.0.", "model.layers.1."))]
    for name in frozen:
        assert torch.equal(got[name], base[name]), name
    for name in got:
        if name not in frozen:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)
            assert not torch.equal(got[name], base[name]), f"{name} did not train"


def system_prompt_dataset(vocab: int = 259, seed: int = 0) -> Dataset:
    """16 tokens every row starts with; 8 rows go on with 8 more shared tokens, 4 with 8 others: batches split
    their shared tokens at 16 or at 24, depending on which rows they hold."""
    generator = torch.Generator().manual_seed(seed)

    def tokens(n: int) -> torch.Tensor:
        return torch.randint(3, vocab, (n,), generator=generator)

    system, first, second = tokens(16), tokens(8), tokens(8)
    ids, labels = [], []
    for i in range(12):
        own = tokens(int(torch.randint(8, 20, (1,), generator=generator)))
        row = torch.cat([system, first if i < 8 else second, own])
        label = row.clone()
        label[: 24 + own.numel() // 2] = -100
        ids.append(row.tolist())
        labels.append(label.tolist())
    return Dataset.from_dict({"input_ids": ids, "labels": labels})


def test_a_batch_gets_the_same_prefix_states_whatever_ran_before():
    torch.manual_seed(0)
    model = build_tiny_model("llama").eval()
    collate = DialogueCollator(build_chatml_tokenizer())
    dataset = system_prompt_dataset()
    batches = [collate([dataset[i] for i in rows]) for rows in ([0, 1], [2, 9], [3, 4], [10, 11], [5, 8])]
    inputs = [{"input_ids": b["input_ids"], "attention_mask": b["attention_mask"], "use_cache": False}
              for b in batches]

    def runner() -> PrefixRunner:
        return PrefixRunner(model, model.model.layers, 2)

    alone = [runner().prefix(batch) for batch in inputs]
    forward, backward = runner(), runner()
    in_order = [forward.prefix(batch) for batch in inputs]
    reversed_order = [backward.prefix(batch) for batch in reversed(inputs)][::-1]
    for one, two, three in zip(alone, in_order, reversed_order, strict=True):
        assert torch.equal(one, two) and torch.equal(one, three)
    # Three different shared leading tokens (those all rows share, and 24 in two ways), sharing still on.
    assert forward.share_prefixes and len(forward.shared_rows) == 3


def freeze_trainer(tmp_path, name: str, **overrides) -> FreezeTrainer:
    model = build_tiny_model("llama")
    options = dict(
        output_dir=str(tmp_path / name), max_steps=30, per_device_train_batch_size=2, learning_rate=1e-2,
        warmup_steps=0, logging_steps=1, save_strategy="steps", save_steps=5, save_total_limit=None, eval_strategy="no",
        report_to="none", use_cpu=True, seed=0, prefix_cache="ram",
    )
    options.update(overrides)
    return FreezeTrainer(model=model, args=FreezeTrainingArguments(**options),
                         freeze_plan=make_plan(model, FreezeArguments(num_frozen_layers="2")),
                         train_dataset=system_prompt_dataset(), data_collator=DialogueCollator(build_chatml_tokenizer()))


def test_group_by_length_draws_each_epochs_order_from_the_seed(tmp_path):
    trainer = freeze_trainer(tmp_path, "order", prefix_cache="off")
    assert trainer.args.train_sampling_strategy == "group_by_length"

    def batches(loader, epoch: int) -> list[torch.Tensor]:
        loader.set_epoch(epoch)
        return [batch["input_ids"] for batch in loader]

    loader = trainer.get_train_dataloader()
    first = batches(loader, 1)
    torch.manual_seed(1234)  # the global RNG of a resumed run is elsewhere when an epoch starts
    again = batches(trainer.get_train_dataloader(), 1)
    skipped = batches(trainer.get_resumed_dataloader(trainer.get_train_dataloader(), 2), 1)
    assert len(first) == 6 and all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first[2:], skipped, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, batches(loader, 2), strict=True))


@pytest.mark.parametrize(("accumulation", "steps"), [(1, 15), (2, 5)])
def test_resumed_run_refills_the_prefix_cache_with_what_the_interrupted_run_cached(tmp_path, caplog, accumulation,
                                                                                     steps):
    # 6 micro-batches an epoch: checkpoint-15 (one a step) and checkpoint-5 (two a step) are mid-epoch, with the
    # cache full since the first epoch's end.
    options = dict(max_steps=2 * steps, gradient_accumulation_steps=accumulation)
    whole = freeze_trainer(tmp_path, "whole", **options)
    whole.train()
    weights = {name: p.detach().clone() for name, p in whole.model.named_parameters()}
    checkpoint = tmp_path / "resumed" / f"checkpoint-{steps}"
    shutil.copytree(tmp_path / "whole" / f"checkpoint-{steps}", checkpoint)
    resumed = freeze_trainer(tmp_path, "resumed", **options)
    with caplog.at_level("INFO", logger="chatfreeze"):
        resumed.train(resume_from_checkpoint=str(checkpoint))

    def losses(trainer) -> dict[int, float]:
        return {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}

    assert losses(resumed) == losses(whole)
    for name, weight in resumed.model.named_parameters():
        assert torch.equal(weight, weights[name]), name
    assert (f"Prefix cache: 12 of 12 examples put back, from the batches of the {steps} steps checkpoint-{steps}"
            in caplog.text)
    assert resumed.fast_path.last_cache_stats["misses"] == 0  # every resumed step was served from the cache
