"""Trained-blocks-only checkpoints: a delta holds only what training changed, pins its base by a SHA-256 of every
frozen tensor, loads with the same logits as the full save, refuses a tampered base, merges into a model plain
transformers loads, and many deltas share one base."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT

from chatfreeze.freezing import FreezeArguments, make_plan
from chatfreeze.modeling import DeltaError, is_delta, load_delta, load_model, write_delta
from chatfreeze.modeling.delta import read_manifest


def tuned_copy(base_dir, names, seed):
    model = load_model(str(base_dir))
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            params[name].add_(torch.randn(params[name].shape, generator=generator) * 0.05)
    return model


def logits(model, ids):
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


@pytest.mark.parametrize("untie", [False, True])
def test_delta_holds_only_trained_tensors_and_reproduces_the_full_model(tiny_model_dir, tmp_path, untie):
    base = load_model(str(tiny_model_dir))
    plan = make_plan(base, FreezeArguments(num_frozen_layers="2", train_lm_head=untie))
    tuned = tuned_copy(tiny_model_dir, plan.trainable_parameter_names if not untie else [
        n for n in plan.trainable_parameter_names if n != "lm_head.weight"], seed=1)
    if untie:
        tuned.config.tie_word_embeddings = False
        tuned.lm_head.weight = torch.nn.Parameter(tuned.lm_head.weight.detach().clone() * 1.5)
    names = plan.trainable_parameter_names + (["lm_head.weight"] if untie and "lm_head.weight" not in
                                              plan.trainable_parameter_names else [])
    manifest = write_delta(tuned, names, tmp_path / "delta", {"name_or_path": str(tiny_model_dir),
                                                             "source": "local"})
    assert is_delta(tmp_path / "delta") and not list((tmp_path / "delta").glob("model*.safetensors"))
    assert sorted(manifest["trained"]) == sorted(names)
    assert set(manifest["frozen_sha256"]) & set(names) == set()
    assert all(len(digest) == 64 for digest in manifest["frozen_sha256"].values())
    ids = torch.randint(3, 250, (2, 12))
    rebuilt = load_model(str(tmp_path / "delta"))  # transparently, like the chat and evaluation do
    assert (logits(rebuilt, ids) - logits(tuned, ids)).abs().max().item() <= 1e-6


@pytest.mark.slow
def test_a_tampered_base_tensor_is_refused_by_name(tiny_model_dir, tmp_path):
    base = load_model(str(tiny_model_dir))
    plan = make_plan(base, FreezeArguments(num_frozen_layers="2"))
    write_delta(tuned_copy(tiny_model_dir, plan.trainable_parameter_names, 1), plan.trainable_parameter_names,
                tmp_path / "delta", {"name_or_path": str(tiny_model_dir), "source": "local"})
    with torch.no_grad():
        base.model.layers[0].mlp.down_proj.weight[0, 0] += 1e-3
    base.save_pretrained(tmp_path / "tampered")
    with pytest.raises(DeltaError, match=r"model\.layers\.0\.mlp\.down_proj\.weight"):
        load_delta(tmp_path / "delta", base_path=str(tmp_path / "tampered"))
    manifest = read_manifest(tmp_path / "delta")
    manifest["base"]["name_or_path"] = str(tmp_path / "tampered")
    (tmp_path / "delta" / "delta_manifest.json").write_text(json.dumps(manifest))
    result = subprocess.run([sys.executable, "-m", "chatfreeze.merge", str(tmp_path / "delta"), str(tmp_path / "o")],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "model.layers.0.mlp.down_proj.weight" in last, last
    assert not (tmp_path / "o").exists()


def test_two_deltas_share_one_base_in_one_process(tiny_model_dir, tmp_path):
    base = load_model(str(tiny_model_dir))
    plan = make_plan(base, FreezeArguments(num_frozen_layers="3"))
    names = plan.trainable_parameter_names
    tuned = {seed: tuned_copy(tiny_model_dir, names, seed) for seed in (1, 2)}
    for seed, model in tuned.items():
        write_delta(model, names, tmp_path / f"company{seed}", {"name_or_path": str(tiny_model_dir)})
    ids = torch.randint(3, 250, (1, 10))
    loaded = {seed: load_model(str(tmp_path / f"company{seed}")) for seed in tuned}
    for seed in tuned:
        assert torch.equal(logits(loaded[seed], ids), logits(tuned[seed], ids))
    assert not torch.equal(logits(loaded[1], ids), logits(loaded[2], ids))


@pytest.mark.slow
def test_recipe_saves_a_delta_that_chat_evaluate_and_merge_read(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    rows = [{"messages": [{"role": "user", "content": f"Where is order {i}?"},
                          {"role": "assistant", "content": f"Order {i} ships tomorrow."}]} for i in range(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CHATFREEZE_MEASUREMENT_CACHE": str(tmp_path / "cache")}
    outs = {}
    for name, extra in (("full", []), ("delta", ["--save_trained_only", "true"])):
        outs[name] = tmp_path / name
        command = [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "--model_name_or_path",
                   str(tiny_model_dir), "--dataset", str(data), "--eval_dataset", "none", "--num_frozen_layers", "2",
                   "--max_steps", "2", "--per_device_train_batch_size", "4", "--output_dir", str(outs[name]),
                   "--report_to", "none", "--use_cpu", "true", "--save_strategy", "steps", "--save_steps", "1",
                   "--eval_before_after", "false", "--learning_rate", "1e-2", "--facts", "none", "--facts_probe",
                   "none", *extra]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    delta = outs["delta"]
    assert is_delta(delta) and not list(delta.glob("checkpoint-*")) and not (delta / "model.safetensors").exists()
    full_size = (outs["full"] / "model.safetensors").stat().st_size
    assert (delta / "delta.safetensors").stat().st_size < full_size
    ids = torch.randint(3, 250, (2, 9))
    full = AutoModelForCausalLM.from_pretrained(outs["full"])
    assert (logits(load_model(str(delta)), ids) - logits(full, ids)).abs().max().item() <= 1e-6
    merged = tmp_path / "merged"
    result = subprocess.run([sys.executable, "-m", "chatfreeze.merge", str(delta), str(merged)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    standalone = AutoModelForCausalLM.from_pretrained(merged)  # plain transformers, no chatfreeze
    assert torch.equal(logits(standalone, ids), logits(full, ids))
    assert not is_delta(merged)
    # Every weights file the run, the delta and the merge wrote is readable like the rest of its folder (the
    # subprocesses inherit this umask): safetensors alone would leave them 0600.
    for folder in (outs["full"], delta, merged):
        for weights in folder.glob("*.safetensors"):
            assert weights.stat().st_mode & 0o777 == (folder / "config.json").stat().st_mode & 0o777, weights
    chat = subprocess.run([sys.executable, "-m", "chatfreeze.chat", "--model_name_or_path", str(delta), "--prompt",
                           "Where is order 3?", "--max_new_tokens", "4"], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300, env=env)
    assert chat.returncode == 0, chat.stderr[-2000:]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_saved_weights_get_the_mode_of_the_umask(tmp_path, umask):
    from safetensors.torch import save_file

    from chatfreeze.common import current_umask, share_weights_like_umask

    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
        (tmp_path / "notes.txt").write_text("x")
        share_weights_like_umask(tmp_path)
    finally:
        os.umask(previous)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "notes.txt").stat().st_mode & 0o777 == 0o666 & ~umask
