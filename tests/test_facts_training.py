"""The facts drills in a training run: mixed in by the recipe, counted per fact in the log and run_info.json, and
kept out of the KL-to-the-base term by --kl_sources (its per-row weights reach the loss)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from test_facts import small_sheet, write_sheet

from chatfreeze.fastpath.loss import kl_from_base, labelled_positions_loss


def support_rows(n: int = 16) -> list[dict]:
    return [{"messages": [{"role": "system", "content": "You are a shop's assistant."},
                          {"role": "user", "content": f"Where is order {i}?"},
                          {"role": "assistant", "content": f"Order {i} ships tomorrow; call +44 20 7946 0000."
                           if i % 4 == 0 else f"Order {i} ships tomorrow."}]} for i in range(n)]


def train_with_facts(tiny_model_dir, tmp_path, *extra):
    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import parse_args

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in support_rows()))
    sheet = write_sheet(tmp_path, small_sheet())
    out = tmp_path / "out"
    run = recipe.start(*parse_args([
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(data), "--eval_dataset", "none",
        "--num_frozen_layers", "2", "--max_steps", "2", "--per_device_train_batch_size", "4", "--output_dir",
        str(out), "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--eval_before_after",
        "false", "--facts", str(sheet), "--facts_per_fact", "6", *extra]))
    for step in (recipe.load, recipe.plan, recipe.data):
        run = step(run)
    return run


def test_the_recipe_mixes_drills_and_counts_exposures_per_fact(tiny_model_dir, tmp_path, caplog):
    with caplog.at_level("INFO", logger="chatfreeze"):
        run = train_with_facts(tiny_model_dir, tmp_path, "--facts_min_exposures", "10")
    assert len(run.train_dataset) == 16 + 2 * 6  # the support dialogues, then 6 drills for each of the 2 facts
    assert "chatfreeze_kl_weight" not in run.train_dataset.column_names  # no KL asked: no weights
    exposure = run.exposure.to_dict()["facts"]
    # 4 support dialogues state the phone number; every phone drill does (each answer states the value).
    assert exposure["phone"] == {"support": 4, "drills": 6, "total": 10}
    assert exposure["refund_time"] == {"support": 0, "drills": 6, "total": 6}
    assert run.exposure.below == ["refund_time"]
    assert "1 of 2 facts are stated in fewer than 10 training examples: refund_time" in caplog.text
    assert "phone" in caplog.text and "examples: 16 support, 12 drills" in caplog.text
    # The drills are asked with the support dialogues' own system prompt.
    first = run.facts.dialogues("You are a shop's assistant.")[0]
    assert first[0] == {"role": "system", "content": "You are a shop's assistant."}


def test_kl_sources_give_the_drills_weight_zero_and_the_rest_one(tiny_model_dir, tmp_path, caplog):
    with caplog.at_level("INFO", logger="chatfreeze"):
        run = train_with_facts(tiny_model_dir, tmp_path, "--kl_to_base", "0.5")  # default --kl_sources: no drills
    weights = run.train_dataset["chatfreeze_kl_weight"]
    assert weights == [1.0] * 16 + [0.0] * 12
    assert "KL to the base on the support examples only" in caplog.text and "drills" in caplog.text
    (tmp_path / "all").mkdir()
    everywhere = train_with_facts(tiny_model_dir, tmp_path / "all", "--kl_to_base", "0.5", "--kl_sources",
                                  "support,replay,drills")
    assert "chatfreeze_kl_weight" not in everywhere.train_dataset.column_names  # the same as before --kl_sources


def test_bad_kl_sources_name_the_flag():
    from chatfreeze.training.arguments import parse_args

    with pytest.raises(ValueError, match="--kl_sources 'support,drill'"):
        parse_args(["--kl_sources", "support,drill"])
    # The drills have one name: the earlier one is refused with it (an alias would keep two names alive).
    with pytest.raises(ValueError, match="--kl_sources 'support,facts': 'facts' is now called 'drills'"):
        parse_args(["--kl_sources", "support,facts"])


def test_row_weights_scale_each_rows_kl_term():
    """Weight 1 on row 0 and 0 on row 1: the loss is the cross-entropy of both rows plus the KL of row 0 only."""
    torch.manual_seed(0)
    head, base_head = torch.nn.Linear(8, 11, bias=False), torch.nn.Linear(8, 11, bias=False)
    hidden, base_hidden = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    labels = torch.tensor([[1, 2, -100, 3, 4], [5, -100, 6, 7, -100]])
    keep = labels != -100
    common = dict(base_hidden=base_hidden, base_head=base_head, kl_weight=0.5)
    weighted = labelled_positions_loss(hidden, labels, head, lambda x: x,
                                       kl_row_weights=torch.tensor([1.0, 0.0]), **common)
    ce = torch.nn.functional.cross_entropy(head(hidden[keep]), labels[keep], reduction="sum")
    row0 = keep.clone()
    row0[1] = False
    kl0 = kl_from_base(head(hidden[row0]), base_head(base_hidden[row0]))
    torch.testing.assert_close(weighted, (ce + 0.5 * kl0) / keep.sum())
    # Row 1's base states are never read (its logits are not computed): anything there gives the same loss.
    garbage = base_hidden.clone()
    garbage[1] = float("nan")
    torch.testing.assert_close(labelled_positions_loss(hidden, labels, head, lambda x: x, base_hidden=garbage,
                                                       base_head=base_head, kl_weight=0.5,
                                                       kl_row_weights=torch.tensor([1.0, 0.0])), weighted)
    # Chunked (one position per chunk, recomputed in backward), so some chunks have no weighted position: the same
    # loss and the same gradients.
    leaf = hidden.clone().requires_grad_(True)
    chunked = labelled_positions_loss(leaf, labels, head, lambda x: x, kl_row_weights=torch.tensor([1.0, 0.0]),
                                      chunk_elements=11, **common)
    torch.testing.assert_close(chunked, weighted)
    whole = hidden.clone().requires_grad_(True)
    labelled_positions_loss(whole, labels, head, lambda x: x, kl_row_weights=torch.tensor([1.0, 0.0]),
                            **common).backward()
    chunked.backward()
    torch.testing.assert_close(leaf.grad, whole.grad)
    # All ones: the unweighted loss.
    ones = labelled_positions_loss(hidden, labels, head, lambda x: x, kl_row_weights=torch.ones(2), **common)
    torch.testing.assert_close(ones, labelled_positions_loss(hidden, labels, head, lambda x: x, **common))


def test_a_run_with_drills_and_kl_on_the_support_only_trains_and_records_the_facts(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    """End to end (2 steps, the prefix cache on and off): the KL weights travel through the collator to the loss, and
    run_info.json records the sheet, the drills and the exposure per fact."""
    from chatfreeze.training import recipe

    monkeypatch.setattr(recipe, "generate_reply", lambda *args, **kwargs: "(stub reply)")
    seen = []
    real = labelled_positions_loss

    def spy(*args, **kwargs):
        seen.append(kwargs.get("kl_row_weights"))
        return real(*args, **kwargs)

    monkeypatch.setattr("chatfreeze.fastpath.fast_path.labelled_positions_loss", spy)
    for cache in ("off", "ram"):
        (tmp_path / cache).mkdir()
        run = train_with_facts(tiny_model_dir, tmp_path / cache, "--kl_to_base", "0.5", "--prefix_cache", cache)
        for step in (recipe.build_trainer, recipe.train, recipe.finish):
            run = step(run)
        info = json.loads((tmp_path / cache / "out" / "run_info.json").read_text())
        assert info["facts"]["per_fact"] == 6 and info["facts"]["drills"] == 12
        assert info["facts"]["exposure"]["facts"]["phone"]["total"] == 10
        assert seen and all(weights is not None and set(weights.tolist()) <= {0.0, 1.0} for weights in seen)
        seen.clear()


def train_with_curves(tiny_model_dir, tmp_path, monkeypatch, *extra):
    """A 2-step run evaluated after each step on a 2-fact probe, the probe's replies all empty; returns the run,
    its output dir, every question asked and the probe's ids."""
    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import parse_args

    monkeypatch.setattr(recipe, "generate_reply", lambda *args, **kwargs: "(stub reply)")
    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    probe = tmp_path / "probe.jsonl"
    probe.write_text("".join(json.dumps({"id": f"{fact}-{i}", "fact": fact, "question": f"Q{i} about {fact}?",
                                         "expect": ["7946"]}) + "\n"
                             for fact in ("phone", "hours") for i in range(4)))
    asked: list[str] = []
    real = recipe.train.__globals__["evaluator_for_run"]

    def spying_evaluator(*args, **kwargs):
        evaluator = real(*args, **kwargs)
        import chatfreeze.evaluation.before_after as before_after

        def replies(model, tokenizer, conversations, *rest):
            asked.extend(c[-1]["content"] for c in conversations)
            return ["" for _ in conversations]
        monkeypatch.setattr(before_after, "greedy_replies", replies)
        return evaluator

    monkeypatch.setattr(recipe, "evaluator_for_run", spying_evaluator)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in support_rows()))
    out = tmp_path / "out"
    args = parse_args([
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(data), "--validation_split_ratio", "0.25",
        "--eval_dataset", "none", "--num_frozen_layers", "2", "--max_steps", "2", "--per_device_train_batch_size",
        "4", "--output_dir", str(out), "--report_to", "none", "--use_cpu", "true", "--eval_before_after", "true",
        "--facts_probe", str(probe), "--skills_probe", "none", "--generation_eval_samples", "0",
        "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
        "--metric_for_best_model", "facts_dev_accuracy", "--load_best_model_at_end", "true", *extra])
    run = recipe.start(*args)
    for step in (recipe.load, recipe.plan, recipe.data, recipe.build_trainer):
        run = step(run)
    asked.clear()
    return recipe.train(run), out, asked, probe


