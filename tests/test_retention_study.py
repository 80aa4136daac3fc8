"""scripts/retention_study.py: its variants as commands, its rows read from finished runs, and a partial rerun
that keeps the rows it did not measure again (the runner and the report helpers are tested in test_studies.py)."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys

from conftest import REPO_ROOT

from chatfreeze.studies.results import read_csv


def load_study():
    spec = importlib.util.spec_from_file_location("retention_study", REPO_ROOT / "scripts" / "retention_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_a_rerun_in_a_new_work_dir_keeps_the_earlier_rows_and_the_reading(tmp_path):
    study = load_study()
    out = tmp_path / "docs" / "retention"
    out.parent.mkdir()
    earlier = [
        {"variant": "base", "label": "base model (no training)", "facts_accuracy": 0.12, "support_perplexity": 16.8,
         "skills_accuracy": 0.35, "skills_change_points": 0.0, "self_agreement_ratio": 1.0,
         "general_perplexity": 28.7, "general_change_pct": 0.0},
        {"variant": "lora_top6", "label": "LoRA r=16, on the top 6 blocks", "facts_accuracy": 0.147,
         "support_perplexity": 13.5, "skills_accuracy": 0.294, "skills_change_points": -5.6,
         "self_agreement_ratio": 1.0, "general_perplexity": 28.5, "general_change_pct": -0.8, "train_seconds": 815,
         "tokens_per_second": 99.8, "peak_rss_mib": 4282, "trainable_params": 976896},
    ]
    with open(out.with_suffix(".csv"), "w", newline="") as handle:  # a CSV from before the "measured" column
        writer = csv.DictWriter(handle, fieldnames=["variant", "label", *study.METRICS])
        writer.writeheader()
        writer.writerows(earlier)
    out.with_suffix(".md").write_text("table\n<!-- reading -->\nMy reading.\n<!-- /reading -->\n")
    args = argparse.Namespace(out=str(out), steps=40, threads=2)
    study.write_outputs(args, tmp_path / "empty_work_dir")

    text = out.with_suffix(".md").read_text()
    assert "| LoRA r=16, on the top 6 blocks | 14.7% | 13.5 | 29.4% (-5.6) | 1 | 28.5 (-0.8%) | 815 | 99.8 | 4,282 | " \
           "976,896 | earlier |" in text
    assert "| base model (no training) |" in text and "My reading." in text
    assert "Not measured yet" in text and "freeze80," in text.split("Not measured yet")[1]
    kept = read_csv(out.with_suffix(".csv"))
    assert kept["lora_top6"].get("trainable_params") == 976896 and kept["lora_top6"].measured == "earlier"
    assert (out.with_suffix(".png")).is_file()


def finish(work, name: str, after: dict, trained: bool) -> None:
    """What a finished variant leaves in the work dir (the numbers are made up)."""
    out = work / name
    out.mkdir(parents=True)
    before = {"facts_accuracy": 0.1, "skills_accuracy": 0.4, "general_perplexity": 28.0}
    change = {"skills_accuracy_change_points": 2.0, "general_perplexity_change_pct": 1.5}
    (out / "evaluation.json").write_text(json.dumps({"before": before, "after": after, "change": change}))
    (work / f"{name}.process.json").write_text(json.dumps({"wall_seconds": 9.0, "peak_rss_mib": 2047.6}))
    if trained:
        (out / "all_results.json").write_text(json.dumps({"train_runtime": 200.4}))
        (out / "trainer_state.json").write_text(json.dumps({"log_history": [{"num_input_tokens_seen": 50000}]}))
        (out / "freeze_plan.json").write_text(json.dumps({"trainable_parameters": 21241152}))


def test_rows_come_from_finished_runs_and_an_interpolation_shows_its_source_training(tmp_path):
    study = load_study()
    work = tmp_path / "work"
    finish(work, "freeze80", {"facts_accuracy": 0.2, "general_perplexity": 28.4}, trained=True)
    finish(work, "freeze80_alpha0.5", {"facts_accuracy": 0.25}, trained=False)
    (work / "freeze50").mkdir()  # started, never finished: no row
    (work / "freeze50" / "evaluation.json").write_text("{}")
    variants = {variant.name: variant for variant in study.VARIANTS}

    row = study.read_row(variants["freeze80"], work)
    assert row.metrics["train_seconds"] == 200 and row.metrics["tokens_per_second"] == 249.5
    assert row.metrics["peak_rss_mib"] == 2048 and row.metrics["skills_change_points"] == 2.0
    merged = study.read_row(variants["freeze80_alpha0.5"], work)
    assert merged.get("facts_accuracy") == 0.25 and merged.get("trainable_params") == 21241152
    assert merged.get("train_seconds") == 200 and study.read_row(variants["freeze50"], work) is None
    base = study.base_row(work)
    assert base.get("facts_accuracy") == 0.1 and base.get("general_change_pct") == 0.0

    args = argparse.Namespace(steps=40, general_text="wiki.test.raw")
    merge, evaluate = study.commands(variants["freeze80_alpha0.5"], args, work)
    assert merge[-4:] == [str(work / "freeze80"), str(work / "freeze80_alpha0.5.model"), "--alpha", "0.5"]
    assert evaluate[2] == "chatfreeze.evaluate" and evaluate[evaluate.index("--output_dir") + 1] == str(
        work / "freeze80_alpha0.5")
    (train,) = study.commands(variants["freeze80_kl"], args, work)
    assert train[train.index("--output_dir") - 4:train.index("--output_dir")] == [
        "--num_frozen_layers", "24", "--kl_to_base", "0.5"]  # after the common "--kl_to_base 0": it wins
