"""The one metric table (``chatfreeze.evaluation.metrics_table``): every metric the evaluator produces has a row,
every reader takes its labels and kinds of change from it (no other table of metrics, no guessing a metric's kind
from its name), and the one change formatter writes each kind as the report always has."""

from __future__ import annotations

import ast
import json

import pytest
from conftest import REPO_ROOT, build_chatml_tokenizer, build_tiny_model

from chatfreeze.evaluation import metrics_table
from chatfreeze.evaluation.metrics_table import (
    BY_KEY,
    HEADLINE,
    KEEP,
    LEARN,
    METRICS,
    describe,
    format_change,
    format_value,
)

PACKAGE = REPO_ROOT / "chatfreeze"
TABLE_FILE = PACKAGE / "evaluation" / "metrics_table.py"
# Every place a metric is shown or its change computed; each must import the table.
CONSUMERS = ("evaluation/report.py", "evaluation/before_after.py", "evaluation/plots.py", "publish/card.py",
             "chat/web.py", "cli/evaluate.py")
# Words of metric names that a reader guessing a metric's kind from its name would match on.
NAME_PARTS = {"perplexity", "accuracy", "ratio", "nll", "general", "skills", "facts", "self_agreement", "support"}


def test_every_metric_the_evaluator_measures_has_a_row_and_is_reported(tmp_path, monkeypatch):
    from chatfreeze.evaluation import BeforeAfterEvaluator, EvaluationArguments, support_dataset
    from chatfreeze.evaluation.report import learn_keep

    tokenizer = build_chatml_tokenizer()
    base, tuned = build_tiny_model("llama", num_layers=2).eval(), build_tiny_model("llama", num_layers=2, seed=1).eval()
    dialogues = [[{"role": "user", "content": "Where is my order?"},
                  {"role": "assistant", "content": "It ships tomorrow."}]] * 2
    general = tmp_path / "general.txt"
    general.write_text("The quick brown fox jumps over the lazy dog. " * 20)
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(json.dumps({"id": i, "fact": "hours", "question": f"When are you open ({i})?",
                                         "expect": ["08:00"]}) + "\n" for i in "ab"))  # both halves of the probe
    settings = EvaluationArguments(general_text=str(general), general_window=32, general_stride=32,
                                   general_max_windows=2, generation_eval_samples=1, generation_max_new_tokens=3,
                                   facts_probe=str(facts), skills_probe="builtin", probe_max_new_tokens=3)
    # A random tiny model may reply with nothing; self-agreement needs replies to score.
    monkeypatch.setattr("chatfreeze.evaluation.before_after.greedy_replies",
                        lambda model, tok, conversations, *a: ["Paris, I think."] * len(conversations))
    from chatfreeze.evaluation.probes import ProbeItem

    drilled = [ProbeItem("hours/drilled-1", "Opening hours?", "hours", ["08:00"])]  # with --facts
    evaluator = BeforeAfterEvaluator(tokenizer, settings, support_dataset(dialogues, tokenizer, max_length=128),
                                     dialogues, drilled=drilled, neighbours={"hours": ()},
                                     fact_patterns={"hours": ("08:00",)})
    before, after = evaluator.measure(base, "before"), evaluator.measure(tuned, "after")
    measured = set(before) | set(after) | set(evaluator.measure_teacher_forced(tuned))
    assert not evaluator.skipped, evaluator.skipped
    # facts_dev_accuracy_if_kept is the learning curves' (training.curves), made of two measures the evaluator has.
    assert measured | {"facts_dev_accuracy_if_kept"} == set(BY_KEY), "a metric without a row, or a row nothing makes"
    reported = learn_keep(before, after)
    assert set(reported[LEARN]) | set(reported[KEEP]) == {m.key for m in HEADLINE}
    assert all(key in reported[describe(key).side] for key in reported[LEARN] | reported[KEEP])


def test_lm_eval_metrics_are_kept_and_named_from_their_task():
    from chatfreeze.evaluation.lm_eval import PREFIX

    metric = describe(f"{PREFIX}hellaswag:acc")
    assert (metric.side, metric.label, metric.card_label) == (KEEP, "hellaswag:acc (lm-eval)", f"{PREFIX}hellaswag:acc")
    assert format_change(metric.key, 0.25, 0.3) == "+0.05" and metric.direction_text == ""


def test_the_table_is_well_formed():
    assert len(BY_KEY) == len(METRICS)
    for metric in METRICS:
        assert metric.side in (LEARN, KEEP) and metric.direction in ("higher", "lower")
        assert metric.kind in (metrics_table.POINTS, metrics_table.RELATIVE, metrics_table.ABSOLUTE,
                               metrics_table.RATIO)
        assert metric.label and metric.card_label and metric.name and metric.hub_type
    with pytest.raises(ValueError, match="points needs a fraction"):
        metrics_table.Metric("x", LEARN, metrics_table.POINTS, "higher", "score", "x", "x", "x", "x", "support")
    # The plot panels' titles as they were before the table existed (and the facts probe's test half, since).
    assert {m.key: m.plot_title for m in HEADLINE if m.plotted} == {
        "facts_accuracy": "company facts right\n(learn, higher is better)",
        "facts_test_accuracy": "company facts right (test half)\n(learn, test half, higher is better)",
        "facts_test_wrong_values": "wrong values stated (test half)\n(lower is better)",
        "facts_test_neighbour_errors": "neighbour's value stated (test half)\n(lower is better)",
        "support_perplexity": "support perplexity\n(held-out, lower is better)",
        "rougeL": "ROUGE-L\n(higher is better)",
        "chrf": "chrF\n(higher is better)",
        "skills_accuracy": "general short answers right\n(keep, higher is better)",
        "general_perplexity": "general-text perplexity\n(forgetting, lower is better)",
    }


