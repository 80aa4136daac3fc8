"""Scale-out: every accelerate config in configs/accelerate validates with accelerate's own loader and launcher
logic, FSDP's per-block units never mix frozen and trainable parameters, and a real two-process CPU run
(gloo DDP) keeps the frozen tensors bit-identical and matches a one-process run with the same global batch."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, build_tiny_model
from safetensors.torch import load_file
from test_training import assert_freeze_invariants, write_dialogues

CONFIG_DIR = REPO_ROOT / "configs" / "accelerate"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
TRAIN_SCRIPT = str(REPO_ROOT / "scripts" / "train.py")
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]

# Which of accelerate's launchers each config takes, and how many processes it starts.
EXPECTED = {
    "cpu.yaml": ("simple", 1),
    "cpu_ddp.yaml": ("multi_gpu", 2),
    "multi_gpu.yaml": ("multi_gpu", 2),
    "fsdp.yaml": ("fsdp", 2),
    "deepspeed_zero2.yaml": ("deepspeed", 2),
    "deepspeed_zero3.yaml": ("deepspeed", 2),
}

FROZEN = ["model.embed_tokens.", "model.layers.0.", "model.layers.1."]
TRAINABLE = ["model.layers.2.", "model.layers.3."]


# --------------------------------------------------------------------------------------------------------
# The configs, through accelerate's own loader and launcher preparation (offline; no GPU, no deepspeed)
# --------------------------------------------------------------------------------------------------------


def launcher_view(config: Path):
    """What `accelerate launch --config_file CONFIG scripts/train.py` would do: (launcher, args, config, env)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import (
        prepare_deepspeed_cmd_env,
        prepare_multi_gpu_env,
        prepare_simple_launcher_cmd_env,
    )

    args = launch_command_parser().parse_args(["--config_file", str(config), TRAIN_SCRIPT])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
        return "deepspeed", args, defaults, env
    if args.use_fsdp:
        return "fsdp", args, defaults, prepare_multi_gpu_env(args)
    if args.multi_gpu:
        return "multi_gpu", args, defaults, prepare_multi_gpu_env(args)
    _, env = prepare_simple_launcher_cmd_env(args)
    return "simple", args, defaults, env


def plugin_env(env: dict, prefixes: tuple[str, ...]) -> dict:
    return {k: v for k, v in env.items() if k.startswith(prefixes)}


