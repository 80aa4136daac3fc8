"""Learn vs keep: the probe files, their scoring, batched greedy replies, labelled-only NLL, self-agreement, the
base-measurement cache, general text that cannot be reached, and the two-model comparison."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, build_chatml_tokenizer, build_tiny_model

from chatfreeze.evaluation import BeforeAfterEvaluator, EvaluationArguments
from chatfreeze.evaluation.metrics_table import CURVE
from chatfreeze.evaluation.probes import (
    SKILLS_FILE,
    ProbeError,
    ProbeItem,
    load_facts_probe,
    load_skills_probe,
    score,
)

FACTS_FILE = REPO_ROOT / "data" / "facts_probe.jsonl"


# ---------------------------------------------------------------------------------------------- the probe files


def readme_facts() -> list[str]:
    text = (REPO_ROOT / "data" / "README.md").read_text()
    table = text[text.index("## Company facts"):text.index("## Intents")]
    return re.findall(r"^\| `([a-z_]+)` \|", table, re.M)


def test_facts_probe_covers_every_fact_twice():
    items = load_facts_probe(FACTS_FILE)
    facts = readme_facts()
    assert len(facts) >= 40 and len(items) >= 80
    counts = {fact: sum(item.group == fact for item in items) for fact in facts}
    assert min(counts.values()) >= 2, {f: n for f, n in counts.items() if n < 2}
    assert {item.group for item in items} <= set(facts)


def test_facts_questions_are_not_training_sentences():
    train = (REPO_ROOT / "data" / "train.jsonl").read_text()
    user_turns = {m["content"].strip().lower() for line in train.splitlines()
                  for m in json.loads(line)["messages"] if m["role"] == "user"}
    assert not [item.prompt for item in load_facts_probe(FACTS_FILE) if item.prompt.strip().lower() in user_turns]


def test_skills_probe_halves():
    probe, pool = load_skills_probe(SKILLS_FILE, "probe"), load_skills_probe(SKILLS_FILE, "pool")
    assert len(probe) + len(pool) >= 200 and sum(item.checkable for item in probe) >= 100
    assert not {item.id for item in probe} & {item.id for item in pool}
    assert len({item.group for item in probe}) >= 10
    for item in probe + pool:  # an answer never matches its own prompt: echoing the prompt scores nothing
        assert not (item.expect and item.check(item.prompt)[0]), item.id


# ---------------------------------------------------------------------------------------------- scoring


def test_every_expect_must_match_and_a_reject_is_a_wrong_value():
    item = ProbeItem("ship-1", "How much is standard shipping?", "standard_shipping_cost",
                     expect=[r"4[.,]95"], reject=[r"9[.,]95"])
    assert item.check("It costs €4.95.") == (True, [])
    assert item.check("It costs €9.95, or €4.95 for members.") == (False, ["9.95"])
    assert item.check("It is free.") == (False, [])
    other = ProbeItem("hours-1", "When are you open?", "support_hours", expect=[r"08:00", r"20:00"])
    result = score([item, other, ProbeItem("open-1", "Write a poem.", "writing")],
                   ["It costs €9.95.", "We are open 08:00 to 20:00.", "A poem."])
    assert (result["accuracy"], result["checked"], result["right"]) == (0.5, 2, 1)
    assert result["failures"] == {"standard_shipping_cost": ["ship-1"]}
    assert result["wrong_values"] == {"9.95": 1}


@pytest.mark.parametrize(("line", "message"), [
    ('{"question": "q", "fact": "f", "expect": ["x"]}\nnot json\n', r"probe\.jsonl:2: not valid JSON"),
    ('{"question": "q", "fact": "f"}\n', r"probe\.jsonl:1: 'expect' needs at least one regex"),
    ('{"question": "q", "fact": "f", "expect": ["(unclosed"]}\n', r"probe\.jsonl:1: expect regex '\(unclosed'"),
    ('{"question": "", "fact": "f", "expect": ["x"]}\n', r"probe\.jsonl:1: 'question' must be a non-empty"),
    ("", r"probe\.jsonl: no probe items"),
])
def test_bad_probe_files_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "probe.jsonl"
    path.write_text(line)
    with pytest.raises(ProbeError, match=message):
        load_facts_probe(path)


# ---------------------------------------------------------------------------------------------- mechanics


def test_batched_greedy_replies_equal_one_at_a_time(tiny):
    from chatfreeze.evaluation.generation_metrics import greedy_config
    from chatfreeze.generation import generate_replies, generate_reply

    model, tokenizer = tiny
    conversations = [[{"role": "user", "content": text}] for text in ("Hi", "Where is my order, please?", "x" * 30)]
    config = greedy_config(model, tokenizer, 6)
    alone = [generate_reply(model, tokenizer, c, generation_config=config) for c in conversations]
    assert generate_replies(model, tokenizer, conversations, config, batch_size=3) == alone


def test_generated_replies_say_whether_the_model_ended_them(tiny):
    from chatfreeze.evaluation.generation_metrics import greedy_config
    from chatfreeze.generation import generate_replies, render_prompt

    model, tokenizer = tiny
    conversations = [[{"role": "user", "content": text}] for text in ("Hi", "Where is my order, please?")]
    config = greedy_config(model, tokenizer, 5)
    replies = generate_replies(model, tokenizer, conversations, config, batch_size=2)
    # A random tiny model does not stop by itself: both ran into the 5-token cap.
    assert [r.finished for r in replies] == [False, False]
    prompt = render_prompt(tokenizer, conversations[0])
    first = int(model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=config)[
        0, prompt.shape[1]])
    config.eos_token_id = first  # now the first row's first token ends it
    ended = generate_replies(model, tokenizer, conversations[:1], config)
    assert ended[0].finished


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_labelled_nll_equals_the_full_logits_nll(family):
    from chatfreeze.fastpath.loss import labelled_nll

    model = build_tiny_model(family).eval()
    input_ids = torch.randint(3, 250, (2, 12))
    labels = input_ids.clone()
    labels[:, :5] = -100
    mask = torch.ones_like(input_ids)
    mask[1, 10:] = 0
    labels[1, 10:] = -100
    with torch.no_grad():
        total, count = labelled_nll(model, input_ids, mask, labels)
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
        targets = labels[:, 1:]
        keep = targets != -100
        reference = torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum")
    assert count == int(keep.sum())
    torch.testing.assert_close(total, reference, rtol=1e-5, atol=1e-5)


def probe_settings(tmp_path, **overrides) -> EvaluationArguments:
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(json.dumps(row) + "\n" for row in [
        {"id": "a", "fact": "hours", "question": "When are you open?", "expect": ["08:00"]},
        {"id": "b", "fact": "email", "question": "Your email?", "expect": ["support@"], "reject": ["info@"]},
    ]))
    options = dict(facts_probe=str(facts), skills_probe="builtin", probe_max_new_tokens=6, generation_eval_samples=0,
                   cache_base_measurements=True)
    return EvaluationArguments(**(options | overrides))


def test_self_agreement_is_one_for_the_base_and_the_nll_ratio_after(tiny, tmp_path, monkeypatch):
    from chatfreeze.evaluation.agreement import reply_nll

    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    base, tokenizer = tiny
    evaluator = BeforeAfterEvaluator(tokenizer, probe_settings(tmp_path, cache_base_measurements=False))
    # A random tiny model may reply with nothing; give it replies to agree with.
    monkeypatch.setattr("chatfreeze.evaluation.before_after.greedy_replies",
                        lambda model, tok, conversations, *a: ["Paris is the answer " + str(i)
                                                               for i in range(len(conversations))])
    before = evaluator.measure(base, "before")
    assert before["self_agreement_ratio"] == 1.0
    tuned = build_tiny_model("llama", seed=1).eval()
    after = evaluator.measure(tuned, "after")
    reference = reply_nll(tuned, tokenizer, evaluator.base_examples)["nll"] / before["self_agreement_nll"]
    assert after["self_agreement_ratio"] == pytest.approx(reference) and after["self_agreement_ratio"] != 1.0


def test_base_measurements_come_from_the_cache_the_second_time(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    model, tokenizer = tiny
    first = BeforeAfterEvaluator(tokenizer, probe_settings(tmp_path))
    before = first.measure(model, "before")
    second = BeforeAfterEvaluator(tokenizer, probe_settings(tmp_path))
    monkeypatch.setattr(BeforeAfterEvaluator, "_measure", lambda *a: pytest.fail("measured the base again"))
    assert second.measure(model, "before") == before
    assert second.config()["before_from_cache"] and second.probe_results["before"] == first.probe_results["before"]
    # Other settings, or other weights, are other keys.
    changed = BeforeAfterEvaluator(tokenizer, probe_settings(tmp_path, probe_max_new_tokens=7))
    assert changed.inputs_key() != first.inputs_key()
    # The same probe read from another folder (another clone) is the same key; another probe is another key.
    (tmp_path / "clone").mkdir()
    moved = probe_settings(tmp_path / "clone")
    assert BeforeAfterEvaluator(tokenizer, moved).inputs_key() == first.inputs_key()
    Path(moved.facts_probe).write_text(json.dumps({"id": "c", "fact": "hours", "question": "Open when?",
                                                   "expect": ["08:00"]}) + "\n")
    assert BeforeAfterEvaluator(tokenizer, moved).inputs_key() != first.inputs_key()
    with pytest.raises(pytest.fail.Exception):
        BeforeAfterEvaluator(tokenizer, probe_settings(tmp_path)).measure(build_tiny_model("llama", seed=3), "before")


def test_unreachable_general_text_is_not_measured_and_the_probes_still_are(tiny, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    model, tokenizer = tiny
    with caplog.at_level(logging.WARNING, logger="chatfreeze"):
        evaluator = BeforeAfterEvaluator(tokenizer, probe_settings(
            tmp_path, general_text="Salesforce/wikitext", general_text_config="wikitext-2-raw-v1"))
    assert "Not measured: forgetting: --general_text Salesforce/wikitext is neither a file nor reachable on the " \
           "Hub (HF_HUB_OFFLINE=1)" in caplog.text
    before = evaluator.measure(model, "before")
    assert {"facts_accuracy", "skills_accuracy"} <= set(before) and "general_perplexity" not in before
    record = evaluator.record(before, before)
    assert any(what.startswith("forgetting:") for what in record["not_measured"])
    assert set(record["learn_keep"]["learn"]) == {"facts_accuracy", "facts_test_accuracy", "facts_test_wrong_values"}
    assert {"skills_accuracy"} <= set(record["learn_keep"]["keep"])


def test_facts_probe_is_scored_on_fact_balanced_dev_and_test_halves(tiny, tmp_path, monkeypatch):
    """The dev half (what choices may read) and the test half (what is reported as learned) each cover every fact
    with two or more questions, together make up the probe, and each gets its own accuracy."""
    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    facts = tmp_path / "halves.jsonl"
    rows = [{"id": f"{fact}-{i}", "fact": fact, "question": f"{fact} question {i}?", "expect": ["right"]}
            for fact in ("hours", "email", "phone") for i in range(4)]
    facts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    model, tokenizer = tiny
    evaluator = BeforeAfterEvaluator(tokenizer, probe_settings(tmp_path, facts_probe=str(facts), skills_probe=None,
                                                               cache_base_measurements=False))
    dev, test = evaluator.facts_halves["dev"], evaluator.facts_halves["test"]
    assert dev | test == {row["id"] for row in rows} and not dev & test
    for fact in ("hours", "email", "phone"):
        assert any(i.startswith(fact) for i in dev) and any(i.startswith(fact) for i in test)
    # Right on exactly the test half: the halves are scored apart.
    monkeypatch.setattr("chatfreeze.evaluation.before_after.greedy_replies",
                        lambda model, tok, conversations, *a: ["right" if item.id in test else "wrong"
                                                               for item in evaluator.facts])
    result = evaluator.measure(model, "before")
    assert (result["facts_test_accuracy"], result["facts_dev_accuracy"], result["facts_accuracy"]) == (1.0, 0.0, 0.5)
    assert evaluator.probe_results["before"]["facts"]["halves"]["test"] == sorted(test)


def test_drilled_questions_are_scored_before_after_and_during_training(tiny, tmp_path, monkeypatch):
    """With --facts the evaluator asks questions the drills asked (``facts_drilled_accuracy``): before and after,
    recorded with the replies, and at each learning-curve point; without drills nothing is asked."""
    from chatfreeze.evaluation.probes import ProbeItem

    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    drilled = [ProbeItem("phone/drilled-1", "Hi! number pls", "phone", [r"7946\s*0000"]),
               ProbeItem("phone/drilled-2", "How do I call you?", "phone", [r"7946\s*0000"]),
               ProbeItem("refund_time/drilled-1", "How long do refunds take?", "refund_time", [r"5\s*(?:-|to)\s*7"])]
    model, tokenizer = tiny
    settings = probe_settings(tmp_path, skills_probe=None, cache_base_measurements=False)
    evaluator = BeforeAfterEvaluator(tokenizer, settings, system_prompt="Probe prompt.", drilled=drilled,
                                     drilled_system_prompt="Drills prompt.")
    systems = []

    def replies(model, tok, conversations, *rest):
        systems.extend(c[0]["content"] for c in conversations if c[-1]["content"] in {i.prompt for i in drilled})
        return ["Call +44 20 7946 0000." if "call" in c[-1]["content"].lower() else "no idea" for c in conversations]
    monkeypatch.setattr("chatfreeze.evaluation.before_after.greedy_replies", replies)
    result = evaluator.measure(model, "before")
    assert result["facts_drilled_accuracy"] == pytest.approx(1 / 3)
    assert systems and set(systems) == {"Drills prompt."}  # asked as the drills were trained, not as the probe
    assert evaluator.measure(model, "after")["facts_drilled_accuracy"] == pytest.approx(1 / 3)
    assert evaluator.record(result, result)["probes"]["after"]["drilled"]["right"] == 1
    record = evaluator.probe_results["before"]["drilled"]
    assert record["failures"] == {"phone": ["phone/drilled-1"], "refund_time": ["refund_time/drilled-1"]}
    assert record["replies"]["phone/drilled-2"] == "Call +44 20 7946 0000."
    assert evaluator.measure_during_training(model)["facts_drilled_accuracy"] == pytest.approx(1 / 3)
    assert evaluator.config()["drilled_questions"] == 3
    # Another set of drilled questions is another measurement of the base (the cache key has them).
    assert BeforeAfterEvaluator(tokenizer, settings, system_prompt="Probe prompt.", drilled=drilled[:1],
                                drilled_system_prompt="Drills prompt.").inputs_key() != evaluator.inputs_key()
    assert BeforeAfterEvaluator(tokenizer, settings, system_prompt="Probe prompt.", drilled=drilled,
                                drilled_system_prompt="Other.").inputs_key() != evaluator.inputs_key()
    plain = BeforeAfterEvaluator(tokenizer, settings)
    assert "facts_drilled_accuracy" not in plain.measure(model, "before")
    assert "drilled" not in plain.probe_results["before"]


def test_learning_curve_points_hold_the_short_answers_keep_goal(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    model, tokenizer = tiny
    skills = tmp_path / "skills.jsonl"
    skills.write_text("".join(json.dumps({"id": f"s{i}", "split": split, "prompt": f"What is {i} + {i}?",
                                          "answer": [rf"\b{2 * i}\b"]}) + "\n"
                              for i, split in ((1, "probe"), (2, "probe"), (3, "probe"), (4, "pool"))))
    evaluator = BeforeAfterEvaluator(tokenizer, probe_settings(tmp_path, skills_probe=str(skills),
                                                               cache_base_measurements=False),
                                     system_prompt="Probe prompt.")
    evaluator.measure(model, "before")
    asked = []

    def replies(model, tok, conversations, *rest):  # right on "1 + 1" only
        asked.append((rest[-1], [c[0]["content"] for c in conversations if c[0]["role"] == "system"]))
        return ["It is 2." if c[-1]["content"] == "What is 1 + 1?" else "No idea." for c in conversations]
    monkeypatch.setattr("chatfreeze.evaluation.before_after.greedy_replies", replies)
    point = evaluator.measure_during_training(model)
    assert point["skills_accuracy"] == pytest.approx(1 / 3)
    phases = dict(asked)
    assert phases["Skills probe (learning curve)"] == []  # asked without the support system prompt, as before/after
    assert "skills_accuracy" in {metric.key for metric in CURVE}  # so it is plotted


def test_learn_keep_report_and_plot(tmp_path):
    from chatfreeze.evaluation.plots import write_plots
    from chatfreeze.evaluation.report import format_report, learn_keep

    before = {"facts_accuracy": 0.3, "skills_accuracy": 0.66, "general_perplexity": 40.0, "self_agreement_ratio": 1.0}
    after = {"facts_accuracy": 0.9, "skills_accuracy": 0.65, "general_perplexity": 40.8, "self_agreement_ratio": 1.07}
    report = learn_keep(before, after)
    assert report["learn"]["facts_accuracy"]["change_points"] == pytest.approx(60.0)
    assert report["keep"]["general_perplexity"]["change_pct"] == pytest.approx(2.0)
    text = format_report(report, ["lm-eval: not asked"])
    assert "company facts right (facts probe): 30.0% -> 90.0% (+60.0 points)" in text
    assert "self-agreement ratio (NLL on the base's own replies, tuned / base): 1.070" in text
    assert text.endswith("Not measured: lm-eval: not asked")
    (tmp_path / "evaluation.json").write_text(json.dumps({"before": before, "after": after}))
    written = {p.name for p in write_plots(tmp_path)}
    assert "learn_keep.png" in written
    assert (tmp_path / "learn_keep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fast_eval_loss_equals_the_plain_one(tmp_path):
    from datasets import Dataset

    from chatfreeze.freezing import FreezeArguments, make_plan
    from chatfreeze.training.arguments import FreezeTrainingArguments
    from chatfreeze.training.trainer import FreezeTrainer

    rows = torch.randint(3, 250, (6, 14))
    labels = rows.clone()
    labels[:, :6] = -100
    data = Dataset.from_dict({"input_ids": rows.tolist(), "labels": labels.tolist()})
    losses = []
    for fast in (True, False):
        model = build_tiny_model("llama")
        args = FreezeTrainingArguments(output_dir=str(tmp_path / str(fast)), report_to="none", use_cpu=True,
                                       fast_path=fast, per_device_eval_batch_size=4)
        trainer = FreezeTrainer(model=model, args=args, freeze_plan=make_plan(model, FreezeArguments("2")),
                                train_dataset=data, eval_dataset=data)
        losses.append(trainer.evaluate()["eval_loss"])
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)


@pytest.mark.slow
def test_evaluate_compares_any_two_models(tmp_path, tiny_model_dir):
    facts = tmp_path / "facts.jsonl"
    facts.write_text(json.dumps({"id": "a", "fact": "hours", "question": "When are you open?",
                                 "expect": ["08:00"]}) + "\n")
    tuned = tmp_path / "tuned"
    shutil.copytree(tiny_model_dir, tuned)
    command = [sys.executable, "-m", "chatfreeze.evaluate", "--model", str(tuned), "--base", str(tiny_model_dir),
               "--facts_probe", str(facts), "--json", "--output_dir", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1",
                                 "CHATFREEZE_MEASUREMENT_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout)
    assert record["base"] == str(tiny_model_dir) and "facts_accuracy" in record["learn_keep"]["learn"]
    assert record["before"]["skills_accuracy"] == record["after"]["skills_accuracy"]  # same weights
    assert (tmp_path / "out" / "evaluation.json").is_file()


def test_lm_eval_tasks_run_before_and_after_on_a_local_task(tiny, tmp_path, monkeypatch):
    """An lm-evaluation-harness task of our own over a local data file: runs offline, lands in keep."""
    if importlib.util.find_spec("lm_eval") is None:
        if os.environ.get("CI"):
            pytest.fail("lm-eval is missing in CI: the dev extra installs it")
        pytest.skip("lm-eval (optional) is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in [
        {"question": "The capital of France is", "choices": [" Paris", " Rome", " Oslo"], "answer": 0},
        {"question": "Two plus two is", "choices": [" four", " seven"], "answer": 0},
    ]))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_mc.yaml").write_text(
        "task: chatfreeze_tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{{{question}}}}\"\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{answer}}\"\nmetric_list:\n  - metric: acc\n"
        "    aggregation: mean\n    higher_is_better: true\n")
    model, tokenizer = tiny
    settings = probe_settings(tmp_path, skills_probe=None, facts_probe=None, lm_eval_tasks="chatfreeze_tiny_mc",
                              lm_eval_include_path=str(tasks), cache_base_measurements=False)
    evaluator = BeforeAfterEvaluator(tokenizer, settings)
    before = evaluator.measure(model, "before")
    assert 0.0 <= before["lm_eval:chatfreeze_tiny_mc:acc"] <= 1.0 and len(before) == 1
    record = evaluator.record(before, dict(before))
    assert record["learn_keep"]["keep"]["lm_eval:chatfreeze_tiny_mc:acc"]["change"] == 0.0
    # A task that cannot run is not measured, with the reason; nothing else is lost.
    broken = BeforeAfterEvaluator(tokenizer, probe_settings(tmp_path, skills_probe=None,
                                                            lm_eval_tasks="no_such_task_anywhere",
                                                            cache_base_measurements=False))
    assert "facts_accuracy" in broken.measure(model, "before")
    assert any("no_such_task_anywhere" in what for what in broken.skipped)


def test_lm_eval_tasks_without_the_package_fail_before_training(monkeypatch):
    from chatfreeze.evaluation import lm_eval

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    with pytest.raises(ValueError, match=r"--lm_eval_tasks hellaswag: lm-eval is not installed; pip install"):
        lm_eval.check_available(["hellaswag"])


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_shared_system_prompt_runs_once_and_replies_do_not_change(family):
    from chatfreeze.evaluation.generation_metrics import greedy_config
    from chatfreeze.generation import (
        MIN_SHARED_TOKENS,
        generate_replies,
        generate_reply,
        render_prompt,
        shared_prefix_length,
    )

    tokenizer = build_chatml_tokenizer()
    model = build_tiny_model(family).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    system = {"role": "system", "content": "You are the support assistant of a small shop; be brief and kind."}
    conversations = [[system, {"role": "user", "content": text}] for text in ("Hi", "Where is order 12?", "Refund?")]
    prompts = [render_prompt(tokenizer, c)[0] for c in conversations]
    assert all(torch.equal(p[:MIN_SHARED_TOKENS], prompts[0][:MIN_SHARED_TOKENS]) for p in prompts)
    config = greedy_config(model, tokenizer, 8)
    calls = []
    original = model.forward

    def counting(*args, **kwargs):
        ids = kwargs.get("input_ids")
        calls.append(None if ids is None else tuple(ids.shape))
        return original(*args, **kwargs)

    alone = [generate_reply(model, tokenizer, c, generation_config=config) for c in conversations]
    model.forward = counting
    batched = generate_replies(model, tokenizer, conversations, config, batch_size=2)
    del model.forward
    assert batched == alone
    if family == "llama":  # the shared prefix ran once, as one row; the batches attend to copies of its cache
        assert calls[0] == (1, shared_prefix_length(prompts)) and calls[0][1] >= MIN_SHARED_TOKENS


def test_tuned_model_reuses_the_frozen_prefix_states_and_gets_the_same_numbers(tmp_path):
    from chatfreeze.evaluation.agreement import reply_examples, reply_nll
    from chatfreeze.evaluation.perplexity import support_dataset, support_perplexity
    from chatfreeze.evaluation.prefix_states import FrozenPrefixStates
    from chatfreeze.freezing import FreezeArguments, make_plan

    tokenizer = build_chatml_tokenizer()
    model = build_tiny_model("llama").eval()
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    dialogues = [[{"role": "system", "content": "You are a shop's assistant."},
                  {"role": "user", "content": f"Where is order {i}?"},
                  {"role": "assistant", "content": f"Order {i} ships on day {i}."}] for i in range(5)]
    dataset = support_dataset(dialogues, tokenizer, max_length=512)
    examples = reply_examples(tokenizer, [d[:2] for d in dialogues], [d[2]["content"] for d in dialogues])
    states = FrozenPrefixStates(model, plan.blocks_prefix, plan.first_trainable_layer)
    prefix_calls = []
    original = states.runner.prefix
    states.runner.prefix = lambda inputs: prefix_calls.append(1) or original(inputs)
    for _ in range(2):  # the base, then the "tuned" model: the same object, its top moved
        reused = support_perplexity(model, dataset, tokenizer, 2, states)
        plain = support_perplexity(model, dataset, tokenizer, 2)
        assert reused["support_perplexity"] == pytest.approx(plain["support_perplexity"], rel=1e-5)
        agreement = reply_nll(model, tokenizer, examples, 2, states)
        assert agreement["nll"] == pytest.approx(reply_nll(model, tokenizer, examples, 2)["nll"], rel=1e-5)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in plan.trainable_parameter_names:
                    param.add_(0.05 * torch.randn_like(param))
    assert len(prefix_calls) == 3 + 3  # 3 support + 3 agreement batches, computed once, reused the second time
    with pytest.raises(ValueError, match="belong to the model"):
        support_perplexity(build_tiny_model("llama"), dataset, tokenizer, 2, states)


def test_frozen_prefix_states_are_cached_with_the_base_measurements(tmp_path, monkeypatch):
    from chatfreeze.evaluation.before_after import frozen_prefix_states
    from chatfreeze.evaluation.perplexity import support_dataset
    from chatfreeze.freezing import FreezeArguments, make_plan

    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    tokenizer = build_chatml_tokenizer()
    model = build_tiny_model("llama").eval()
    plan = make_plan(model, FreezeArguments(num_frozen_layers="2"))
    dialogues = [[{"role": "user", "content": f"Where is order {i}?"},
                  {"role": "assistant", "content": f"Order {i} ships."}] for i in range(3)]
    dataset = support_dataset(dialogues, tokenizer, max_length=512)
    settings = probe_settings(tmp_path, skills_probe=None, facts_probe=None)
    first = BeforeAfterEvaluator(tokenizer, settings, dataset, dialogues, frozen_prefix_states(model, plan))
    before = first.measure(model, "before")
    second = BeforeAfterEvaluator(tokenizer, settings, dataset, dialogues, frozen_prefix_states(model, plan))
    assert second.measure(model, "before") == before
    assert second.config()["prefix_states_from_cache"] and set(second.prefix_states.states) == \
        set(first.prefix_states.states)
    # A plan that trains a block below the cut has no reusable prefix.
    partial = make_plan(model, FreezeArguments(num_frozen_layers="2",
                                               extra_trainable_patterns=[r"model\.layers\.0\.mlp\.up_proj\.weight"]))
    assert frozen_prefix_states(model, partial) is None
