"""Keeping old skills: interpolation of the trained blocks toward the base (bit for bit at the end points),
self-distillation replay (pool prompts only, loss on the base's replies only, cached), and --method full."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, build_chatml_tokenizer, build_tiny_model

from chatfreeze.evaluation.probes import load_skills_probe
from chatfreeze.freezing import FreezeArguments, make_plan
from chatfreeze.retention.interpolate import apply_interpolation, interpolate_state, trained_state
from chatfreeze.retention.replay import replay_dataset


def perturbed(model, names, seed=0):
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            params[name].add_(torch.randn(params[name].shape, generator=generator) * 0.1)
    return model


def test_interpolation_end_points_are_bit_for_bit_and_frozen_tensors_untouched():
    base = build_tiny_model("llama")
    plan = make_plan(base, FreezeArguments(num_frozen_layers="2"))
    names = plan.trainable_parameter_names
    tuned = perturbed(build_tiny_model("llama"), names)
    base_state, tuned_state = trained_state(base, names), trained_state(tuned, names)
    frozen_before = {n: p.detach().clone() for n, p in tuned.named_parameters() if n not in names}
    for alpha, expected in ((0.0, base_state), (1.0, tuned_state)):
        apply_interpolation(tuned, base_state, tuned_state, alpha, names)
        params = dict(tuned.named_parameters())
        for name in names:
            assert torch.equal(params[name], expected[name]), (alpha, name)
    apply_interpolation(tuned, base_state, tuned_state, 0.5, names)
    params = dict(tuned.named_parameters())
    for name in names:
        torch.testing.assert_close(params[name], (base_state[name] + tuned_state[name]) / 2)
    for name, value in frozen_before.items():
        assert torch.equal(params[name], value), name
    with pytest.raises(ValueError, match="--alpha 1.5"):
        interpolate_state(tuned_state, base_state, 1.5, names)


def test_interpolation_end_points_are_copies_byte_for_byte_and_keep_the_dtype():
    base = {"w": torch.tensor([-0.0, 1.0, float("inf"), 2.0], dtype=torch.bfloat16)}
    tuned = {"w": torch.tensor([0.5, -0.0, 3.0, float("inf")], dtype=torch.bfloat16)}
    for alpha, expected in ((0.0, base), (1.0, tuned)):
        out = interpolate_state(tuned, base, alpha, ["w"])["w"]
        assert out.dtype == torch.bfloat16 and out.untyped_storage() is not expected["w"].untyped_storage()
        assert out.view(torch.int16).tolist() == expected["w"].view(torch.int16).tolist()  # -0.0 and inf too
    half = interpolate_state(tuned, base, 0.5, ["w"])["w"]
    assert half.dtype == torch.bfloat16 and half[1].item() == 0.5


def test_interpolation_reads_an_untied_head_from_a_tied_base():
    from chatfreeze.freezing import apply_plan

    base = build_tiny_model("llama", tie=True)
    tuned = build_tiny_model("llama", tie=True)
    plan = make_plan(tuned, FreezeArguments(num_frozen_layers="2", train_lm_head=True))
    apply_plan(tuned, plan)  # unties the head: the plan trains lm_head.weight, a tensor the base only ties
    names = plan.trainable_parameter_names
    assert "lm_head.weight" in names and "lm_head.weight" not in dict(base.named_parameters())
    base_state = trained_state(base, names)
    assert torch.equal(base_state["lm_head.weight"], base.get_input_embeddings().weight)
    perturbed(tuned, names)
    apply_interpolation(tuned, base_state, trained_state(tuned, names), 0.0, names)
    assert torch.equal(tuned.lm_head.weight, base.get_input_embeddings().weight)


def fake_replies(monkeypatch, calls: list):
    def replies(model, tokenizer, conversations, max_new_tokens, batch_size=16, what=None):
        calls.append(len(conversations))
        return [f"Here is my answer number {i}." for i in range(len(conversations))]

    monkeypatch.setattr("chatfreeze.retention.replay.greedy_replies", replies)


def test_replay_uses_pool_prompts_labels_only_the_reply_and_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    calls: list = []
    fake_replies(monkeypatch, calls)
    tokenizer, model = build_chatml_tokenizer(), build_tiny_model("llama")
    dataset, report = replay_dataset(model, tokenizer, num_support=40, ratio=0.5, max_length=512)
    assert len(dataset) == 20 and report.dialogues_used == 20
    assert calls == [20]  # only the prompts this run uses are answered by the base
    probe_prompts = {item.prompt for item in load_skills_probe(split="probe")}
    pool_prompts = {item.prompt for item in load_skills_probe(split="pool")}
    for row in dataset:
        text = tokenizer.decode(row["input_ids"])
        assert any(prompt in text for prompt in pool_prompts)
        assert not any(prompt in text for prompt in probe_prompts)
        trained = tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"], strict=True)
                                    if label != -100])
        assert trained.startswith("Here is my answer number") and trained.endswith("<|im_end|>")
    again, _ = replay_dataset(model, tokenizer, num_support=40, ratio=0.5, max_length=512)
    assert calls == [20] and again["input_ids"] == dataset["input_ids"]  # the base's replies came from the cache
    assert len({tokenizer.decode(row["input_ids"]) for row in dataset}) == 20  # 20 different prompts
    # More examples than prompts: every pool prompt is answered once and reused.
    many, _ = replay_dataset(model, tokenizer, num_support=400, ratio=0.5, max_length=512)
    assert len(many) == 200 and calls == [20, 110]  # cached per prompt: only the 110 not answered before
    assert replay_dataset(model, tokenizer, 40, 0.0) == (None, None)


def test_replay_replaces_prompts_the_base_answers_with_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    calls: list = []

    def replies(model, tokenizer, conversations, max_new_tokens, batch_size=16, what=None):
        calls.append(len(conversations))
        return ["" if i % 2 else "A reply." for i in range(len(conversations))]

    monkeypatch.setattr("chatfreeze.retention.replay.greedy_replies", replies)
    tokenizer, model = build_chatml_tokenizer(), build_tiny_model("llama")
    dataset, _ = replay_dataset(model, tokenizer, num_support=8, ratio=0.5, max_length=512)
    # Every other reply is empty: half of the first 4 prompts answered, so 4 more are asked for the 2 missing.
    assert len(dataset) == 4 and calls == [4, 4]
    monkeypatch.setattr("chatfreeze.retention.replay.greedy_replies",
                        lambda model, tokenizer, conversations, *a, **k: [""] * len(conversations))
    with pytest.raises(ValueError, match="empty reply to every pool prompt"):
        replay_dataset(model, tokenizer, num_support=8, ratio=0.5, max_length=512, cache=False)


def test_replay_does_not_train_the_end_of_a_reply_the_base_did_not_finish(monkeypatch, tmp_path):
    from chatfreeze.generation import Reply

    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    calls: list = []

    def replies(model, tokenizer, conversations, max_new_tokens, batch_size=16, what=None):
        calls.append(len(conversations))  # every third reply ran into the token cap
        return [Reply(f"Reply {i} goes on and on", finished=i % 3 != 0) for i in range(len(conversations))]

    monkeypatch.setattr("chatfreeze.retention.replay.greedy_replies", replies)
    tokenizer, model = build_chatml_tokenizer(), build_tiny_model("llama")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for attempt in range(2):  # the second time from the cache: the same labels, the "finished" flags kept
        dataset, report = replay_dataset(model, tokenizer, num_support=12, ratio=1.0, max_length=512)
        assert calls == [12] and "index" not in dataset.column_names
        ends = []
        for row in dataset:
            trained = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100]
            ends.append(trained[-1] == end)
            assert tokenizer.decode(trained).startswith("Reply ")
            assert end in row["input_ids"]  # the marker is in the text, just not trained
        assert ends == [i % 3 != 0 for i in range(12)], attempt
        assert report.trained_tokens == sum(sum(label != -100 for label in row["labels"]) for row in dataset)


def tiny_train(tiny_model_dir, tmp_path, *extra):
    rows = [{"messages": [{"role": "user", "content": f"Where is order {i}?"},
                          {"role": "assistant", "content": f"Order {i} ships tomorrow."}]} for i in range(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "--model_name_or_path", str(tiny_model_dir),
               "--dataset", str(data), "--eval_dataset", "none", "--num_frozen_layers", "2", "--max_steps", "2",
               "--per_device_train_batch_size", "4", "--output_dir", str(out), "--report_to", "none",
               "--use_cpu", "true", "--save_strategy", "no", "--eval_before_after", "false", "--facts", "none",
               "--facts_probe", "none", *extra]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1",
                                 "CHATFREEZE_MEASUREMENT_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_recipe_mixes_replay_and_merge_interpolates_the_run(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import parse_args

    # A random tiny model replies with nothing; give its "base replies" words, and skip the sample replies.
    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    fake_replies(monkeypatch, [])
    monkeypatch.setattr(recipe, "generate_reply", lambda *args, **kwargs: "(stub reply)")
    rows = [{"messages": [{"role": "user", "content": f"Where is order {i}?"},
                          {"role": "assistant", "content": f"Order {i} ships tomorrow."}]} for i in range(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    recipe.run_training(*parse_args([
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(data), "--eval_dataset", "none",
        "--num_frozen_layers", "2", "--max_steps", "2", "--per_device_train_batch_size", "4", "--output_dir",
        str(out), "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--eval_before_after",
        "false", "--replay_ratio", "0.25"]))
    info = json.loads((out / "run_info.json").read_text())
    assert info["data"]["replay"]["dialogues_in"] == 4  # 0.25 x 16 support dialogues
    merged = tmp_path / "merged"
    result = subprocess.run([sys.executable, "-m", "chatfreeze.merge", str(out), str(merged), "--alpha", "0"],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    at_zero = AutoModelForCausalLM.from_pretrained(merged)
    for (name, a), (_, b) in zip(base.named_parameters(), at_zero.named_parameters(), strict=True):
        assert torch.equal(a, b), name  # alpha 0: the base, bit for bit
    for target, alpha, message in ((merged, "0.5", "error: --output_dir"), (tmp_path / "new", "2", "error: --alpha 2")):
        bad = subprocess.run([sys.executable, "-m", "chatfreeze.merge", str(out), str(target), "--alpha", alpha],
                             capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
        assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(message), bad.stderr


@pytest.mark.slow
def test_method_full_trains_everything_through_the_same_recipe(tiny_model_dir, tmp_path):
    out = tiny_train(tiny_model_dir, tmp_path, "--method", "full")  # the default recipe's KL is ignored, said
    plan = json.loads((out / "freeze_plan.json").read_text())
    assert plan["frozen_parameter_names"] == [] and plan["spec"]["method"] == "full"


@pytest.mark.slow
def test_method_lora_trains_adapters_on_the_top_blocks_and_saves_a_merged_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tiny_train(tiny_model_dir, tmp_path, "--method", "lora", "--lora_layers", "1", "--lora_r", "4",
                     "--learning_rate", "1e-2")
    plan = json.loads((out / "freeze_plan.json").read_text())
    assert plan["spec"]["method"] == "lora" and plan["spec"]["lora_layers"] == 1
    base = dict(AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters())
    merged = dict(AutoModelForCausalLM.from_pretrained(out).named_parameters())  # plain transformers: merged
    assert set(base) == set(merged) and not any("lora" in name for name in merged)
    top = len(plan["frozen_layers"])
    changed = {name for name in base if not torch.equal(base[name], merged[name])}
    assert changed and all(name.startswith(f"model.layers.{top}.") for name in changed), changed
    assert set(changed) <= set(plan["trainable_parameter_names"])
    # What trained are the adapters: r x (in + out) for every linear map of the top block, recorded as such.
    base_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapters = sum(4 * (m.in_features + m.out_features) for name, m in base_model.named_modules()
                   if isinstance(m, torch.nn.Linear) and name.startswith(f"model.layers.{top}."))
    assert json.loads((out / "all_results.json").read_text())["adapter_parameters"] == adapters


def test_a_peft_model_with_adapters_off_has_its_base_fingerprint():
    from peft import LoraConfig, get_peft_model

    from chatfreeze.evaluation.measurement_cache import weights_fingerprint

    model = build_tiny_model("llama")
    before = weights_fingerprint(model)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert weights_fingerprint(wrapped) == before


def kl_trainer(tmp_path, rows: list[list[int]], untie: bool = False):
    """``(model, base copy, trainer, batch)``: a tiny model with its 2 bottom blocks frozen, KL to the base 0.5 on
    the fast path (no prefix cache), its top moved as training would; ``rows`` labelled from token 7 on."""
    import copy

    from datasets import Dataset

    from chatfreeze.data import DialogueCollator
    from chatfreeze.training.arguments import FreezeTrainingArguments
    from chatfreeze.training.trainer import FreezeTrainer

    model = build_tiny_model("llama")
    base = copy.deepcopy(model).eval()
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2", train_lm_head=untie))
    data = Dataset.from_dict({"input_ids": rows, "labels": [[-100] * 7 + row[7:] for row in rows]})
    args = FreezeTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, prefix_cache="off",
                                   kl_to_base=0.5, eval_strategy="no")
    trainer = FreezeTrainer(model=model, args=args, freeze_plan=plan, train_dataset=data)
    assert trainer.fast_path.base_top is not None
    perturbed(model, plan.trainable_parameter_names, seed=1)  # "training" moved the top; the copy is the base's
    batch = DialogueCollator(build_chatml_tokenizer())([data[i] for i in range(len(rows))])
    model.train()
    return model, base, trainer, batch


def reference_kl_loss(model, base, batch, row_weights=None, num_items=None):
    """Cross-entropy + 0.5 x KL(base || model) at the labelled positions (each row's KL times its weight), with
    full models and full logits, reduced like the Trainer's loss."""
    logits = model(**batch).logits[:, :-1]
    with torch.no_grad():
        base_logits = base(**batch).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    log_p = torch.log_softmax(logits[keep], -1)
    log_base = torch.log_softmax(base_logits[keep], -1)
    kl = (log_base.exp() * (log_base - log_p)).sum(-1)
    if row_weights is not None:
        kl = kl * row_weights[:, None].expand(keep.shape)[keep]
    total = torch.nn.functional.nll_loss(log_p, targets[keep], reduction="sum") + 0.5 * kl.sum()
    return total / (int(keep.sum()) if num_items is None else num_items)


@pytest.mark.parametrize("untie", [False, True])
def test_kl_to_base_equals_a_reference_computed_with_a_full_base_model(tmp_path, untie):
    model, base, trainer, batch = kl_trainer(tmp_path, torch.randint(3, 250, (4, 16)).tolist(), untie)
    for num_items in (None, torch.tensor(23)):
        fast = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items)
        reference = reference_kl_loss(model, base, batch, num_items=num_items)
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
        trainable = [p for p in model.parameters() if p.requires_grad]
        for a, b in zip(torch.autograd.grad(fast, trainable), torch.autograd.grad(reference, trainable), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_kl_rows_of_weight_zero_never_run_the_base_and_the_loss_is_the_reference(tmp_path, monkeypatch):
    """Per-row KL weights (--kl_sources): the base's top copy runs on the weighted rows only, and the loss equals
    the cross-entropy of every row plus the KL of the weighted rows, computed with a full base model."""
    from chatfreeze.fastpath import KL_WEIGHT_COLUMN

    lengths = [16, 11, 13, 9]  # padded in the batch: the weighted rows 0 and 2 are cut out with their masks
    model, base, trainer, batch = kl_trainer(tmp_path, [torch.randint(3, 250, (n,)).tolist() for n in lengths])
    fast_path = trainer.fast_path
    batch_rows = []
    real_top_pass = fast_path.runner.top_pass

    def counting(model_, inputs, boundary):
        batch_rows.append(inputs["input_ids"].shape[0])
        return real_top_pass(model_, inputs, boundary)
    monkeypatch.setattr(fast_path.runner, "top_pass", counting)
    weights = torch.tensor([1.0, 0.0, 1.0, 0.0])
    fast = trainer.compute_loss(model, dict(batch) | {KL_WEIGHT_COLUMN: weights})
    assert batch["attention_mask"].sum(-1).tolist() == lengths
    assert batch_rows == [4, 2]  # the trained model on the batch, the base's copy on the 2 weighted rows
    reference = reference_kl_loss(model, base, batch, row_weights=weights)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    # No weighted row: the base does not run at all.
    batch_rows.clear()
    trainer.compute_loss(model, dict(batch) | {KL_WEIGHT_COLUMN: torch.zeros(4)})
    assert batch_rows == [4]


def test_the_base_copy_runs_leading_tokens_its_rows_share_once_and_the_loss_is_the_reference(tmp_path, monkeypatch,
                                                                                               caplog):
    """Rows that start alike (a system prompt) run those tokens through the KL's base copy of the top once, as
    through the trained blocks; checked once against the full pass, and the loss and gradients are the reference's."""
    from chatfreeze.fastpath import KL_WEIGHT_COLUMN

    prompt = torch.randint(3, 250, (20,)).tolist()
    rows = [prompt + torch.randint(3, 250, (n,)).tolist() for n in (6, 9, 4, 7)]
    model, base, trainer, batch = kl_trainer(tmp_path, rows)
    runner = trainer.fast_path.runner
    shapes = []
    real_top_pass = runner.top_pass

    def recording(model_, inputs, boundary):
        shapes.append(tuple(inputs["input_ids"].shape))
        return real_top_pass(model_, inputs, boundary)
    monkeypatch.setattr(runner, "top_pass", recording)
    weights = torch.tensor([1.0, 1.0, 0.0, 1.0])  # the base's copy runs on rows 0, 1 and 3
    with caplog.at_level("INFO", logger="chatfreeze.fastpath.shared_prefix"):
        fast = trainer.compute_loss(model, dict(batch) | {KL_WEIGHT_COLUMN: weights})
    assert "through the base's copy of the trainable blocks once per batch (checked" in caplog.text
    width = batch["input_ids"].shape[1]
    # Trained blocks: the shared row, the 4 suffixes, the check; the base's copy: the same on its 3 rows.
    assert shapes == [(1, 20), (4, width - 20), (4, width), (1, 20), (3, width - 20), (3, width)]
    reference = reference_kl_loss(model, base, batch, row_weights=weights)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for a, b in zip(torch.autograd.grad(fast, trainable), torch.autograd.grad(reference, trainable), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    shapes.clear()
    trainer.compute_loss(model, dict(batch) | {KL_WEIGHT_COLUMN: weights})
    assert shapes == [(1, 20), (4, width - 20), (1, 20), (3, width - 20)]  # checked once only


def test_kl_to_base_without_the_fast_path_is_refused(tmp_path):
    from datasets import Dataset

    from chatfreeze.training.arguments import FreezeTrainingArguments
    from chatfreeze.training.trainer import FreezeTrainer

    model = build_tiny_model("llama")
    args = FreezeTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, fast_path=False,
                                   kl_to_base=0.1, eval_strategy="no")
    with pytest.raises(ValueError, match="--kl_to_base: needs the fast path"):
        FreezeTrainer(model=model, args=args, freeze_plan=make_plan(model, FreezeArguments("2")),
                      train_dataset=Dataset.from_dict({"input_ids": [[5, 6]], "labels": [[5, 6]]}))


# ----------------------------------------------------------------------------------------------------------
# --select_alpha
# ----------------------------------------------------------------------------------------------------------


def test_parse_alphas_sorts_and_names_bad_values():
    from chatfreeze.retention.alpha_selection import parse_alphas

    assert parse_alphas("1, 0.5,0.75,0.5") == [0.5, 0.75, 1.0]
    for bad, message in (("0.5,x", "'x' is not a number"), ("0,1", "outside \\(0, 1\\]"), ("1.5", "outside"),
                         (" , ", "at least one alpha")):
        with pytest.raises(ValueError, match=message):
            parse_alphas(bad)


def test_select_alpha_keeps_the_most_learned_alpha_within_tolerance_and_leaves_the_model_there():
    from chatfreeze.retention.alpha_selection import select_alpha

    base = build_tiny_model("llama")
    names = make_plan(base, FreezeArguments(num_frozen_layers="2")).trainable_parameter_names
    model = perturbed(build_tiny_model("llama"), names)
    base_state, tuned_state = trained_state(base, names), trained_state(model, names)
    probe = names[0]
    scale = (tuned_state[probe] - base_state[probe]).abs().max().item()

    def measure(m):  # read where the model is now: alpha recovered from one trained tensor
        alpha = ((dict(m.named_parameters())[probe] - base_state[probe]).abs().max().item()) / scale
        return {"support_perplexity": 10 - 5 * alpha, "self_agreement_ratio": 1 + 0.04 * alpha ** 2,
                "general_perplexity": 20.0}

    base_measures = {"self_agreement_ratio": 1.0, "general_perplexity": 20.0}
    selection = select_alpha(model, names, base_state, [0.25, 0.5, 0.75, 1.0], measure, base_measures, 0.02)
    # 1 + 0.04 a^2 <= 1.02  <=>  a <= 0.707: 0.5 is the most-learned alpha that keeps.
    assert selection.alpha == 0.5 and selection.kept
    assert [c["keeps"] for c in selection.candidates] == [True, True, False, False]
    assert "self-agreement ratio 1.040 > 1.020" in selection.candidates[-1]["violations"][0]
    params = dict(model.named_parameters())
    for name in names:
        torch.testing.assert_close(params[name], torch.lerp(base_state[name], tuned_state[name], 0.5))
    # Nothing keeps: the candidate that kept most, with kept=False; alpha 1 restores the tuned model exactly.
    apply_interpolation(model, base_state, tuned_state, 1.0, names)  # select_alpha starts from the trained model
    strict = select_alpha(model, names, base_state, [0.5, 1.0], measure, base_measures, 0.0)
    assert strict.alpha == 0.5 and not strict.kept
    apply_interpolation(model, base_state, tuned_state, 1.0, names)
    loose = select_alpha(model, names, base_state, [0.5, 1.0], measure, base_measures, 1.0)
    assert loose.alpha == 1.0
    for name in names:
        assert torch.equal(dict(model.named_parameters())[name], tuned_state[name]), name
    with pytest.raises(ValueError, match="no keep measurement"):
        select_alpha(model, names, base_state, [1.0], measure, {}, 0.02)


def test_select_alpha_never_keeps_a_diverged_candidate_and_falls_back_on_the_smallest_excess():
    from chatfreeze.retention.alpha_selection import choose, keep_violations

    base = {"self_agreement_ratio": 1.0, "general_perplexity": 20.0}
    nan = float("nan")
    assert keep_violations({"support_perplexity": 3.0, "self_agreement_ratio": nan}, base, 0.02)
    assert keep_violations({"support_perplexity": nan, "self_agreement_ratio": 1.0}, base, 0.02)
    candidates = [
        {"alpha": 1.0, "support_perplexity": 2.0, "self_agreement_ratio": nan, "general_perplexity": 20.0},
        {"alpha": 0.75, "support_perplexity": 3.0, "self_agreement_ratio": 1.01, "general_perplexity": 20.1},
    ]
    for c in candidates:
        c["keeps"] = not keep_violations(c, base, 0.02)
    assert choose(candidates, 0.02, base).alpha == 0.75
    # Nothing keeps: ratio 1.030 with general +50% loses to ratio 1.031 with general +0% (worst excess decides).
    none_keep = [
        {"alpha": 1.0, "support_perplexity": 2.0, "self_agreement_ratio": 1.030, "general_perplexity": 30.0,
         "keeps": False},
        {"alpha": 0.5, "support_perplexity": 3.0, "self_agreement_ratio": 1.031, "general_perplexity": 20.0,
         "keeps": False},
    ]
    chosen = choose(none_keep, 0.02, base)
    assert chosen.alpha == 0.5 and not chosen.kept


def test_kl_to_base_refuses_a_trainable_tensor_whose_module_is_partly_frozen():
    from chatfreeze.retention.kl_to_base import BaseTop

    model = build_tiny_model("llama")
    names = make_plan(model, FreezeArguments(num_frozen_layers="2")).trainable_parameter_names
    BaseTop(model, names)  # whole blocks: fine
    mixed = build_tiny_model("llama")
    mixed.model.layers[3].self_attn.q_proj.bias = torch.nn.Parameter(torch.zeros(mixed.config.hidden_size))
    with pytest.raises(ValueError, match="shares its module with frozen tensors"):
        BaseTop(mixed, names)  # q_proj's new bias stays frozen: the copy of q_proj would not be whole


@pytest.mark.slow
def test_recipe_select_alpha_saves_the_chosen_model_and_records_the_choice(tiny_model_dir, tmp_path, monkeypatch):
    from chatfreeze.publish.card import build_model_card
    from chatfreeze.publish.run import load_run
    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import parse_args

    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    fake_replies(monkeypatch, [])  # the base's skills replies (a random tiny model says nothing)
    monkeypatch.setattr("chatfreeze.evaluation.before_after.greedy_replies",
                        lambda model, tokenizer, conversations, *a, **k: ["A plain reply."] * len(conversations))
    monkeypatch.setattr(recipe, "generate_reply", lambda *args, **kwargs: "(stub reply)")
    # A tiny random model hardly drifts in 4 steps: the real keep rule, plus "alpha 1 (the 3rd candidate) went too
    # far", so that the recipe has to save and measure an interpolated model.
    from chatfreeze.retention import alpha_selection

    real_rule, seen = alpha_selection.keep_violations, []

    def keep_rule(measures, base, tolerance):
        seen.append(measures)
        return ["too far (test)"] if len(seen) == 3 else real_rule(measures, base, tolerance)

    monkeypatch.setattr(alpha_selection, "keep_violations", keep_rule)
    rows = [{"messages": [{"role": "user", "content": f"Where is order {i}?"},
                          {"role": "assistant", "content": f"Order {i} ships tomorrow."}]} for i in range(24)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:16]))
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[16:]))
    (tmp_path / "general.txt").write_text("The river runs past the old mill and into the sea. " * 60)
    out = tmp_path / "out"
    recipe.run_training(*parse_args([
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(tmp_path / "train.jsonl"), "--eval_dataset",
        str(tmp_path / "val.jsonl"), "--num_frozen_layers", "2", "--max_steps", "4", "--learning_rate", "1e-2",
        "--per_device_train_batch_size", "4", "--output_dir", str(out), "--report_to", "none", "--use_cpu", "true",
        "--save_strategy", "no", "--eval_before_after", "true", "--skills_probe", "builtin", "--general_text",
        str(tmp_path / "general.txt"), "--general_window", "64", "--general_stride", "64",
        "--generation_eval_samples", "0", "--select_alpha", "0.25,0.5,1", "--alpha_tolerance", "0.05"]))
    evaluation = json.loads((out / "evaluation.json").read_text())
    selection = evaluation["alpha_selection"]
    assert [c["alpha"] for c in selection["candidates"]] == [0.25, 0.5, 1.0]
    keeping = [c for c in selection["candidates"] if c["keeps"]]
    assert keeping and selection["candidates"][-1]["violations"] == ["too far (test)"]
    expected = min(keeping, key=lambda c: c["support_perplexity"])
    assert selection["alpha"] == expected["alpha"] < 1 and selection["kept"]
    chosen = next(c for c in selection["candidates"] if c["alpha"] == selection["alpha"])
    # The "after" measurement is of the chosen model, and so is the saved one.
    assert evaluation["after"]["support_perplexity"] == pytest.approx(chosen["support_perplexity"], rel=1e-5)
    assert evaluation["after"]["self_agreement_ratio"] == pytest.approx(chosen["self_agreement_ratio"], rel=1e-5)
    assert json.loads((out / "run_info.json").read_text())["alpha_selection"]["alpha"] == selection["alpha"]
    card = build_model_card(load_run(out), "acme/bot")
    assert f"alpha = {selection['alpha']:g}" in card and "--select_alpha" in card


