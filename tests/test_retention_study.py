"""scripts/retention_study.py's report: a partial rerun keeps the rows it did not measure again."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys

from conftest import REPO_ROOT


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
        writer = csv.DictWriter(handle, fieldnames=[c for c in study.COLUMNS if c != "measured"])
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
    kept = study.previous_rows(out.with_suffix(".csv"))
    assert kept["lora_top6"]["trainable_params"] == 976896 and kept["lora_top6"]["measured"] == "earlier"
    assert (out.with_suffix(".png")).is_file()
