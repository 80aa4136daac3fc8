"""FreezeTrainer invariants on tiny models: frozen tensors bit-identical, every trainable tensor moved,
only trainable parameters in the optimizer, activation checkpointing correct with a frozen bottom."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_model
from datasets import Dataset

from chatfreeze.freezing import locate, make_plan
from chatfreeze.training.arguments import FreezeArguments, FreezeTrainingArguments
from chatfreeze.training.trainer import FreezeTrainer


def toy_dataset(n: int = 16, length: int = 24, vocab: int = 259, seed: int = 0) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (n, length), generator=generator)
    labels = ids.clone()
    labels[:, : length // 2] = -100  # a "prompt" half that is not trained, like user turns
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})


def train_args(tmp_path, **overrides) -> FreezeTrainingArguments:
    options = dict(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
        warmup_steps=0, logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none",
        use_cpu=True, seed=0, data_seed=0, weight_decay=0.1, lr_scheduler_type="constant",
    )
    options.update(overrides)
    return FreezeTrainingArguments(**options)


def run(tmp_path, family="llama", spec=None, **overrides):
    model = build_tiny_model(family)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    plan = make_plan(model, spec or FreezeArguments(num_frozen_layers="2"))
    trainer = FreezeTrainer(model=model, args=train_args(tmp_path, **overrides), freeze_plan=plan,
                            train_dataset=toy_dataset())
    trainer.train()
    return model, before, plan, trainer


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "opt"])
def test_frozen_tensors_bit_identical_and_every_trainable_tensor_moved(tmp_path, family):
    model, before, plan, trainer = run(tmp_path, family)
    frozen = set(plan.frozen_parameter_names)
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, before[name]), f"frozen {name} changed"
        else:
            assert not torch.equal(param, before[name]), f"trainable {name} did not move"
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.parameters() if p.requires_grad}


def test_saved_model_keeps_frozen_tensors(tmp_path):
    from safetensors.torch import load_file

    model, before, plan, trainer = run(tmp_path)
    trainer.save_model(str(tmp_path / "saved"))
    saved = load_file(str(tmp_path / "saved" / "model.safetensors"))
    for name in plan.frozen_parameter_names:
        assert torch.equal(saved[name], before[name]), name
    assert trainer.args.ddp_find_unused_parameters is False


def test_guard_catches_a_write_to_a_frozen_tensor(tmp_path):
    from transformers import TrainerCallback

    class Sabotage(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            with torch.no_grad():
                model.model.layers[0].mlp.up_proj.weight.add_(1.0)

    model = build_tiny_model("llama")
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    trainer = FreezeTrainer(model=model, args=train_args(tmp_path), freeze_plan=plan,
                            train_dataset=toy_dataset(), callbacks=[Sabotage()])
    with pytest.raises(RuntimeError, match="frozen tensor"):
        trainer.train()


def test_activation_checkpointing_only_on_trainable_blocks_and_same_result(tmp_path):
    plain, _, plan, _ = run(tmp_path / "a")
    checkpointed, before, _, trainer = run(tmp_path / "b", activation_checkpointing=True)
    blocks = checkpointed.get_submodule(plan.blocks_prefix)
    assert [b.gradient_checkpointing for b in blocks] == [False, False, True, True]
    # No hook that makes autograd walk through the frozen embeddings and blocks.
    assert not checkpointed.get_input_embeddings()._forward_hooks
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    trainable = [n for n, p in checkpointed.named_parameters() if p.requires_grad]
    assert all(not torch.equal(dict(checkpointed.named_parameters())[n], before[n]) for n in trainable)
    assert trainer.args.activation_checkpointing is True


def test_reentrant_request_is_overridden(tmp_path, caplog):
    _, before, plan, _ = run(
        tmp_path, activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": True}
    )
    assert "use_reentrant=True ignored" in caplog.text


def test_gradual_spec_with_untied_head_trains_head(tmp_path):
    spec = FreezeArguments(num_frozen_layers="3", train_lm_head=True)
    model, before, plan, _ = run(tmp_path, spec=spec)
    assert plan.untie_lm_head
    assert not torch.equal(model.lm_head.weight, before["model.embed_tokens.weight"])
    assert torch.equal(model.model.embed_tokens.weight, before["model.embed_tokens.weight"])
    assert locate(model).tied_embeddings is False


def test_checkpointing_gives_gradients_to_every_trainable_block_and_none_to_frozen(tmp_path):
    from chatfreeze.training.trainer import enable_trainable_checkpointing

    model = build_tiny_model("llama")
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    trainer = FreezeTrainer(model=model, args=train_args(tmp_path), freeze_plan=plan, train_dataset=toy_dataset())
    enable_trainable_checkpointing(model, plan)
    model.train()
    batch = {key: torch.tensor([row[key] for row in toy_dataset()][:2]) for key in ("input_ids", "labels")}
    for loss in (model(**batch).loss, trainer.compute_loss(model, dict(batch))):  # plain path, then the fast path
        model.zero_grad(set_to_none=True)
        loss.backward()
        blocks = model.get_submodule(plan.blocks_prefix)
        for index, block in enumerate(blocks):
            grads = [p.grad for p in block.parameters()]
            if index in plan.frozen_layers:
                assert all(g is None for g in grads), f"frozen block {index} got a gradient"
            else:
                assert all(g is not None and bool(g.abs().sum() > 0) for g in grads), f"block {index}: no gradient"
