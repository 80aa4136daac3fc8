"""The freeze-aware fast path gives the plain path's losses and weights on tiny models: labelled-positions loss,
prefix without autograd, the prefix cache over two epochs, and every automatic switch-off with its log line."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from conftest import build_chatml_tokenizer, build_tiny_model, tiny_config
from datasets import Dataset

from chatfreeze.data import DialogueCollator
from chatfreeze.fastpath import (
    INDEX_COLUMN,
    PrefixCache,
    labelled_positions_loss,
    right_padded_layout,
    shifted_labels,
)
from chatfreeze.freezing import make_plan
from chatfreeze.training.arguments import FreezeArguments, FreezeTrainingArguments
from chatfreeze.training.trainer import FreezeTrainer

FAMILIES = ["llama", "gpt2", "gpt_neox", "opt"]


def varied_dataset(n: int = 12, vocab: int = 259, seed: int = 0) -> Dataset:
    """Dialogue-like rows of 10-29 tokens: an unlabelled "prompt" half, then labelled "reply" tokens."""
    generator = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for _ in range(n):
        length = int(torch.randint(10, 30, (1,), generator=generator))
        row = torch.randint(3, vocab, (length,), generator=generator)
        label = row.clone()
        label[: length // 2] = -100
        ids.append(row.tolist())
        labels.append(label.tolist())
    return Dataset.from_dict({"input_ids": ids, "labels": labels})


class RecordingTrainer(FreezeTrainer):
    """Keeps each step's loss, unrounded."""

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        self.step_losses.append(loss.item())
        return loss


def train(tmp_path, family="llama", spec=None, model=None, collator=None, dataset=None, **overrides):
    model = model if model is not None else build_tiny_model(family)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    plan = make_plan(model, spec or FreezeArguments(num_frozen_layers="2"))
    options = dict(
        output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=4, learning_rate=1e-3,
        warmup_steps=0, logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True,
        seed=0, data_seed=0, lr_scheduler_type="constant", train_sampling_strategy="random", prefix_cache="off",
    )
    options.update(overrides)
    trainer = RecordingTrainer(
        model=model, args=FreezeTrainingArguments(**options), freeze_plan=plan,
        train_dataset=dataset if dataset is not None else varied_dataset(),
        data_collator=collator or DialogueCollator(build_chatml_tokenizer()),
    )
    trainer.step_losses = []
    trainer.train()
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    return trainer, before, weights, plan


