"""Evaluation: metric values computed by hand, perplexities against a manual token-by-token loop, window
coverage, the before/after record a training run writes, plots, and the ``python -m chatfreeze.evaluate`` CLI."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, build_tiny_model, require_package

from chatfreeze.evaluation import (
    BeforeAfterEvaluator,
    EvaluationArguments,
    general_perplexity,
    load_general_text,
    load_metric,
    support_dataset,
    support_perplexity,
    tokenize_general_text,
    window_spans,
)

DIALOGUES = [
    [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "It ships tomorrow."}],
    [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Cancel my plan."},
        {"role": "assistant", "content": "Done, your plan is cancelled."},
    ],
    [{"role": "user", "content": "Refund please"}, {"role": "assistant", "content": "Refund issued."}],
]
GENERAL_TEXT = (
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step. "
    "All that glitters is not gold. "
) * 3


# ---------------------------------------------------------------------------------------------------------
# ROUGE-L and chrF, loaded from the package by path (offline)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rouge():
    return load_metric("rouge_l")


@pytest.fixture(scope="module")
def chrf():
    return load_metric("chrf")


def test_lcs_of_known_sequences():
    from chatfreeze.evaluation.metrics.rouge_l.rouge_l import lcs_length

    # The textbook example (CLRS 15.4): LCS("ABCBDAB", "BDCABA") has length 4, e.g. "BCBA".
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length(list("abc"), list("xyz")) == 0
    assert lcs_length([], list("abc")) == 0


def test_rouge_l_by_hand(rouge):
    # "the cat sat" vs "the cat sat down": LCS 3, P = 3/3, R = 3/4, F = 2 * 1 * 0.75 / 1.75 = 6/7.
    result = rouge.compute(predictions=["the cat sat"], references=["the cat sat down"])
    assert result["rougeL"] == pytest.approx(6 / 7)
    assert result["rougeL_precision"] == pytest.approx(1.0)
    assert result["rougeL_recall"] == pytest.approx(0.75)
    # Lowercased, punctuation only separates: identical token lists.
    assert rouge.compute(predictions=["Hello, World!"], references=["hello world"])["rougeL"] == 1.0
    # "a b c d" vs "a x c y d": LCS "a c d" = 3, P = 3/4, R = 3/5, F = 2 * 0.45 / 1.35 = 2/3.
    # The corpus score is the mean over examples: (2/3 + 0) / 2.
    mixed = rouge.compute(predictions=["a b c d", "nothing shared"], references=["a x c y d", "zzz"])
    assert mixed["rougeL"] == pytest.approx(1 / 3)
    assert rouge.compute(predictions=[""], references=["something"])["rougeL"] == 0.0


def test_chrf_by_hand(chrf):
    assert chrf.compute(predictions=["Thank you for waiting."], references=["Thank you for waiting."])["chrf"] == 100.0
    assert chrf.compute(predictions=["abc"], references=["xyz"])["chrf"] == 0.0
    # "ab" vs "abc": orders 1-2 only (no 3-gram in "ab"). n=1: 2 matches, P=2/2, R=2/3; n=2: "ab" matches,
    # P=1/1, R=1/2. chrP = 1, chrR = (2/3 + 1/2) / 2 = 7/12; chrF(beta=2) = 5 * 7/12 / (4 + 7/12) = 7/11.
    result = chrf.compute(predictions=["ab"], references=["abc"])
    assert result["chrf"] == pytest.approx(700 / 11)
    assert result["chrf_recall"] == pytest.approx(700 / 12)
    # Whitespace is not part of character n-grams.
    assert chrf.compute(predictions=["a b c"], references=["abc"])["chrf"] == pytest.approx(100.0)
    # beta = 1 is the plain harmonic mean: 2 * 1 * 7/12 / (1 + 7/12) = 14/19.
    assert chrf.compute(predictions=["ab"], references=["abc"], beta=1)["chrf"] == pytest.approx(1400 / 19)


def test_metrics_agree_with_reference_implementations(rouge, chrf):
    """Where sacrebleu and rouge_score are installed (evaluate's optional extras), the scores are theirs."""
    sacrebleu = require_package("sacrebleu")
    rouge_scorer = require_package("rouge_score.rouge_scorer")
    predictions = ["Your refund was issued today; expect it in 5-7 business days.", "Sorry, I can't help.",
                   "To cancel order #123, open My Orders and click Cancel.", "identical text"]
    references = ["We issued your refund today. It takes 5 to 7 business days to arrive.",
                  "I'm sorry to hear that! Let me help you with your account.",
                  "You can cancel the order from the My Orders page: choose it and press Cancel.", "identical text"]
    ours = chrf.compute(predictions=predictions, references=references)["chrf"]
    assert ours == pytest.approx(sacrebleu.corpus_chrf(predictions, [references]).score, abs=1e-9)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    theirs = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)]
    assert rouge.compute(predictions=predictions, references=references)["rougeL"] == pytest.approx(
        sum(theirs) / len(theirs), abs=1e-12
    )