def test_there_is_a_config_for_each_setup():
    assert {p.name for p in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_loads_names_its_command_and_takes_the_right_launcher(config):
    from accelerate.commands.config.config_args import load_config_from_file

    lines = config.read_text().splitlines()
    assert lines[0].startswith("# "), "starts with a comment"
    assert any(f"accelerate launch --config_file configs/accelerate/{config.name}" in line for line in lines[:4])
    assert any(line.startswith("# Choose it") for line in lines), "says when to choose it"
    loaded = load_config_from_file(str(config))  # unknown keys fail here
    assert loaded.mixed_precision in ("no", "bf16")  # a bare `no` would be YAML's False
    launcher, args, _, env = launcher_view(config)
    assert (launcher, args.num_processes) == EXPECTED[config.name]
    assert env["ACCELERATE_MIXED_PRECISION"] == loaded.mixed_precision


def test_cpu_configs():
    # One process, told to use the CPU; and the multi-process one takes torchrun's launcher, not `--cpu`'s
    # simple launcher (which would start ONE process whatever --num_processes says).
    _, _, _, env = launcher_view(CONFIG_DIR / "cpu.yaml")
    assert env["ACCELERATE_USE_CPU"] == "True"
    launcher, args, _, _ = launcher_view(CONFIG_DIR / "cpu_ddp.yaml")
    assert launcher == "multi_gpu" and args.nproc_per_node == "2" and not args.cpu


def test_deepspeed_configs_leave_batch_and_clipping_to_the_trainer():
    from accelerate.utils import DeepSpeedPlugin, patch_environment

    for name, stage in (("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)):
        _, _, _, env = launcher_view(CONFIG_DIR / name)
        with patch_environment(**plugin_env(env, ("ACCELERATE_",))):
            plugin = DeepSpeedPlugin()
        config = plugin.deepspeed_config
        assert config["zero_optimization"]["stage"] == stage
        assert config["gradient_accumulation_steps"] == "auto" and config["gradient_clipping"] == "auto"
        assert config["train_micro_batch_size_per_gpu"] == "auto"
        if stage == 3:
            # The main process writes one model.safetensors, and the model loads already partitioned.
            assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
            assert plugin.zero3_init_flag


@pytest.fixture
def one_process_group():
    """A world of one gloo process, in memory (no port), torn down afterwards."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def frozen_tiny_llama():
    from chatfreeze.freezing import apply_plan, make_plan
    from chatfreeze.training.arguments import FreezeArguments

    model = build_tiny_model("llama")
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    apply_plan(model, plan)
    return model, plan


@pytest.mark.filterwarnings("ignore:FSDP is switching to use `NO_SHARD`")
def test_fsdp_units_never_mix_frozen_and_trainable_blocks(one_process_group):
    """fsdp.yaml's plugin, wrapping a frozen-bottom tiny Llama for real (FSDP1 on CPU, world of one)."""
    from accelerate.utils import FullyShardedDataParallelPlugin, patch_environment
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    _, _, _, env = launcher_view(CONFIG_DIR / "fsdp.yaml")
    with patch_environment(**plugin_env(env, ("FSDP_", "ACCELERATE_"))):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 1 and plugin.use_orig_params
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    model, plan = frozen_tiny_llama()
    plugin.set_auto_wrap_policy(model)  # no class named: the model's _no_split_modules
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    wrapped = FSDP(model, auto_wrap_policy=plugin.auto_wrap_policy, use_orig_params=plugin.use_orig_params,
                   sharding_strategy=plugin.sharding_strategy, device_id=torch.device("cpu"))
    trainable = set(plan.trainable_parameter_names)
    units = {}
    for name, module in wrapped.named_modules():
        if isinstance(module, FSDP) and module._handle is not None:
            prefix = name.replace("_fsdp_wrapped_module.", "")
            fqns = [f"{prefix}.{f}" if prefix else f for f in module._handle.flat_param._fqns]
            units[prefix or "<root>"] = {f: f in trainable for f in fqns}
    blocks = {k: v for k, v in units.items() if k != "<root>"}
    assert sorted(blocks) == [f"model.layers.{i}" for i in range(4)]  # one unit per block
    for unit, grads in blocks.items():
        assert len(set(grads.values())) == 1, f"{unit} mixes frozen and trainable parameters"
    assert not any(blocks["model.layers.1"].values()) and all(blocks["model.layers.2"].values())
    # The root unit: frozen embeddings (= the tied head) + the trainable final norm. Legal only because of
    # use_orig_params=True, which is why fsdp.yaml sets it.
    assert units["<root>"] == {"model.embed_tokens.weight": False, "model.norm.weight": True}


@pytest.mark.filterwarnings("ignore:FSDP is switching to use `NO_SHARD`")
def test_fsdp_without_orig_params_rejects_the_mixed_root_unit(one_process_group):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    model, _ = frozen_tiny_llama()
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={LlamaDecoderLayer})
    with pytest.raises(ValueError, match="uniform `requires_grad`"):
        FSDP(model, auto_wrap_policy=policy, use_orig_params=False, device_id=torch.device("cpu"))


def test_frozen_guard_checks_the_local_shards_of_a_sharded_model():
    """Under ZeRO-3 a parameter reads shape [0] and its data lives in ``ds_tensor``: that is what is checked."""
    from types import SimpleNamespace

    from chatfreeze.training.trainer import FrozenWeightsGuard

    model, _ = frozen_tiny_llama()
    frozen = model.model.layers[0].mlp.up_proj.weight
    frozen.ds_tensor = frozen.detach().flatten()[:16].clone()  # this process's partition
    guard = FrozenWeightsGuard(model)
    guard.sharded = True
    args = SimpleNamespace(device=torch.device("cpu"))
    guard.on_train_begin(args, None, None, model=model)
    guard.on_train_end(args, None, None)  # nothing moved
    frozen.ds_tensor[3] += 1
    with pytest.raises(RuntimeError, match=r"1 frozen tensor\(s\) changed .*layers\.0\.mlp\.up_proj"):
        guard.on_train_end(args, None, None)


def test_auto_precision_turns_bf16_on_where_the_accelerator_reads_it(monkeypatch):
    from types import SimpleNamespace

    from chatfreeze.training.methods import get_method
    from chatfreeze.training.recipe import derive_training_args, load_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    args = SimpleNamespace(bf16=False, fp16=False, mixed_precision="no", kl_to_base=0.0, eval_strategy="epoch")
    model_args = SimpleNamespace(model_dtype="auto")
    run = SimpleNamespace(model_args=model_args, training_args=args, method=get_method("freeze"),
                          data_args=SimpleNamespace(eval_dataset="held_out.jsonl", validation_split_ratio=0.0))
    derive_training_args(run)
    assert load_dtype(model_args) == torch.float32  # fp32 master weights
    assert args.bf16 and args.mixed_precision == "bf16"  # Trainer builds its Accelerator from mixed_precision
    assert args.eval_strategy == "epoch"


# --------------------------------------------------------------------------------------------------------
# A real two-process run on the CPU
# --------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)


def tiny_args(model_dir: Path, data: Path, out: Path, per_device_batch: int, kl: str = "0") -> list[str]:
    # The default recipe (chatfreeze/recipes/default.yaml: sample replies, the before/after evaluation) on a tiny
    # model.
    return [
        "--model_name_or_path", str(model_dir), "--dataset", str(data), "--eval_dataset", str(data),
        "--num_frozen_layers", "2", "--max_steps", "6", "--per_device_train_batch_size", str(per_device_batch),
        "--learning_rate", "1e-2", "--logging_steps", "1", "--output_dir", str(out),
        # identical-length examples only (no replay, drills or plain-text passages): every step a whole epoch
        "--replay_ratio", "0", "--facts", "none", "--facts_probe", "none", "--text_replay_ratio", "0",
        "--kl_to_base", kl,
    ]


def step_losses(out: Path) -> list[float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.mark.slow
@pytest.mark.parametrize(("accumulation", "kl"), [(1, "0"), (4, "0"), (2, "0.5")],
                         ids=["accum1", "accum4", "accum2-kl0.5"])
def test_two_cpu_processes_train_together_and_match_one_process(tiny_model_dir, tmp_path, accumulation, kl):
    # 8 dialogues of identical length (no padding) and a global batch of 8: every step is a whole epoch, so
    # both runs see the same examples at every step whatever order the samplers draw them in (DDP: 2 x 4 / acc,
    # one process: 8 / acc, each x acc micro-batches), and the loss is token-weighted over the global batch in
    # both. Plain SGD, not AdamW: Adam's update is invariant to a constant factor on the gradient, SGD's is not,
    # so a wrong loss scale between the two launch modes shows in the weights as well as in the logged losses.
    data = write_dialogues(tmp_path / "train.jsonl", n=8)
    two, one = tmp_path / "two", tmp_path / "one"
    sgd = ["--optim", "sgd", "--learning_rate", "1.0", "--lr_scheduler_type", "constant", "--warmup_steps", "0",
           "--gradient_accumulation_steps", str(accumulation)]
    launched = run([
        *ACCELERATE, "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        TRAIN_SCRIPT, *tiny_args(tiny_model_dir, data, two, per_device_batch=4 // accumulation, kl=kl), *sgd,
    ])
    assert launched.returncode == 0, launched.stderr[-4000:]
    info = json.loads((two / "run_info.json").read_text())
    assert info["world_size"] == 2
    assert info["parallel"]["distributed_type"] == "MULTI_CPU" and info["parallel"]["backend"] == "gloo"
    assert info["parallel"]["global_train_batch_size"] == 8
    assert {"torch", "transformers", "accelerate"} <= set(info["versions"])
    assert info["freeze"]["num_frozen_layers"] == "2"
    assert_freeze_invariants(tiny_model_dir, two, FROZEN, TRAINABLE)
    # One writer: the main process alone saved and generated the sample replies.
    assert launched.stderr.count("Saved the fine-tuned model") == 1
    assert json.loads((two / "trainer_state.json").read_text())["global_step"] == 6
    # The prefix cache is per process and the sampler moves examples between processes: off, and said so.
    assert "Fast path on" in launched.stderr and "Prefix cache off: 2 processes train together" in launched.stderr

    single = run([sys.executable, TRAIN_SCRIPT, *tiny_args(tiny_model_dir, data, one, per_device_batch=8 // accumulation,
                                                           kl=kl), *sgd, "--use_cpu", "true"])
    assert single.returncode == 0, single.stderr[-4000:]
    assert json.loads((one / "run_info.json").read_text())["world_size"] == 1
    # One process: the cache fills in epoch 1 and serves the 5 later epochs' micro-batches.
    assert f"Prefix cache: {5 * accumulation} batches served from the cache" in single.stderr

    # Per-step losses: the same global batch, so the same loss at every step (fp32, summation order only).
    losses_two, losses_one = step_losses(two), step_losses(one)
    assert len(losses_two) == len(losses_one) == 6
    torch.testing.assert_close(torch.tensor(losses_two), torch.tensor(losses_one), rtol=1e-4, atol=0)
    # SGD (lr 1) moves each weight by lr x gradient: a factor of 2 (or 1/4) on the gradient would move it 2x
    # (1/4x) as far, 2e-4 to 0.1 here; summation order alone leaves ~1e-8.
    a, b = load_file(str(two / "model.safetensors")), load_file(str(one / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
        if any(name.startswith(p) for p in TRAINABLE):
            assert (a[name] - base[name]).abs().max() > 1e-4, f"{name} barely moved"  # >= 100x atol
