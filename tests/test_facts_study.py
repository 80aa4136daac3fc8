"""The facts study's reading of a run: the probe's halves from per-question replies, wrong values, the goals."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO_ROOT


def load_study():
    spec = importlib.util.spec_from_file_location("facts_study", REPO_ROOT / "scripts" / "facts_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_halves_and_wrong_values_come_from_the_replies():
    study = load_study()
    items = [json.loads(line) for line in (REPO_ROOT / "data" / "facts_probe.jsonl").read_text().splitlines()]
    replies = {item["id"]: "-" for item in items}
    evaluation = {"probes": {"after": {"facts": {"replies": replies}}}}
    nothing = study.halves_of(evaluation, "after")
    assert nothing["facts_test_accuracy"] == 0.0 and nothing["facts_dev_accuracy"] == 0.0
    assert nothing["facts_test_wrong_values"] == 0
    from chatfreeze.evaluation.probe_halves import facts_halves
    from chatfreeze.evaluation.probes import load_facts_probe

    halves = facts_halves(load_facts_probe(str(REPO_ROOT / "data" / "facts_probe.jsonl")))
    assert len(halves["dev"]) + len(halves["test"]) == len(items)
    # A wrong return window on both return_window questions: one of them is on the test half (fact-balanced).
    for item in items:
        if item["fact"] == "return_window" and item["reject"]:
            replies[item["id"]] = "You can return it within 14 days."
    wrong = study.halves_of(evaluation, "after")["facts_test_wrong_values"]
    assert wrong == sum(1 for item in items if item["fact"] == "return_window" and item["reject"]
                        and item["id"] in halves["test"]) >= 1


def test_goals():
    study = load_study()
    good = {"facts_test_accuracy": 0.92, "facts_test_wrong_values": 1, "skills_change_points": -1.5,
            "self_agreement_ratio": 1.05, "general_change_pct": 1.9}
    assert study.meets_goals(good) == "yes"
    assert study.meets_goals(good | {"general_change_pct": 2.5}) == "no (4/5)"
    assert study.meets_goals(good | {"skills_change_points": 0.0}) == "yes"  # no change is within the goal
    assert study.meets_goals({}) == "no (0/5)"  # nothing measured: no goal holds, the wrong values' included
    assert study.meets_goals({k: v for k, v in good.items() if k != "facts_test_wrong_values"}) == "no (4/5)"


def test_time_to_a_good_bot_is_the_first_curve_point_that_meets_every_goal():
    study = load_study()
    before = {"skills_accuracy": 0.35, "general_perplexity": 28.0}
    good = {"facts_dev_accuracy": 0.91, "skills_accuracy": 0.34, "self_agreement_ratio": 1.05,
            "general_perplexity": 28.5}
    points = [good | {"train_seconds": 100.0, "facts_dev_accuracy": 0.6},  # facts not learned yet
              good | {"train_seconds": 200.0, "general_perplexity": 28.6},  # +2.1%: forgot plain text
              good | {"train_seconds": 300.0, "skills_accuracy": 0.32},  # short answers −3 points
              good | {"train_seconds": 400.0},
              good | {"train_seconds": 500.0}]
    assert study.time_to_good_bot(points, before) == 400.0
    assert study.time_to_good_bot(points[:3], before) is None
    # A point without the short answers (a run from before they were on the curve) fails that goal.
    assert study.time_to_good_bot([{k: v for k, v in points[3].items() if k != "skills_accuracy"}], before) is None
    assert study.time_to_good_bot([], before) is None


def test_a_row_reads_its_time_to_a_good_bot_and_the_doc_lists_its_curve(tmp_path):
    from chatfreeze.studies.runner import record_path

    study = load_study()
    variant = next(v for v in study.VARIANTS if v.name == "full_drills60_text")
    out = tmp_path / variant.name
    out.mkdir()
    record_path(tmp_path, variant.name).write_text(json.dumps({"wall_seconds": 120.4}))
    before = {"skills_accuracy": 0.35, "general_perplexity": 28.0, "self_agreement_ratio": 1.0}
    (out / "evaluation.json").write_text(json.dumps({"before": before, "after": before, "change": {}}))
    (out / "all_results.json").write_text(json.dumps({"train_runtime": 100.0}))
    (out / "trainer_state.json").write_text(json.dumps({"log_history": []}))
    (out / "freeze_plan.json").write_text(json.dumps({"trainable_parameters": 10}))
    point = {"skills_accuracy": 0.35, "general_perplexity": 28.1, "self_agreement_ratio": 1.0}
    points = [point | {"step": 5, "train_seconds": 50.0, "facts_dev_accuracy": 0.5},
              point | {"step": 10, "train_seconds": 99.6, "facts_dev_accuracy": 0.95}]
    (out / "learning_curves.json").write_text(json.dumps({"points": points}))
    row = study.read_row(variant, tmp_path)
    assert row.metrics["time_to_good_bot"] == 100 and row.metrics["wall_seconds"] == 120
    assert study.curve_lines(tmp_path, [row]) == ["- full_drills60_text: 50 s: 50.0% / 35.0% / 28.1 · "
                                                  "99.6 s: 95.0% / 35.0% / 28.1"]
    (out / "learning_curves.json").write_text(json.dumps({"points": points[:1]}))
    assert study.read_row(variant, tmp_path).metrics["time_to_good_bot"] == "not reached"
    (out / "learning_curves.json").unlink()
    assert study.read_row(variant, tmp_path).metrics["time_to_good_bot"] == "no curve"


def test_a_row_on_real_text_reads_the_general_texts_second_half_which_no_keep_figure_scores(tmp_path):
    """The row that keeps plain text with real text gets ``--text_replay`` = the second half of ``--general_text``,
    written into the work dir once: disjoint from the reported windows and the dev split (the text's start)."""
    study = load_study()
    general = tmp_path / "wiki.raw"
    general.write_text("".join(f"line {i}\n" for i in range(1000)))
    args = study.parse_args(["--general_text", str(general)])
    row = next(v for v in study.VARIANTS if study.WIKITEXT_REPLAY in v.overrides)
    command = study.commands(row, args, tmp_path / "work")[0]
    replay = command[command.index("--text_replay") + 1]
    assert replay == str(tmp_path / "work" / study.WIKITEXT_REPLAY)
    text, half = general.read_text(), (tmp_path / "work" / study.WIKITEXT_REPLAY).read_text()
    assert text.endswith(half) and len(half) == len(text) - len(text) // 2 and "line 0\n" not in half
    others = [v for v in study.VARIANTS if study.WIKITEXT_REPLAY not in v.overrides]
    assert all("--text_replay" not in study.commands(v, args, tmp_path / "w2")[0] for v in others)