def assert_same_training(plain, fast, loss_atol=1e-5, weight_atol=1e-6):
    plain_trainer, _, plain_weights, _ = plain
    fast_trainer, before, fast_weights, plan = fast
    assert len(plain_trainer.step_losses) == len(fast_trainer.step_losses) > 0
    for a, b in zip(plain_trainer.step_losses, fast_trainer.step_losses, strict=True):
        assert abs(a - b) <= loss_atol, (plain_trainer.step_losses, fast_trainer.step_losses)
    frozen = set(plan.frozen_parameter_names)
    for name, weight in fast_weights.items():
        torch.testing.assert_close(weight, plain_weights[name], rtol=0, atol=weight_atol, msg=name)
        if name in frozen:
            assert torch.equal(weight, before[name]), f"frozen {name} changed"
        else:
            assert not torch.equal(weight, before[name]), f"trainable {name} did not move"


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_path_gives_the_plain_losses_and_weights(tmp_path, family, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    plain = train(tmp_path / "plain", family, fast_path=False)
    fast = train(tmp_path / "fast", family)
    assert plain[0].fast_path is None and fast[0].fast_path is not None
    assert "Fast path off (--fast_path false)" in caplog.text
    assert "Fast path on: embeddings + blocks 0-1 run without autograd" in caplog.text
    assert_same_training(plain, fast)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_labelled_loss_and_gradients_equal_the_models_own(tmp_path, family):
    model = build_tiny_model(family)
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    args = FreezeTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, prefix_cache="off",
                                   eval_strategy="no")
    trainer = FreezeTrainer(model=model, args=args, freeze_plan=plan, train_dataset=varied_dataset())
    batch = DialogueCollator(build_chatml_tokenizer())([varied_dataset()[i] for i in range(4)])
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    for num_items in (None, torch.tensor(37)):
        extra = {} if num_items is None else {"num_items_in_batch": num_items}
        plain = model(**batch, **extra).loss
        plain_grads = torch.autograd.grad(plain, trainable)
        fast = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items)
        fast_grads = torch.autograd.grad(fast, trainable)
        torch.testing.assert_close(fast, plain, rtol=0, atol=1e-6)
        for a, b in zip(fast_grads, plain_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_gradient_accumulation_matches_plain(tmp_path):
    plain = train(tmp_path / "plain", fast_path=False, gradient_accumulation_steps=2)
    fast = train(tmp_path / "fast", gradient_accumulation_steps=2)
    assert_same_training(plain, fast)


def test_activation_checkpointing_with_fast_path(tmp_path):
    plain = train(tmp_path / "plain", fast_path=False)
    fast = train(tmp_path / "fast", activation_checkpointing=True)
    assert_same_training(plain, fast)


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_cache_over_two_epochs_matches_plain(tmp_path, family, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    plain = train(tmp_path / "plain", family, fast_path=False, num_train_epochs=2)
    cached = train(tmp_path / "cached", family, prefix_cache="auto", num_train_epochs=2)
    # Epoch 2 re-batches the examples (random sampler): every batch is served from the cache.
    assert cached[0].fast_path.last_cache_stats["hits"] == 3
    assert cached[0].fast_path.last_cache_stats["misses"] == 3
    assert "Prefix cache: 12 examples" in caplog.text and "in RAM" in caplog.text
    # Cached states come from other batch shapes than the plain run's, so the last bits may differ.
    assert_same_training(plain, cached, loss_atol=1e-5, weight_atol=1e-5)


def test_kl_to_base_from_the_prefix_cache_matches_kl_without_it(tmp_path):
    # KL runs the base's top on the boundary states; served from the cache they must give the same loss and steps.
    uncached = train(tmp_path / "uncached", kl_to_base=0.5, num_train_epochs=2)
    cached = train(tmp_path / "cached", kl_to_base=0.5, prefix_cache="auto", num_train_epochs=2)
    assert cached[0].fast_path.base_top is not None
    assert cached[0].fast_path.last_cache_stats["hits"] == 3  # every batch of epoch 2 came from the cache
    plain = train(tmp_path / "no_kl", num_train_epochs=2)
    assert plain[0].step_losses[-1] != uncached[0].step_losses[-1]  # the KL term is in the loss
    assert_same_training(uncached, cached, loss_atol=1e-5, weight_atol=1e-5)


def test_filled_cache_serves_every_step_and_matches_plain(tmp_path):
    plain = train(tmp_path / "plain", fast_path=False, train_sampling_strategy="sequential")
    model = build_tiny_model("llama")
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    args = FreezeTrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=4, learning_rate=1e-3,
        warmup_steps=0, save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True, seed=0,
        lr_scheduler_type="constant", train_sampling_strategy="sequential", prefix_cache="ram",
    )
    trainer = RecordingTrainer(model=model, args=args, freeze_plan=plan, train_dataset=varied_dataset(),
                               data_collator=DialogueCollator(build_chatml_tokenizer()))
    trainer.step_losses = []
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert trainer.fill_prefix_cache() == 12
    trainer.train()
    stats = trainer.fast_path.last_cache_stats
    assert (stats["hits"], stats["misses"]) == (3, 0)  # every training step came from the cache
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert_same_training(plain, (trainer, before, weights, plan))


def test_disk_cache_in_half_precision_is_close_and_cleaned_up(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    plain = train(tmp_path / "plain", fast_path=False, num_train_epochs=2)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    half = train(tmp_path / "half", prefix_cache="disk", prefix_cache_dtype="bfloat16",
                 prefix_cache_dir=str(cache_dir), num_train_epochs=2)
    assert "a disk memmap in" in caplog.text and "approximate: bfloat16 states" in caplog.text
    assert half[0].fast_path.last_cache_stats["hits"] == 3
    assert os.listdir(cache_dir) == []
    assert_same_training(plain, half, loss_atol=5e-2, weight_atol=5e-3)


def test_dropout_in_the_prefix_switches_the_cache_off(tmp_path, caplog):
    from transformers import AutoModelForCausalLM

    caplog.set_level(logging.INFO, logger="chatfreeze")
    config = tiny_config("llama")
    config.attention_dropout = 0.1
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    trainer, *_ = train(tmp_path, model=model, prefix_cache="ram", num_train_epochs=2)
    assert "Prefix cache off: the frozen prefix is random in training: config attention_dropout=0.1" in caplog.text
    assert trainer.fast_path.last_cache_stats is None


def test_gpt2_dropout_modules_are_found(tmp_path, caplog):
    from transformers import AutoModelForCausalLM

    caplog.set_level(logging.INFO, logger="chatfreeze")
    # Every dropout field of the config is 0, so only the module scan can see the dropout added to the prefix.
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("gpt2"))
    assert model.transformer.drop.p == 0.0
    model.transformer.drop.p = 0.1
    trainer, *_ = train(tmp_path, model=model, prefix_cache="ram", num_train_epochs=2)
    assert "Prefix cache off: the frozen prefix is random in training: transformer.drop is Dropout(p=0.1)" \
        in caplog.text
    assert trainer.fast_path.last_cache_stats is None


def test_unknown_collator_switches_the_cache_off(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    dialogue_collator = DialogueCollator(build_chatml_tokenizer())

    def shuffling_collator(features):
        return dialogue_collator(features)

    trainer, *_ = train(tmp_path, collator=shuffling_collator, prefix_cache="ram", num_train_epochs=2)
    assert "Prefix cache off: the data collator function is not known to give the same tokens" in caplog.text


def test_one_epoch_leaves_the_auto_cache_off(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    trainer, *_ = train(tmp_path, prefix_cache="auto")
    assert "Prefix cache off: this run covers 1 epoch(s), so no example is seen twice" in caplog.text


def test_trainable_parameter_in_the_prefix_is_detected(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    spec = FreezeArguments(num_frozen_layers="3",
                           extra_trainable_patterns=[r"model\.layers\.1\.input_layernorm\.weight"])
    plain = train(tmp_path / "plain", spec=spec, fast_path=False)
    fast = train(tmp_path / "fast", spec=spec, prefix_cache="ram", num_train_epochs=1)
    # The plan's first trainable block is 1 (partly trainable), so only block 0 is a frozen prefix: exact.
    assert fast[0].fast_path.runner.num_prefix_blocks == 1
    assert_same_training(plain, fast)


def test_trainable_embedding_projection_is_caught_by_the_probe(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    # GPT-2's learned position embeddings trainable while the token embeddings are frozen: the plan still
    # freezes blocks 0-1, but their input depends on a trainable tensor.
    spec = FreezeArguments(num_frozen_layers="2", extra_trainable_patterns=[r"transformer\.wpe\.weight"])
    plain = train(tmp_path / "plain", "gpt2", spec=spec, fast_path=False)
    fast = train(tmp_path / "fast", "gpt2", spec=spec)
    assert "produce an output that requires grad" in caplog.text
    assert fast[0].fast_path.skip_prefix is False
    assert_same_training(plain, fast)


def test_unverified_architecture_falls_back_with_a_log_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    model = build_tiny_model("llama")
    model.config.model_type = "my_custom_lm"
    trainer, *_ = train(tmp_path, model=model)
    assert trainer.fast_path is None
    assert "Fast path off (model type 'my_custom_lm' is not among those" in caplog.text


def test_index_column_survives_remove_unused_columns_and_reaches_no_model(tmp_path):
    trainer, *_ = train(tmp_path, prefix_cache="ram", num_train_epochs=2)
    assert INDEX_COLUMN in trainer.train_dataset.column_names
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch[INDEX_COLUMN].dtype == torch.long and len(batch[INDEX_COLUMN]) == 4


def test_chunked_loss_equals_one_chunk():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=True)
    hidden = torch.randn(3, 7, 8, requires_grad=True)
    labels = torch.randint(0, 11, (3, 7))
    labels[:, :3] = -100
    shift = shifted_labels(labels)
    whole = labelled_positions_loss(hidden, shift, head, lambda x: x)
    grads_whole = torch.autograd.grad(whole, [hidden, head.weight])
    chunked = labelled_positions_loss(hidden, shift, head, lambda x: x, chunk_elements=22)  # 2 rows a chunk
    grads_chunked = torch.autograd.grad(chunked, [hidden, head.weight])
    reference = torch.nn.functional.cross_entropy(head(hidden).view(-1, 11), shift.view(-1))
    torch.testing.assert_close(whole, reference)
    torch.testing.assert_close(chunked, whole)
    for a, b in zip(grads_chunked, grads_whole, strict=True):
        torch.testing.assert_close(a, b)


def test_cache_refuses_changed_tokens_and_layouts():
    cache = PrefixCache([3, 2], hidden_size=4, dtype=torch.float32, storage="ram")
    cache.store(torch.tensor([0]), [torch.tensor([5, 6, 7])], [torch.ones(3, 4)])
    assert cache.lookup(torch.tensor([0, 1]), [torch.tensor([5, 6, 7]), torch.tensor([1, 2])]) is None
    assert torch.equal(cache.lookup(torch.tensor([0]), [torch.tensor([5, 6, 7])])[0], torch.ones(3, 4))
    with pytest.raises(ValueError, match="other tokens"):
        cache.lookup(torch.tensor([0]), [torch.tensor([5, 6, 8])])
    with pytest.raises(ValueError, match="collator truncates"):
        cache.store(torch.tensor([1]), [torch.tensor([1, 2, 3])], [torch.ones(3, 4)])
    ids = torch.ones(2, 4, dtype=torch.long)
    assert right_padded_layout({"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])}) \
        is not None
    assert right_padded_layout({"input_ids": ids, "attention_mask": torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])}) \
        is None
    assert right_padded_layout({"input_ids": ids, "position_ids": ids}) is None


@pytest.mark.parametrize("flag, value", [("prefix_cache", "gpu"), ("prefix_cache_dtype", "int8"),
                                         ("prefix_cache_max_gb", 0.0)])
def test_flags_are_validated(tmp_path, flag, value):
    with pytest.raises(ValueError, match=f"--{flag}"):
        FreezeTrainingArguments(output_dir=str(tmp_path), report_to="none", **{flag: value})


def test_cache_over_the_size_cap_is_switched_off(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    trainer, *_ = train(tmp_path, prefix_cache="ram", prefix_cache_max_gb=1e-9, num_train_epochs=2)
    assert "Prefix cache off: it would need" in caplog.text and "> --prefix_cache_max_gb" in caplog.text


def shared_prompt_dataset(n: int = 12, prompt: int = 20, vocab: int = 259, seed: int = 0) -> Dataset:
    """Rows that all start with the same ``prompt`` tokens (a system prompt), then 10-29 tokens of their own."""
    generator = torch.Generator().manual_seed(seed)
    system = torch.randint(3, vocab, (prompt,), generator=generator)
    ids, labels = [], []
    for _ in range(n):
        length = int(torch.randint(10, 30, (1,), generator=generator))
        row = torch.cat([system, torch.randint(3, vocab, (length,), generator=generator)])
        label = row.clone()
        label[: prompt + length // 2] = -100
        ids.append(row.tolist())
        labels.append(label.tolist())
    return Dataset.from_dict({"input_ids": ids, "labels": labels})


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_leading_tokens_run_once_and_match_plain(tmp_path, family, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    # SGD keeps the ~1e-7 differences of other kernel shapes linear (Adam's first steps act like sign(grad)).
    options = dict(dataset=shared_prompt_dataset(), optim="sgd", learning_rate=1e-1, num_train_epochs=2)
    plain = train(tmp_path / "plain", family, fast_path=False, **options)
    fast = train(tmp_path / "fast", family, **options)
    assert "run them through the frozen prefix once" in caplog.text
    assert "also run through the trainable blocks once per batch" in caplog.text
    assert fast[0].fast_path.runner.shared.length >= 20
    assert_same_training(plain, fast, loss_atol=1e-5, weight_atol=1e-6)
    cached = train(tmp_path / "cached", family, prefix_cache="ram", **options)
    assert cached[0].fast_path.last_cache_stats["hits"] == 3
    assert_same_training(plain, cached, loss_atol=1e-5, weight_atol=1e-6)


def test_shared_tokens_stay_per_row_in_the_top_under_checkpointing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze")
    options = dict(dataset=shared_prompt_dataset(), optim="sgd", learning_rate=1e-1)
    plain = train(tmp_path / "plain", fast_path=False, **options)
    fast = train(tmp_path / "fast", activation_checkpointing=True, **options)
    assert "activation checkpointing recomputes blocks" in caplog.text
    assert "run them through the frozen prefix once" in caplog.text
    assert_same_training(plain, fast, loss_atol=1e-5, weight_atol=1e-6)


def test_common_prefix_length_leaves_each_row_a_token():
    from chatfreeze.fastpath import common_prefix_length

    ids = torch.tensor([[1, 2, 3, 4, 0], [1, 2, 3, 5, 6], [1, 2, 3, 4, 7]])
    real = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]).bool()
    assert common_prefix_length(ids, real) == 3
    assert common_prefix_length(ids[[0, 2]], real[[0, 2]]) == 3  # row 0 has 4 real tokens: 3 shared at most
    assert common_prefix_length(torch.tensor([[9, 1], [8, 1]]), torch.ones(2, 2).bool()) == 0


@pytest.mark.slow
def test_benchmark_script_writes_the_json_contract(tmp_path, tiny_model_dir):
    import json
    import subprocess
    import sys

    from conftest import REPO_ROOT

    dialogues = tmp_path / "dialogues.jsonl"
    with dialogues.open("w") as out:
        for i in range(12):
            messages = [
                {"role": "system", "content": "You are the support assistant of a small shop."},
                {"role": "user", "content": f"Where is my order {i}?" + " please" * (i % 4)},
                {"role": "assistant", "content": f"Order {i} ships tomorrow." + " Thanks!" * (i % 3)},
            ]
            out.write(json.dumps({"messages": messages}) + "\n")
    result_file = tmp_path / "bench.json"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "benchmark.py"), "--model_name_or_path",
               str(tiny_model_dir), "--dataset", str(dialogues), "--num_frozen_layers", "2", "--batch_size", "2",
               "--warmup_steps", "1", "--steps", "2", "--rounds", "1", "--json", str(result_file)]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(result_file.read_text())
    variants = {"full", "naive_freeze", "chatfreeze", "chatfreeze_cached", "chatfreeze_kl"}
    assert set(result["tokens_per_s"]) == set(result["peak_rss_mb"]) == variants
    # Every variant trained the same timed steps (one round): tokens/s is that token count over its own time.
    timed_tokens = result["data"]["timed_tokens"]
    assert timed_tokens > 0
    for variant in variants:
        timed_s = result["per_variant"][variant]["timed_s"]
        assert result["tokens_per_s"][variant] == pytest.approx(timed_tokens / timed_s, rel=1e-9)
    assert 0 <= result["max_abs_diff"] < 1e-4
    assert "| target | measured | PASS/FAIL |" in run.stdout
    assert 0 < result["kl_to_base_speed_ratio"] < 10 and "KL to the base costs" in run.stdout


def test_fast_path_is_off_under_data_parallel_and_on_under_ddp():
    """torch.nn.DataParallel (n_gpu > 1 in one process) would run replicas that share the captured states: the
    fast path refuses it with a reason; DDP (one GPU per process) keeps it. A CPU stand-in of each trainer."""
    from types import SimpleNamespace

    from transformers.training_args import ParallelMode

    from chatfreeze.fastpath import FastPathSettings
    from chatfreeze.fastpath.policy import fast_path_refusal
    from chatfreeze.training.trainer import FreezeTrainer

    model = build_tiny_model("llama")

    def stand_in(n_gpu, mode):
        """The fast path's verdict for a trainer like this one: the trainer describes itself in plain values."""
        args = SimpleNamespace(fast_path=True, n_gpu=n_gpu, parallel_mode=mode, world_size=1)
        trainer = SimpleNamespace(args=args, model=model, label_smoother=None, compute_loss_func=None,
                                  is_deepspeed_enabled=False, is_fsdp_enabled=False)
        return model, FastPathSettings(), FreezeTrainer.trainer_setup(trainer)

    why = fast_path_refusal(*stand_in(2, ParallelMode.NOT_DISTRIBUTED))
    assert why and why.startswith("torch.nn.DataParallel over 2 GPUs") and "accelerate launch" in why
    assert fast_path_refusal(*stand_in(1, ParallelMode.DISTRIBUTED)) is None
    assert fast_path_refusal(*stand_in(1, ParallelMode.NOT_PARALLEL)) is None


@pytest.mark.parametrize("subset", [False, True])
def test_fused_cross_entropy_and_kl_equals_autograd_of_the_two_terms(subset):
    """The --kl_to_base loss takes one log-softmax of the logits for both terms and its gradient in closed form;
    value and gradients must be autograd's of F.cross_entropy + w · kl_from_base."""
    from chatfreeze.fastpath.loss import cross_entropy_and_kl, kl_from_base

    torch.manual_seed(0)
    logits = (3 * torch.randn(7, 50)).requires_grad_()
    targets = torch.randint(0, 50, (7,))
    rows = torch.tensor([0, 2, 3, 6]) if subset else None
    count = 4 if subset else 7
    base_logits = 3 * torch.randn(count, 50)
    weights = torch.rand(count) + 0.1
    fused = cross_entropy_and_kl(logits, targets, base_logits, weights, rows)
    (fused_grad,) = torch.autograd.grad(2.5 * fused, logits)
    picked = logits if rows is None else logits[rows]
    reference = torch.nn.functional.cross_entropy(logits, targets, reduction="sum") + \
        kl_from_base(picked, base_logits, weights)
    (reference_grad,) = torch.autograd.grad(2.5 * reference, logits)
    assert torch.allclose(fused, reference, rtol=1e-6, atol=1e-5)
    assert torch.allclose(fused_grad, reference_grad, atol=1e-6)
    if subset:  # rows without the KL get the plain cross-entropy gradient
        alone = [1, 4, 5]
        (ce_grad,) = torch.autograd.grad(2.5 * torch.nn.functional.cross_entropy(logits, targets, reduction="sum"),
                                         logits)
        assert torch.allclose(fused_grad[alone], ce_grad[alone], atol=1e-6)


@pytest.mark.slow
def test_benchmark_times_a_recipes_own_training_mix(tmp_path, tiny_model_dir):
    """--recipe: the recipe's plan, batch and KL weight, its training mix built by the recipe's own steps (here
    dialogues + the base's replay, the KL on the dialogues only), every variant on the same batches."""
    import json
    import subprocess
    import sys

    from conftest import REPO_ROOT

    dialogues = tmp_path / "dialogues.jsonl"
    with dialogues.open("w") as out:
        for i in range(12):
            messages = [{"role": "user", "content": f"Where is my order {i}?" + " please" * (i % 4)},
                        {"role": "assistant", "content": f"Order {i} ships tomorrow." + " Thanks!" * (i % 3)}]
            out.write(json.dumps({"messages": messages}) + "\n")
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(f"model_name_or_path: {tiny_model_dir}\ndataset: {dialogues}\nsystem_prompt: A small shop.\n"
                      "num_frozen_layers: 2\nper_device_train_batch_size: 2\nlearning_rate: 1.0e-3\n"
                      "replay_ratio: 0.5\nkl_to_base: 0.3\nkl_sources: support\nreport_to: none\n")
    result_file = tmp_path / "bench.json"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "benchmark.py"), "--recipe", str(recipe),
               "--warmup_steps", "1", "--steps", "3", "--rounds", "1", "--variants", "full", "chatfreeze",
               "chatfreeze_kl", "--json", str(result_file)]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(result_file.read_text())
    settings = result["settings"]
    assert (settings["num_frozen_layers"], settings["batch_size"], settings["learning_rate"]) == ("2", 2, 1e-3)
    assert settings["kl_to_base"] == 0.3 and result["data"]["benchmark_dialogues"] == 2 * 4
    assert "the " + str(recipe) + " recipe's training mix" in run.stdout
    targets = [t["target"] for t in result["targets"]]
    assert {"chatfreeze_kl tokens/s >= 2.0x full",
                                                            "chatfreeze_kl tokens/s >= 0.8x chatfreeze"} <= set(targets)
    # The recipe's KL covers the dialogues only: the replay examples carried weight 0 into the worker.
    assert "KL to the base on the support examples only" in run.stdout + run.stderr