@pytest.mark.parametrize(("key", "before", "after", "value", "change"), [
    ("facts_accuracy", 0.3, 0.9, "30.0%", "+60.0 points"),
    ("support_perplexity", 40.0, 10.0, "40", "-75.0%"),
    ("general_perplexity", 20.0, 21.0, "20", "+5.0%"),
    ("rougeL", 0.1, 0.3, "0.1", "+0.2"),
    ("chrf", 20.0, 35.47, "20", "+15.5"),
    ("self_agreement_ratio", 1.0, 1.07, "1.000", ""),  # already relative to the base
])
def test_one_change_formatter_for_every_kind(key, before, after, value, change):
    assert format_value(key, before) == value
    assert format_change(key, before, after) == change
    assert format_change(key, None, after) == ""


def test_the_web_panel_reads_the_table(tmp_path):
    """Its labels are the table's short names, not ones made from the keys: a renamed row shows in the panel."""
    from chatfreeze.chat.web import learn_keep_markdown
    from chatfreeze.evaluation.report import learn_keep

    before = {"facts_test_accuracy": 0.3, "chrf": 20.0, "self_agreement_ratio": 1.0}
    after = {"facts_test_accuracy": 0.9, "chrf": 35.47, "self_agreement_ratio": 1.07}
    (tmp_path / "evaluation.json").write_text(json.dumps({"learn_keep": learn_keep(before, after)}))
    panel = learn_keep_markdown(str(tmp_path))
    for side, key, values in (("learn", "facts_test_accuracy", "30.0% | 90.0%"), ("learn", "chrf", "20 | 35.47"),
                              ("keep", "self_agreement_ratio", "1.000 | 1.070")):
        assert f"| {side} | {BY_KEY[key].name} | {values} |" in panel
        assert key.replace("_", " ") not in panel  # nothing made from the key
    assert "| learn | company facts right (test half) | 30.0% | 90.0% |" in panel


def _is_metric(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value in BY_KEY


def _is_label(node: ast.AST | None) -> bool:
    """A string, or a tuple/list holding one (a row of labels)."""
    if isinstance(node, (ast.Tuple, ast.List)):
        return any(_is_label(element) for element in node.elts)
    return isinstance(node, ast.JoinedStr) or isinstance(node, ast.Constant) and isinstance(node.value, str)


def offences(root) -> list[str]:
    """Tables of metrics outside ``metrics_table`` (a dict giving two metrics or more a label, a literal listing
    more than three metrics) and guesses of a metric's kind from its name (``key.endswith("perplexity")``)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == TABLE_FILE.name or "metrics" in path.relative_to(root).parts:
            continue
        where = path.relative_to(root)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict) and sum(
                    _is_metric(k) and _is_label(v) for k, v in zip(node.keys, node.values, strict=True)) > 1:
                found.append(f"{where}:{node.lineno}: a dict of metric labels")
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and sum(map(_is_metric, node.elts)) > 3:
                found.append(f"{where}:{node.lineno}: a list of metrics")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("endswith", "startswith") and any(
                    isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.strip("_") in NAME_PARTS
                    for arg in node.args for n in ast.walk(arg)):
                found.append(f"{where}:{node.lineno}: a metric's kind guessed from its name")
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and \
                    node.left.value in NAME_PARTS and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
                found.append(f"{where}:{node.lineno}: a metric's kind guessed from its name")
    return found


def test_every_reader_takes_its_metrics_from_the_table():
    assert not offences(PACKAGE), offences(PACKAGE)
    for consumer in CONSUMERS:
        imported = {node.module for node in ast.walk(ast.parse((PACKAGE / consumer).read_text()))
                    if isinstance(node, ast.ImportFrom)}
        assert imported & {"metrics_table", "evaluation.metrics_table"}, f"{consumer} does not read the table"


def test_the_check_sees_a_second_table(tmp_path):
    (tmp_path / "card.py").write_text(
        'LABELS = {"support_perplexity": ("Support perplexity", "lower"), "chrf": f"chrF {1}"}\n'
        'ORDER = ("support_perplexity", "general_perplexity", "rougeL", "chrf")\n'
        'def relative(key):\n    return key.endswith("perplexity") or "accuracy" in key\n')
    assert [line.split(": ", 1)[1] for line in offences(tmp_path)] == [
        "a dict of metric labels", "a list of metrics", "a metric's kind guessed from its name",
        "a metric's kind guessed from its name"]


def test_learn_keep_plot_shows_the_test_half_the_report_calls_learned():
    """"Learned" is one figure: the plot's learn axis is the test half (as the log and the card), the whole probe
    only where the probe had no halves."""
    from chatfreeze.evaluation.plots import learn_keep_points

    before = {"facts_accuracy": 0.10, "facts_test_accuracy": 0.125, "skills_accuracy": 0.5}
    after = {"facts_accuracy": 0.59, "facts_test_accuracy": 0.625, "skills_accuracy": 0.45}
    keep, learn, points = learn_keep_points({"before": before, "after": after})
    assert (keep, learn) == ("skills_accuracy", "facts_test_accuracy")
    assert points["tuned"] == pytest.approx((45.0, 62.5))
    whole = {side: {k: v for k, v in values.items() if k != "facts_test_accuracy"}
             for side, values in (("before", before), ("after", after))}
    assert learn_keep_points(whole)[1] == "facts_accuracy"