def test_select_alpha_needs_the_before_after_evaluation(tiny_model_dir, tmp_path):
    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import parse_args

    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}] * 4
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="--select_alpha: needs --eval_before_after true"):
        recipe.run_training(*parse_args([
            "--model_name_or_path", str(tiny_model_dir), "--dataset", str(tmp_path / "train.jsonl"),
            "--eval_dataset", "none", "--num_frozen_layers", "2", "--max_steps", "1", "--output_dir",
            str(tmp_path / "out"), "--report_to", "none", "--use_cpu", "true", "--eval_before_after", "false",
            "--select_alpha", "0.5,1"]))
    with pytest.raises(ValueError, match="--select_alpha 0.5,2: 2 is outside"):
        parse_args(["--model_name_or_path", str(tiny_model_dir), "--select_alpha", "0.5,2"])


def test_adapter_parameters_are_the_ones_peft_declares():
    """The cache leaves out what peft's tuner layers declare as adapters, for any tuner, not names with 'lora_'."""
    from peft import IA3Config, LoraConfig, get_peft_model

    from chatfreeze.evaluation.measurement_cache import adapter_parameter_names, weights_fingerprint

    model = build_tiny_model("llama")
    before = weights_fingerprint(model)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    names = adapter_parameter_names(lora.get_base_model())
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    ia3 = get_peft_model(build_tiny_model("llama"), IA3Config(target_modules=["k_proj", "down_proj"],
                                                               feedforward_modules=["down_proj"]))
    assert weights_fingerprint(ia3) == before  # no 'lora_' in its adapters' names: still the base's fingerprint