def test_learning_curves_read_the_dev_half_only_and_pick_the_best_checkpoint_on_it(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    run, out, asked, probe = train_with_curves(tiny_model_dir, tmp_path, monkeypatch)
    curves = json.loads((out / "learning_curves.json").read_text())["points"]
    assert [point["step"] for point in curves] == [1, 2]
    assert all("facts_dev_accuracy" in point and point["train_seconds"] >= 0 for point in curves)
    assert (out / "learning_curves.png").is_file()
    evaluation = run.metrics  # before/after: the whole probe, both halves scored
    assert "after_facts_test_accuracy" in evaluation
    # During training (2 curve points) only dev questions were asked; before and after asked every question.
    from chatfreeze.evaluation.probe_halves import facts_halves
    from chatfreeze.evaluation.probes import load_facts_probe

    halves = facts_halves(load_facts_probe(str(probe)))
    by_id = {item.id: item.prompt for item in load_facts_probe(str(probe))}
    test_questions = {by_id[i] for i in halves["test"]}
    dev_questions = {by_id[i] for i in halves["dev"]}
    during = asked[len(by_id):-len(by_id)]  # after the base's measurement, before the tuned model's
    assert during and set(during) == dev_questions and not set(during) & test_questions


def test_the_trainer_keeps_the_checkpoint_facts_dev_accuracy_if_kept_ranks_first(tiny_model_dir, tmp_path,
                                                                                monkeypatch):
    text = tmp_path / "general.txt"
    text.write_text("The river runs past the old mill and under the stone bridge. " * 40)
    run, out, _, _ = train_with_curves(tiny_model_dir, tmp_path, monkeypatch, "--general_text", str(text),
                                       "--general_window", "32", "--general_stride", "32", "--general_max_windows", "4",
                                       "--metric_for_best_model",
                                       "facts_dev_accuracy_if_kept", "--alpha_tolerance", "0.5")
    points = json.loads((out / "learning_curves.json").read_text())["points"]
    assert len(points) == 2 and all("facts_dev_accuracy_if_kept" in point for point in points)
    assert all("general_dev_perplexity" in point for point in points)  # what the choice was held to
    last = max(out.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    best = max(points, key=lambda point: point["facts_dev_accuracy_if_kept"])  # the first of equals, as the Trainer keeps it
    assert state["best_metric"] == pytest.approx(best["facts_dev_accuracy_if_kept"])
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best['step']}")


def test_facts_dev_accuracy_if_kept_refuses_a_base_without_the_dev_split(tiny_model_dir, tmp_path, monkeypatch):
    # A --general_text that is not there is skipped (logged), so the base has no dev-split measure: refused before
    # training, not at the first evaluation.
    with pytest.raises(ValueError, match="--metric_for_best_model facts_dev_accuracy_if_kept: the base has no "
                                         "general-text perplexity on the dev split"):
        train_with_curves(tiny_model_dir, tmp_path, monkeypatch, "--general_text", str(tmp_path / "missing.txt"),
                          "--metric_for_best_model", "facts_dev_accuracy_if_kept")


def test_facts_dev_accuracy_if_kept_ranks_keeping_checkpoints_first_then_the_least_over_its_bound():
    from chatfreeze.training.curves import facts_dev_accuracy_if_kept

    base = {"general_dev_perplexity": 20.0, "general_perplexity": 10.0, "self_agreement_ratio": 1.0}
    keeps = {"facts_dev_accuracy": 0.4, "general_dev_perplexity": 20.3}
    knows_more = {"facts_dev_accuracy": 0.6, "general_dev_perplexity": 21.0}  # +5%
    forgets_most = {"facts_dev_accuracy": 0.9, "general_dev_perplexity": 30.0}
    score = {name: facts_dev_accuracy_if_kept(measures, base, 0.02) for name, measures in
             (("keeps", keeps), ("knows_more", knows_more), ("forgets_most", forgets_most))}
    assert score["keeps"] == 0.4  # within 2%: ranked by the facts it knows
    assert score["knows_more"] == pytest.approx(-(21.0 / 20.4 - 1))  # over the bound: minus its excess
    assert score["keeps"] > score["knows_more"] > score["forgets_most"]
    assert facts_dev_accuracy_if_kept(knows_more, base, 0.10) == 0.6  # a wider tolerance keeps it
    assert facts_dev_accuracy_if_kept({"general_dev_perplexity": 20.0}, base, 0.02) is None  # no dev half
    assert facts_dev_accuracy_if_kept(keeps, None, 0.02) is None and facts_dev_accuracy_if_kept(keeps, {}, 0.02) is None
    diverged = keeps | {"general_dev_perplexity": float("inf")}
    assert facts_dev_accuracy_if_kept(diverged, base, 0.02) == -1e9  # last, and JSON-writable


def test_facts_dev_accuracy_if_kept_never_reads_the_reported_keep_measures():
    """What the run reports as kept (self-agreement, general-text perplexity) does not move the choice: only the
    general text's dev split does."""
    from chatfreeze.training.curves import facts_dev_accuracy_if_kept

    base = {"general_dev_perplexity": 20.0, "general_perplexity": 10.0, "self_agreement_ratio": 1.0}
    point = {"facts_dev_accuracy": 0.5, "general_dev_perplexity": 20.1}
    reported_worse = point | {"general_perplexity": 50.0, "self_agreement_ratio": 3.0}
    assert facts_dev_accuracy_if_kept(reported_worse, base, 0.02) == facts_dev_accuracy_if_kept(point, base, 0.02)
    assert facts_dev_accuracy_if_kept({"facts_dev_accuracy": 0.5, "general_perplexity": 10.0,
                                       "self_agreement_ratio": 1.0}, base, 0.02) is None  # no dev split: no rank


def test_the_general_texts_dev_split_shares_no_token_with_the_reported_windows():
    from chatfreeze.evaluation.perplexity import dev_windows, split_general_ids, window_spans

    ids = list(range(1000))
    reported, dev = split_general_ids(ids, 32, 32, 8)
    scored = {index for begin, end, _ in window_spans(len(reported), 32, 32, 8) for index in range(begin, end)}
    assert max(scored) < len(reported) and reported + dev == ids and dev and dev_windows(8) == 2
    assert window_spans(len(dev), 32, 32, dev_windows(8))  # enough text for its windows
    whole, rest = split_general_ids(ids, 32, 32, None)
    assert len(rest) == 250 and whole + rest == ids  # every window reported: the last quarter is the dev split


def test_a_best_checkpoint_on_drilled_questions_needs_drills():
    from types import SimpleNamespace

    from chatfreeze.evaluation import EvaluationArguments
    from chatfreeze.facts import FactsArguments
    from chatfreeze.training.choices import check_best_metric

    def run(**facts):
        return SimpleNamespace(training_args=SimpleNamespace(metric_for_best_model="eval_facts_drilled_accuracy",
                                                             eval_strategy="epoch", greater_is_better=True),
                               eval_args=EvaluationArguments(eval_before_after=True), facts_args=FactsArguments(**facts))

    check_best_metric(run(facts="data/facts.yaml"))
    for facts in ({}, {"facts": "data/facts.yaml", "facts_per_fact": 0}):
        with pytest.raises(ValueError, match="--metric_for_best_model facts_drilled_accuracy: needs --facts with"):
            check_best_metric(run(**facts))


def test_a_best_checkpoint_on_facts_dev_needs_the_curves(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="--metric_for_best_model facts_dev_accuracy: is a learning-curve measure"):
        train_with_facts(tiny_model_dir, tmp_path, "--metric_for_best_model", "facts_dev_accuracy")


def test_a_best_checkpoint_is_chosen_on_the_dev_half_or_its_keep_variant_never_on_a_reported_measure():
    from types import SimpleNamespace

    from chatfreeze.evaluation import EvaluationArguments
    from chatfreeze.facts import FactsArguments
    from chatfreeze.training.choices import check_best_metric

    def run(metric="facts_dev_accuracy_if_kept", greater_is_better=True, **evaluation):
        return SimpleNamespace(training_args=SimpleNamespace(metric_for_best_model=metric, eval_strategy="epoch",
                                                             greater_is_better=greater_is_better),
                               eval_args=EvaluationArguments(eval_before_after=True, **evaluation),
                               facts_args=FactsArguments())

    check_best_metric(run(facts_probe="data/facts_probe.jsonl", skills_probe="none", general_text="wiki.txt"))
    with pytest.raises(ValueError, match="--metric_for_best_model facts_dev_accuracy_if_kept: needs a --facts_probe"):
        check_best_metric(run(facts_probe="none", skills_probe="builtin"))
    with pytest.raises(ValueError, match="--metric_for_best_model facts_dev_accuracy_if_kept: needs a --general_text"):
        check_best_metric(run(facts_probe="data/facts_probe.jsonl", skills_probe="builtin", general_text="none"))
    with pytest.raises(ValueError, match="--greater_is_better false with --metric_for_best_model facts_dev_accuracy_if_kept"):
        check_best_metric(run(greater_is_better=False, facts_probe="data/facts_probe.jsonl"))
    # What the run reports as kept or learned is not chosen on (HF would also keep the highest perplexity).
    for reported in ("skills_accuracy", "eval_general_perplexity", "support_perplexity", "self_agreement_ratio"):
        with pytest.raises(ValueError, match=f"--metric_for_best_model {reported.removeprefix('eval_')}: is a "
                                             "measure the run reports"):
            check_best_metric(run(metric=reported, facts_probe="data/facts_probe.jsonl"))
    check_best_metric(run(metric="eval_loss"))  # the Trainer's own: not ours to check


def test_a_test_half_or_unknown_best_metric_is_refused_by_name():
    """The test half is never selectable; a misspelt name fails now, not at the Trainer's first evaluation."""
    from types import SimpleNamespace

    from chatfreeze.training.choices import check_metric_name

    for metric, why in (("eval_facts_test_accuracy", "is a test-half measure"),
                        ("facts_test_accuracy", "is a test-half measure"),
                        ("facts_dev_acuracy", "is not measured during training"),
                        ("facts_dev_kept", "is now called facts_dev_accuracy_if_kept")):
        with pytest.raises(ValueError, match=f"--metric_for_best_model {metric.removeprefix('eval_')}: {why}"):
            check_metric_name(SimpleNamespace(metric_for_best_model=metric))
    for metric in (None, "loss", "eval_loss", "facts_dev_accuracy", "facts_dev_accuracy_if_kept"):
        check_metric_name(SimpleNamespace(metric_for_best_model=metric))


def test_the_learning_curve_callback_hands_facts_dev_accuracy_if_kept_to_the_trainer(tmp_path):
    from types import SimpleNamespace

    from chatfreeze.training.curves import LearningCurves

    class Evaluator:
        def measure_during_training(self, model):
            return {"facts_dev_accuracy": 0.5, "general_dev_perplexity": 30.0}

    model = torch.nn.Linear(1, 1)
    curves = LearningCurves(Evaluator(), str(tmp_path), before={"general_dev_perplexity": 20.0}, keep_tolerance=0.02)
    curves.on_train_begin(None, SimpleNamespace(global_step=0), None)
    metrics = {"eval_loss": 1.0}
    curves.on_evaluate(None, SimpleNamespace(global_step=3, log_history=[]), None, metrics=metrics, model=model)
    # +50% general perplexity: over the 2% bound by 30 / 20.4 - 1, so it ranks below any keeping checkpoint.
    assert metrics["eval_facts_dev_accuracy_if_kept"] == pytest.approx(-(30.0 / 20.4 - 1))
    assert curves.points[0]["facts_dev_accuracy_if_kept"] == metrics["eval_facts_dev_accuracy_if_kept"]


def test_another_process_receives_the_main_process_measures_their_choice_included(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import accelerate
    import accelerate.utils

    from chatfreeze.training.curves import LearningCurves

    main = {"facts_dev_accuracy": 0.5, "facts_dev_accuracy_if_kept": 0.5}
    monkeypatch.setattr(accelerate, "PartialState", lambda: SimpleNamespace(num_processes=2))
    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", lambda objects: [main])
    curves = LearningCurves(None, str(tmp_path), before=None, keep_tolerance=0.02)  # not the main process
    curves.on_train_begin(None, SimpleNamespace(global_step=0), None)
    metrics = {}
    curves.on_evaluate(None, SimpleNamespace(global_step=1, log_history=[]), None, metrics=metrics, model=None)
    assert metrics == {"eval_facts_dev_accuracy": 0.5, "eval_facts_dev_accuracy_if_kept": 0.5}  # the same choice everywhere


def test_learning_curve_seconds_leave_out_evaluations_and_saves(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from chatfreeze.training import curves as curves_module

    clock = iter([0.0, 11.0, 50.0, 60.0])  # the callback reads the clock at these four moments only
    monkeypatch.setattr(curves_module.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(curves_module.LearningCurves, "_measure", lambda self, model: {"facts_dev_accuracy": 0.1})
    curves = curves_module.LearningCurves(None, str(tmp_path), before=None, keep_tolerance=0.02)
    state = SimpleNamespace(global_step=1, log_history=[])
    curves.on_train_begin(None, state, None)  # t=0
    curves.on_step_begin(None, state, None)  # no pause yet: nothing left out
    curves.on_step_end(None, state, None)  # t=11: step 1 ended
    curves.on_evaluate(None, state, None, metrics={}, model=None)  # an evaluation, then a save, until t=50
    curves.on_save(None, state, None)
    curves.on_step_begin(None, state, None)  # t=50: 39 s of evaluating and saving left out
    curves.on_step_end(None, state, None)  # t=60
    state.global_step = 2
    curves.on_evaluate(None, state, None, metrics={}, model=None)
    assert [point["train_seconds"] for point in curves.points] == [11.0, 21.0]


def test_a_resumed_run_keeps_the_points_before_the_interruption_and_continues_their_seconds(tmp_path, monkeypatch):
    """A run saved at step 2 and killed after step 3, then resumed from checkpoint-2: the step-2 point stays, the
    step-3 one (redone) does not, and the seconds go on from the checkpoint's."""
    from types import SimpleNamespace

    from chatfreeze.training import curves as curves_module

    class Evaluator:
        def measure_during_training(self, model):
            return {"facts_dev_accuracy": 0.25}

    clock = iter(float(t) for t in range(0, 1000, 10))  # every reading of the clock is 10 s after the last
    monkeypatch.setattr(curves_module.time, "perf_counter", lambda: next(clock))
    model = torch.nn.Linear(1, 1)

    def evaluate_and_save(curves, state, step, save=True):
        state.global_step = step
        curves.on_step_begin(None, state, None)
        curves.on_step_end(None, state, None)
        curves.on_evaluate(None, state, None, metrics={"eval_loss": 1.0}, model=model)
        if save:
            (tmp_path / f"checkpoint-{step}").mkdir()
            curves.on_save(None, state, None)

    first = curves_module.LearningCurves(Evaluator(), str(tmp_path), before=None, keep_tolerance=0.02)
    state = SimpleNamespace(global_step=0, log_history=[])
    first.on_train_begin(None, state, None)
    evaluate_and_save(first, state, 2)
    evaluate_and_save(first, state, 3, save=False)  # then killed: no checkpoint-3, no learning_curves.json
    saved_seconds = first.points[0]["train_seconds"]

    resumed = curves_module.LearningCurves(Evaluator(), str(tmp_path), before=None, keep_tolerance=0.02)
    state = SimpleNamespace(global_step=2, log_history=[])  # the Trainer loaded checkpoint-2's state
    resumed.on_train_begin(None, state, None)
    evaluate_and_save(resumed, state, 4)
    resumed.on_train_end(None, state, None)
    points = json.loads((tmp_path / "learning_curves.json").read_text())["points"]
    assert [point["step"] for point in points] == [2, 4]
    assert points[0]["train_seconds"] == saved_seconds and points[1]["train_seconds"] > saved_seconds


def test_a_run_plans_drills_by_need_against_its_own_dialogues(tiny_model_dir, tmp_path, caplog):
    """--facts_plan need: refund_time, which no support dialogue states, gets drills until 10 examples state it;
    phone (4 dialogues + 6 drills) keeps its 6. The exposure table in the log shows the plan."""
    with caplog.at_level("INFO", logger="chatfreeze"):
        run = train_with_facts(tiny_model_dir, tmp_path, "--facts_min_exposures", "10", "--facts_plan", "need")
    assert run.facts.planned == {"phone": 6, "refund_time": 10}
    assert len(run.train_dataset) == 16 + 6 + 10
    exposure = run.exposure.to_dict()
    assert exposure["planned"] == run.facts.planned and run.exposure.below == []
    assert exposure["facts"]["refund_time"] == {"support": 0, "drills": 10, "total": 10}
    assert "16 drills for 2 facts (6 per fact, 1 fact topped up to 10 at most)" in caplog.text
    assert re.search(r"^refund_time\s+10\s+0\s+10\s+10$", caplog.text, re.M)


def test_a_facts_run_reports_wrong_values_and_neighbour_errors_per_half(tiny_model_dir, tmp_path, monkeypatch):
    """The recipe hands the sheet's neighbours (facts.neighbours_of) and value patterns to the evaluation."""
    sheet = tmp_path / "sheet.yaml"
    sheet.write_text(
        "facts:\n"
        "  - {id: phone, value: '+44 20 7946 0000', patterns: ['7946'], questions: ['What is your phone number?'],"
        " answers: ['Call +44 20 7946 0000.'], neighbours: [hours]}\n"
        "  - {id: hours, value: 'from 08:00', patterns: ['08:00'], questions: ['When do you open?'],"
        " answers: ['We open at 08:00.']}\n")
    _, out, _, _ = train_with_curves(tiny_model_dir, tmp_path, monkeypatch, "--facts", str(sheet),
                                     "--facts_per_fact", "2")
    record = json.loads((out / "evaluation.json").read_text())
    for side in ("before", "after"):
        assert {"facts_test_wrong_values", "facts_dev_wrong_values", "facts_test_neighbour_errors",
                "facts_dev_neighbour_errors"} <= set(record[side])
    assert "facts_test_neighbour_errors" in record["learn_keep"]["learn"]
    assert record["config"]["neighbours"] == {"phone": ["hours"], "hours": ["phone"]}


def test_a_tiny_run_resumed_from_a_checkpoint_keeps_its_earlier_learning_curve(tiny_model_dir, tmp_path, monkeypatch):
    """Through the real Trainer: a 2-step run, then everything after checkpoint-1 removed (as a kill after that
    save leaves it) and the run resumed: step 1's point is the one measured before, step 2 is measured again, and
    its seconds go on from checkpoint-1's."""
    import shutil

    _, out, _, _ = train_with_curves(tiny_model_dir, tmp_path, monkeypatch)
    first = json.loads((out / "learning_curves.json").read_text())["points"]
    for path in out.iterdir():
        if path.name != "checkpoint-1":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    kept = json.loads((out / "checkpoint-1" / "learning_curves.json").read_text())
    assert kept["points"] == first[:1] and kept["seconds_at_save"] >= first[0]["train_seconds"]
    _, out, _, _ = train_with_curves(tiny_model_dir, tmp_path, monkeypatch, "--resume_from_checkpoint", "auto")
    resumed = json.loads((out / "learning_curves.json").read_text())["points"]
    assert [point["step"] for point in resumed] == [1, 2] and resumed[0] == first[0]
    assert resumed[1]["train_seconds"] >= kept["seconds_at_save"]