def test_package_evaluate_module_does_not_shadow_the_library():
    cli = importlib.import_module("chatfreeze.evaluate")  # the CLI module first, on purpose
    library = importlib.import_module("evaluate")
    assert cli is not library and hasattr(library, "load") and hasattr(library, "Metric")
    package = Path(importlib.import_module("chatfreeze").__file__).resolve().parent
    assert package not in Path(library.__file__).resolve().parents  # not ours (the checkout may be "chatfreeze/")


# ---------------------------------------------------------------------------------------------------------
# Perplexities against a manual loop
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    model = build_tiny_model("llama", num_layers=2, seed=1)
    return model.eval()


def manual_nll(model, ids: list[int], scored: list[int]) -> tuple[float, int]:
    """Sum of -log p(ids[t] | ids[:t]) over positions ``scored``, one forward per example, no batching."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return -sum(float(log_probs[t - 1, ids[t]]) for t in scored), len(scored)


def test_support_perplexity_matches_manual_loop(tiny_model, chatml_tokenizer):
    dataset = support_dataset(DIALOGUES, chatml_tokenizer, max_length=512)
    total, count = 0.0, 0
    for row in dataset:
        scored = [t for t, label in enumerate(row["labels"]) if label != -100]
        assert scored and scored[0] > 0
        nll, n = manual_nll(tiny_model, row["input_ids"], scored)
        total, count = total + nll, count + n
    # batch_size=2 pads the shorter example: padding must change nothing.
    result = support_perplexity(tiny_model, dataset, chatml_tokenizer, batch_size=2)
    assert result["support_tokens"] == count
    assert result["support_examples"] == len(DIALOGUES)
    assert result["support_perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)
    # Token-weighted, not a mean of per-example means: the long two-reply dialogue weighs more.
    per_example = [support_perplexity(tiny_model, dataset.select([i]), chatml_tokenizer)["support_nll"]
                   for i in range(len(dataset))]
    assert result["support_nll"] != pytest.approx(sum(per_example) / len(per_example), rel=1e-6)


def test_assistant_tokens_only_are_scored(chatml_tokenizer):
    dataset = support_dataset(DIALOGUES[:1], chatml_tokenizer, max_length=512)
    labels = [t for t in dataset[0]["labels"] if t != -100]
    # Byte-level tokenizer: one token per byte of the reply, plus the <|im_end|> that closes the turn.
    assert chatml_tokenizer.decode(labels) == "It ships tomorrow.<|im_end|>"


@pytest.mark.parametrize(
    "n, window, stride, expected",
    [
        (100, 32, 32, [(0, 32, 31), (32, 64, 31), (64, 96, 31), (96, 100, 3)]),
        (100, 32, 16, [(0, 32, 31), (16, 48, 16), (32, 64, 16), (48, 80, 16), (64, 96, 16), (80, 100, 4)]),
        (10, 8, 8, [(0, 8, 7), (8, 10, 1)]),
        (9, 8, 8, [(0, 8, 7)]),  # the last window would hold 1 token: nothing to score, dropped
    ],
)
def test_window_spans_by_hand(n, window, stride, expected):
    assert window_spans(n, window, stride) == expected


@pytest.mark.parametrize("n, window, stride", [(100, 32, 32), (100, 32, 16), (257, 64, 7), (64, 64, 1), (5, 64, 64)])
def test_window_coverage(n, window, stride):
    scored = []
    for begin, end, targets in window_spans(n, window, stride):
        assert 0 < targets < end - begin + 1 and end - begin <= window
        scored.extend(range(end - targets, end))
    assert len(scored) == len(set(scored)), "a token was scored twice"
    if stride == window:
        # Every token except each window's first (predicted from nothing) is scored exactly once.
        starts = set(range(0, n, window))
        assert set(scored) == set(range(n)) - starts
    else:
        # Overlapping windows give every token after the first some context: all scored exactly once.
        assert set(scored) == set(range(1, n))


def test_max_windows_limits_the_windows():
    assert len(window_spans(1000, 32, 16, max_windows=5)) == 5
    with pytest.raises(ValueError, match="stride"):
        window_spans(100, 32, 33)


@pytest.mark.parametrize("window, stride", [(16, 16), (16, 5)])
def test_general_perplexity_matches_manual_loop(tiny_model, window, stride):
    ids = [(7 * i + 3) % 250 + 3 for i in range(70)]
    total, count = 0.0, 0
    for begin, end, targets in window_spans(len(ids), window, stride):
        nll, n = manual_nll(tiny_model, ids[begin:end], list(range(end - begin - targets, end - begin)))
        total, count = total + nll, count + n
    result = general_perplexity(tiny_model, ids, window, stride, batch_size=3)
    assert result["general_tokens"] == count == (len(ids) - math.ceil(len(ids) / window) if stride == window
                                                 else len(ids) - 1)
    assert result["general_perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)


def test_general_text_prefix_tokenization(chatml_tokenizer, tmp_path):
    text_file = tmp_path / "general.txt"
    text_file.write_text(GENERAL_TEXT)
    text = load_general_text(str(text_file))
    full = chatml_tokenizer(text)["input_ids"]
    # Two windows of 16 with stride 8 need 8 + 16 + 1 tokens; the prefix gives exactly the full text's first ones.
    assert tokenize_general_text(chatml_tokenizer, text, 16, 8, max_windows=2) == full[:25]
    assert tokenize_general_text(chatml_tokenizer, text, 16, 8, max_windows=None) == full
    with pytest.raises(FileNotFoundError):
        load_general_text(str(tmp_path / "missing.txt"))


# ---------------------------------------------------------------------------------------------------------
# Before/after record, plots
# ---------------------------------------------------------------------------------------------------------


def test_before_after_record_and_plots(tiny_model, chatml_tokenizer, tmp_path):
    from chatfreeze.evaluation.plots import write_plots

    text_file = tmp_path / "general.txt"
    text_file.write_text(GENERAL_TEXT)
    settings = EvaluationArguments(general_text=str(text_file), general_window=32, general_stride=16,
                                   general_max_windows=3, generation_eval_samples=2, generation_max_new_tokens=4,
                                   skills_probe="none")
    dataset = support_dataset(DIALOGUES, chatml_tokenizer, max_length=512)
    evaluator = BeforeAfterEvaluator(chatml_tokenizer, settings, dataset, DIALOGUES)
    before = evaluator.measure(tiny_model, "before")
    assert set(before) == {"support_perplexity", "general_perplexity", "general_dev_perplexity", "rougeL", "chrf"}
    after = dict(before, support_perplexity=before["support_perplexity"] / 2,
                 general_perplexity=before["general_perplexity"] * 1.1)
    flat = evaluator.finish(tmp_path, before, after)
    record = json.loads((tmp_path / "evaluation.json").read_text())
    assert record["before"] == before and record["after"] == after
    config = record["config"]
    assert (config["general_window"], config["general_stride"], config["general_windows"],
            config["generation_prompts"]) == (32, 16, 3, 2)
    assert config["general_text"] == str(text_file) and config["support_examples"] == 3
    assert flat["before_support_perplexity"] == before["support_perplexity"]
    assert flat["general_perplexity_change_pct"] == pytest.approx(10.0)
    assert flat["support_perplexity_change_pct"] == pytest.approx(-50.0)
    assert [r["prompt"] for r in record["replies"]] == ["Where is my order?", "Hi"]

    state = {"log_history": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "eval_loss": 2.7}]}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    written = write_plots(tmp_path)
    assert sorted(p.name for p in written) == ["before_after.png", "loss_curves.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_missing_general_text_is_skipped_with_a_log_line(chatml_tokenizer, caplog):
    settings = EvaluationArguments(general_text="../nowhere/wiki.test.raw")
    with caplog.at_level("INFO", logger="chatfreeze.evaluation"):
        evaluator = BeforeAfterEvaluator(chatml_tokenizer, settings, None, [])
    assert "forgetting: --general_text ../nowhere/wiki.test.raw does not exist" in caplog.text
    assert evaluator.config()["not_measured"]


# ---------------------------------------------------------------------------------------------------------
# Entry points: the training run's before/after evaluation, and the CLI
# ---------------------------------------------------------------------------------------------------------


def write_jsonl(path, dialogues):
    path.write_text("".join(json.dumps({"messages": d}) + "\n" for d in dialogues))
    return path


def test_training_run_writes_before_after_evaluation(tiny_model_dir, tmp_path, monkeypatch):
    from chatfreeze.training import recipe as training
    from chatfreeze.training.arguments import parse_args

    # samples.json's 256-token replies are not under test here and cost most of the run on a random model.
    monkeypatch.setattr(training, "generate_reply", lambda *args, **kwargs: "(stub reply)")

    train = write_jsonl(tmp_path / "train.jsonl", DIALOGUES * 4)
    valid = write_jsonl(tmp_path / "valid.jsonl", DIALOGUES)
    general = tmp_path / "general.txt"
    general.write_text(GENERAL_TEXT)
    out = tmp_path / "out"
    metrics = training.run_training(*parse_args([
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(train), "--eval_dataset", str(valid),
        "--num_frozen_layers", "2", "--output_dir", str(out), "--max_steps", "4", "--learning_rate", "1e-2",
        "--per_device_train_batch_size", "4", "--logging_steps", "1", "--eval_strategy", "steps",
        "--eval_steps", "2", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "true",
        "--eval_before_after", "true", "--general_text", str(general), "--general_window", "64",
        "--general_stride", "32", "--general_max_windows", "4", "--generation_eval_samples", "2",
        "--generation_max_new_tokens", "4", "--probe_max_new_tokens", "8",
    ]))
    record = json.loads((out / "evaluation.json").read_text())
    for phase in ("before", "after"):
        # The four of the run's own data, plus the built-in skills probe (keep) that every run reports.
        assert {"support_perplexity", "general_perplexity", "rougeL", "chrf", "skills_accuracy"} <= set(record[phase])
    assert "facts probe: none given (--facts_probe)" in record["not_measured"]
    # A learning rate of 1e-2 on 4 steps must move the support perplexity.
    assert record["after"]["support_perplexity"] != record["before"]["support_perplexity"]
    saved = json.loads((out / "all_results.json").read_text())
    for key in ("before_support_perplexity", "after_support_perplexity", "before_general_perplexity",
                "after_general_perplexity", "general_perplexity_change_pct"):
        assert key in saved and key in metrics
    assert (out / "loss_curves.png").is_file() and (out / "before_after.png").is_file()


@pytest.mark.slow
def test_cli_json(tiny_model_dir, tmp_path):
    csv_path = tmp_path / "bitext.csv"
    csv_path.write_text(
        "instruction,intent,response\n"
        "where is my order,track,\"Your order ships tomorrow, {{Order Number}}.\"\n"
        "i want a refund,refund,\"I've issued the refund.\"\n"
    )
    general = tmp_path / "general.txt"
    general.write_text(GENERAL_TEXT)
    cmd = [sys.executable, "-m", "chatfreeze.evaluate", "--model_name_or_path", str(tiny_model_dir),
           "--dataset", str(csv_path), "--general_text", str(general), "--max_examples", "1",
           "--window", "64", "--stride", "64", "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["support_examples"] == 1 and report["support_tokens"] > 0
    assert 1.0 < report["support_perplexity"] < 1e4 and 1.0 < report["general_perplexity"] < 1e4
    # Every window of the text is reported but its last quarter, held out as the dev split choices read.
    tokens = len(GENERAL_TEXT.encode())
    assert report["window"] == 64 and report["general_windows"] == len(window_spans(tokens - tokens // 4, 64, 64))



def test_cli_user_error_is_one_line(tiny_model_dir, tmp_path, capsys):
    from chatfreeze.cli.errors import run_cli
    from chatfreeze.cli.evaluate import main

    missing = tmp_path / "none.jsonl"
    status = run_cli(lambda: main(["--model_name_or_path", str(tiny_model_dir), "--dataset", str(missing)]))
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and last_line.startswith("error:") and "none.jsonl" in last_line


@pytest.mark.slow
def test_smollm2_base_perplexities_are_plausible(smollm2_path, shared_data):
    """SmolLM2-135M-Instruct on 3 Bitext dialogues and 2 WikiText windows: values in the range such a model has."""
    from chatfreeze.evaluation import evaluate_checkpoint

    bitext = shared_data / "bitext-customer-support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    from chatfreeze.evaluation.checkpoint import HeldOut

    settings = EvaluationArguments(general_text=str(shared_data / "wikitext-2-raw" / "wiki.test.raw"),
                                   general_window=128, general_stride=128, general_max_windows=2,
                                   generation_eval_samples=0, skills_probe="none")
    held_out = HeldOut(str(bitext), max_examples=3)
    result = evaluate_checkpoint(str(smollm2_path), held_out, settings, batch_size=3)
    # The same numbers computed independently: one unpadded forward per dialogue / window, summed NLL of the
    # labelled (assistant) tokens, exp of the token-weighted mean. Batching and padding must not change them.
    support, general = direct_perplexities(smollm2_path, held_out, shared_data / "wikitext-2-raw" / "wiki.test.raw")
    assert result["support_perplexity"] == pytest.approx(support, rel=1e-3)
    assert result["general_perplexity"] == pytest.approx(general, rel=1e-3)
    assert result["general_tokens"] == 2 * 127


def direct_perplexities(model_path, held_out, wiki_path, window: int = 128, windows: int = 2) -> tuple[float, float]:
    """Support and general-text perplexity of the model at ``model_path``, with nothing of chatfreeze's scoring:
    each sequence alone, ``cross_entropy`` of the next token where the label is not -100."""
    import math

    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()

    def nll(ids: list[int], labels: list[int]) -> tuple[float, int]:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1]
        targets = torch.tensor(labels[1:])
        return F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum").item(), int((targets != -100).sum())

    _, dataset, _ = held_out.load(tokenizer, str(model_path))
    support = [nll(row["input_ids"], row["labels"]) for row in dataset]
    ids = tokenizer(wiki_path.read_text()[:20000])["input_ids"]
    # Windows side by side (stride = window): each window's first token has no context and is not scored.
    general = [nll(ids[b:b + window], [-100] + ids[b + 1:b + window]) for b in range(0, windows * window, window)]
    return tuple(math.exp(sum(n for n, _ in parts) / sum(c for _, c in parts)) for parts in (support, general))


def test_half_scores_count_wrong_values_and_neighbour_errors_per_half():
    """The halves are scored in one place: accuracy, questions answered with a wrong value (a reject regex), and
    with a neighbour fact's value (every value pattern of a confusable fact: here express shipping's price asked,
    standard shipping's stated)."""
    from chatfreeze.evaluation.probe_halves import half_scores
    from chatfreeze.evaluation.probes import ProbeItem

    items = [ProbeItem("q1", "Express shipping cost?", "express", expect=[r"\$?12\.99"], reject=[r"\$?4\.99"]),
             ProbeItem("q2", "How much is express?", "express", expect=[r"\$?12\.99"]),
             ProbeItem("q3", "Standard shipping cost?", "standard", expect=[r"\$?4\.99"]),
             ProbeItem("q4", "Your phone number?", "phone", expect=[r"555"])]
    replies = ["It costs $4.99.", "Express is 4.99 dollars.", "It is $4.99.", "Call 123."]
    halves = {"dev": {"q1", "q3"}, "test": {"q2", "q4"}}
    neighbours = {"express": ("standard",), "standard": ("express",), "phone": ()}
    patterns = {"express": (r"12\.99",), "standard": (r"4\.99",), "phone": (r"555",)}
    scores = half_scores(items, replies, halves, neighbours, patterns)
    assert scores == {"facts_dev_accuracy": 0.5, "facts_dev_wrong_values": 1, "facts_dev_neighbour_errors": 1,
                      "facts_test_accuracy": 0.0, "facts_test_wrong_values": 0, "facts_test_neighbour_errors": 1}
    # Without the sheet's neighbours: not measured (the evaluation lists it under not_measured), never 0.
    assert "facts_test_neighbour_errors" not in half_scores(items, replies, halves)


def test_wrong_values_and_neighbour_errors_reach_evaluation_json_the_report_and_the_card_table():
    from chatfreeze.evaluation.metrics_table import BY_KEY, HEADLINE, TEST
    from chatfreeze.evaluation.report import format_report, learn_keep

    for key in ("facts_test_wrong_values", "facts_test_neighbour_errors"):
        assert BY_KEY[key] in HEADLINE and BY_KEY[key].half == TEST and BY_KEY[key].direction == "lower"
    before = {"facts_test_wrong_values": 3, "facts_test_neighbour_errors": 2}
    after = {"facts_test_wrong_values": 1, "facts_test_neighbour_errors": 0}
    report = format_report(learn_keep(before, after))
    assert f"{BY_KEY['facts_test_wrong_values'].label}: 3 -> 1 (-2)" in report
    assert f"{BY_KEY['facts_test_neighbour_errors'].label}: 2 -> 0 (-2)" in report
