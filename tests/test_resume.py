"""kill -9 mid-run, then the same command again: training resumes from the newest checkpoint (the global step
continues), the frozen tensors stay bit-identical to the base, and the trained ones equal an uninterrupted run's
with the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO_ROOT
from safetensors.torch import load_file

STEPS, SAVE_EVERY = 60, 5


def command(model_dir, data, out) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "--model_name_or_path", str(model_dir),
            "--dataset", str(data), "--eval_dataset", "none", "--num_frozen_layers", "2", "--max_steps", str(STEPS),
            "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--save_strategy", "steps",
            "--save_steps", str(SAVE_EVERY), "--save_total_limit", "3", "--logging_steps", "1", "--seed", "0",
            "--output_dir", str(out), "--report_to", "none", "--use_cpu", "true", "--eval_before_after", "false",
            # The prefix cache is rebuilt after a resume from states computed in other batches, and the shared-
            # system-prompt prefill rounds per batch (~1e-4): exact equality with the uninterrupted run needs it
            # off. (With it on, a resumed run differs from an uninterrupted one by that rounding, compounded.)
            "--prefix_cache", "off"]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_kill_9_between_checkpoints_then_rerun_resumes_and_matches(tiny_model_dir, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"Where is order {i}? " + "please " * (i % 5)},
                          {"role": "assistant", "content": f"Order {i} ships in {i % 4 + 1} days."}]}
            for i in range(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    whole = tmp_path / "whole"
    done = subprocess.run(command(tiny_model_dir, data, whole), capture_output=True, text=True, env=ENV,
                          cwd=REPO_ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(command(tiny_model_dir, data, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV, cwd=REPO_ROOT)
    deadline = time.monotonic() + 600
    while not (out / f"checkpoint-{2 * SAVE_EVERY}" / "trainer_state.json").is_file():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "run_info.json").exists()  # it really died mid-run

    again = subprocess.run(command(tiny_model_dir, data, out), capture_output=True, text=True, env=ENV,
                           cwd=REPO_ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = [line for line in again.stderr.splitlines() if "Resuming from" in line]
    assert resumed, again.stderr[-3000:]
    step = int(resumed[0].rsplit("checkpoint-", 1)[1])
    assert 2 * SAVE_EVERY <= step < STEPS
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    assert min(e["step"] for e in state["log_history"] if "loss" in e) <= step  # the history was carried over

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
