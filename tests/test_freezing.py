"""Locating blocks across architectures, the freeze spec and its errors, tied heads, the plan and its CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, build_tiny_model

from chatfreeze.freezing import (
    FreezePlan,
    FreezeSpecError,
    apply_plan,
    locate,
    make_plan,
    resolve_num_frozen,
)
from chatfreeze.training.arguments import FreezeArguments

FAMILIES = {
    # family: (blocks prefix, embedding prefixes)
    "llama": ("model.layers", ["model.embed_tokens"]),
    "mistral": ("model.layers", ["model.embed_tokens"]),
    "qwen2": ("model.layers", ["model.embed_tokens"]),
    "gemma": ("model.layers", ["model.embed_tokens"]),
    "phi": ("model.layers", ["model.embed_tokens"]),
    "gpt2": ("transformer.h", ["transformer.wte", "transformer.wpe"]),
    "gpt_neox": ("gpt_neox.layers", ["gpt_neox.embed_in"]),
    "opt": ("model.decoder.layers", ["model.decoder.embed_tokens", "model.decoder.embed_positions"]),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_locate_finds_blocks_embeddings_and_head(family):
    model = build_tiny_model(family, num_layers=3)
    layout = locate(model)
    blocks_prefix, embeddings = FAMILIES[family]
    assert layout.blocks_prefix == blocks_prefix
    assert layout.num_layers == 3
    assert layout.embedding_prefixes == embeddings
    assert layout.head_prefix == "lm_head"
    assert layout.tied_embeddings is (model.get_output_embeddings().weight is model.get_input_embeddings().weight)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_plan_freezes_embeddings_and_lowest_blocks(family):
    model = build_tiny_model(family, num_layers=4)
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    apply_plan(model, plan)
    layout = locate(model)
    for name, param in model.named_parameters():
        block = layout.block_of(name)
        component = layout.component_of(name)
        if component == "embeddings" or (block is not None and block < 2) or component == "head":
            assert not param.requires_grad, name
        else:
            assert param.requires_grad, name
    assert plan.frozen_layers == [0, 1] and plan.trainable_layers == [2, 3]
    assert plan.embeddings_frozen
    counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert plan.trainable_parameters == counted
    assert plan.total_parameters == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0), ("3", 3), ("10", 10), ("-2", 8), ("-10", 0), ("0.8", 8), ("0.75", 7)]
)
def test_num_frozen_layers_forms(value, expected):
    assert resolve_num_frozen(value, 10) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (dict(num_frozen_layers="5"), "--num_frozen_layers 5: the model has 4 blocks"),
        (dict(num_frozen_layers="-5"), "--num_frozen_layers -5: the model has 4 blocks"),
        (dict(num_frozen_layers="1", extra_frozen_patterns=["layers"]), "--extra_frozen_patterns 'layers': matches no"),
        (dict(num_frozen_layers="1", extra_trainable_patterns=["("]), "not a valid regular expression"),
        (dict(num_frozen_layers="4", freeze_final_norm=True), "freezes every parameter"),
        (dict(num_frozen_layers="0", freeze_embeddings=False), "freezes nothing"),
    ],
)
def test_bad_specs_fail_in_one_line_naming_the_option(spec, message):
    with pytest.raises(FreezeSpecError) as err:
        make_plan(build_tiny_model("llama"), FreezeArguments(**spec))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_num_frozen_layers_form_is_rejected_by_the_arguments():
    with pytest.raises(ValueError, match="--num_frozen_layers 'half'"):
        FreezeArguments(num_frozen_layers="half")
    with pytest.raises(ValueError, match="--num_frozen_layers '1.5'"):
        FreezeArguments(num_frozen_layers="1.5")


def test_blocks_not_found_lists_what_was_found():
    model = build_tiny_model("llama")
    model.config.num_hidden_layers = 7  # no ModuleList of that length
    with pytest.raises(FreezeSpecError, match=r"cannot find the transformer blocks.*model\.layers \(4 x LlamaDecoderLayer\)"):
        locate(model)


def test_extra_patterns_are_anchored_and_applied_in_order():
    model = build_tiny_model("llama")
    spec = FreezeArguments(
        num_frozen_layers="2",
        extra_frozen_patterns=[r"model\.layers\.3\.mlp\..*"],
        extra_trainable_patterns=[r"model\.layers\.0\.input_layernorm\.weight"],
    )
    plan = make_plan(model, spec)
    assert "model.layers.0.input_layernorm.weight" in plan.trainable_parameter_names
    assert "model.layers.3.mlp.up_proj.weight" in plan.frozen_parameter_names
    # Block 0 now trains one tensor, so it is no longer a fully frozen block.
    assert plan.frozen_layers == [1]
    table = plan.format_table()
    assert "partly trainable" in table


def test_tied_head_is_reported_frozen_with_the_embeddings():
    model = build_tiny_model("llama", tie=True)
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    assert plan.tied_embeddings and not plan.lm_head_trainable and not plan.untie_lm_head
    assert "tied to the embeddings: frozen with them" in plan.format_table()


def test_train_lm_head_unties_a_copy_and_keeps_the_config_honest(tmp_path):
    from transformers import AutoModelForCausalLM

    model = build_tiny_model("llama", tie=True)
    embeddings_before = model.get_input_embeddings().weight.detach().clone()
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2", train_lm_head=True))
    apply_plan(model, plan)
    head, embed = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert head is not embed and head.requires_grad and not embed.requires_grad
    assert torch.equal(head, embeddings_before)
    assert model.config.tie_word_embeddings is False
    with torch.no_grad():
        head.add_(1.0)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config.tie_word_embeddings is False
    assert torch.equal(reloaded.get_output_embeddings().weight, head)
    assert torch.equal(reloaded.get_input_embeddings().weight, embeddings_before)


def test_untied_model_trains_head_only_when_asked():
    model = build_tiny_model("gpt_neox", tie=False)
    assert "lm_head.weight" in make_plan(model, FreezeArguments(num_frozen_layers="2")).frozen_parameter_names
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2", train_lm_head=True))
    assert "lm_head.weight" in plan.trainable_parameter_names and not plan.untie_lm_head


def test_plan_round_trips_through_json(tmp_path):
    plan = make_plan(build_tiny_model("gpt2"), FreezeArguments(num_frozen_layers="-1"))
    plan.save(tmp_path)
    loaded = FreezePlan.load(tmp_path)
    assert loaded == plan
    data = json.loads((tmp_path / "freeze_plan.json").read_text())
    assert data["frozen_layers"] == [0, 1, 2] and data["trainable_percent"] > 0


def test_decisions_ignore_shapes(monkeypatch):
    """ZeRO-3 partitions parameters to shape [0]: the plan must decide the same from names alone."""
    model = build_tiny_model("llama")
    expected = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    for param in model.parameters():
        param.ds_numel = param.numel()
        param.data = torch.empty(0)
    partitioned = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    assert partitioned.frozen_parameter_names == expected.frozen_parameter_names
    assert partitioned.trainable_parameters == expected.trainable_parameters


def run_plan_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatfreeze.plan", *args], capture_output=True, text=True, cwd=REPO_ROOT,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.slow
def test_plan_cli_json_for_a_tiny_gpt2(tmp_path):
    build_tiny_model("gpt2", num_layers=4).save_pretrained(tmp_path)
    result = run_plan_cli("--model_name_or_path", str(tmp_path), "--num_frozen_layers", "3", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["num_layers"] == 4 and data["frozen_layers"] == [0, 1, 2]
    assert data["embeddings_frozen"] is True and data["tied_embeddings"] is True
    assert data["resolved_model_path"] == str(tmp_path.resolve())
    assert 0 < data["trainable_parameters"] < data["total_parameters"]


@pytest.mark.slow
def test_plan_cli_table_and_bad_spec(tmp_path):
    build_tiny_model("llama").save_pretrained(tmp_path)
    table = run_plan_cli("--model_name_or_path", str(tmp_path), "--num_frozen_layers", "-1")
    assert table.returncode == 0 and "blocks 0-2" in table.stdout and "blocks 3" in table.stdout
    bad = run_plan_cli("--model_name_or_path", str(tmp_path), "--num_frozen_layers", "9")
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0 and "--num_frozen_layers 9" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = run_plan_cli("--model_name_or_path", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "no such directory" in missing.stderr


@pytest.mark.slow
def test_plan_cli_for_the_default_model(smollm2_path):
    result = run_plan_cli("--num_frozen_layers", "24", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["num_layers"] == 30 and data["frozen_layers"] == list(range(24))
    assert data["tied_embeddings"] is True and data["embeddings_frozen"] is True
    assert data["total_parameters"] == 134_515_008
    # 6 blocks x 3,540,096 + final norm 576
    assert data["trainable_parameters"] == 6 * 3_540_096 + 576
    assert data["resolved_model_path"] == str(smollm2_path)


def test_train_lm_head_under_zero3_is_refused_not_cloned_from_a_placeholder():
    """Under DeepSpeed ZeRO-3 each parameter this process sees is a [0]-shaped placeholder (its data lives in
    ``ds_tensor``): untying must refuse with a clear error instead of cloning an empty head."""
    import torch

    from chatfreeze.freezing import apply_plan

    model = build_tiny_model("llama")
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2", train_lm_head=True))
    assert plan.untie_lm_head
    for param in model.parameters():
        param.ds_tensor = param.data.clone().flatten()  # what ZeRO-3 leaves on a partitioned parameter
        param.data = torch.empty(0)
    with pytest.raises(FreezeSpecError, match=r"--train_lm_head: the tied LM head is partitioned by DeepSpeed "
                                              r"ZeRO-3 \(shape \[0\] here\)"):
        apply_plan(model, plan)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # left as it was


def test_plan_of_a_hub_model_downloads_its_config_only(tmp_path, monkeypatch):
    """`chatfreeze plan` on a Hub id fetches config.json alone (the model is built on the meta device), so a 70B
    model is planned from a few KB. A stand-in Hub answers with a 7B-shaped Llama config."""
    import huggingface_hub
    from transformers import LlamaConfig

    from chatfreeze.cli.plan import plan_for
    from chatfreeze.freezing import FreezeArguments
    from chatfreeze.modeling import ModelArguments

    calls = []
    snapshot = tmp_path / "snapshot"
    LlamaConfig(num_hidden_layers=32, hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                vocab_size=32000).save_pretrained(snapshot)

    def fake_download(repo_id, **kwargs):
        calls.append(kwargs.get("allow_patterns"))
        return str(snapshot)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("chatfreeze.modeling.resolve._probe_hub", lambda *args, **kwargs: None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    plan, resolved = plan_for(ModelArguments(model_name_or_path="some-org/llama-7b"),
                              FreezeArguments(num_frozen_layers="28"))
    assert calls == [["config.json"]] and resolved.source == "hub"
    assert plan.total_parameters > 6e9 and len(plan.frozen_layers) == 28
