"""chatfreeze.studies: the runner resumes (finished variants skipped, unfinished ones run again), rows carry over
from an earlier CSV with when they were measured, and a regenerated doc keeps its hand-written reading. The
variants here are tiny Python commands, not training runs."""

from __future__ import annotations

import csv
import logging
import sys

import pytest

from chatfreeze.studies import results
from chatfreeze.studies.results import Column, Panel, Row
from chatfreeze.studies.runner import Runner, Variant, read_record, select

# Appends "x" to the file argv[1] (a count of runs), then exits with argv[2].
COUNT_AND_EXIT = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
                  "p.write_text((p.read_text() if p.exists() else '') + 'x'); print('ran', p.name); "
                  "sys.exit(int(sys.argv[2]))")


def counting_commands(tmp_path, exit_codes: dict[str, int]):
    def commands(variant: Variant) -> list[list[str]]:
        code = str(exit_codes.get(variant.name, 0))
        return [[sys.executable, "-c", COUNT_AND_EXIT, str(tmp_path / f"{variant.name}.count"), code]]

    return commands


def runs(tmp_path, name: str) -> int:
    path = tmp_path / f"{name}.count"
    return len(path.read_text()) if path.exists() else 0


def test_a_rerun_skips_finished_variants_and_runs_unfinished_ones_again(tmp_path):
    work = tmp_path / "work"
    variants = [Variant("a", "A", ("--x", "1")), Variant("b", "B"), Variant("c", "C from b", source="b")]
    refreshed = []
    runner = Runner(work, cwd=tmp_path)
    with pytest.raises(SystemExit, match=r"\[b\] failed \(exit 3\); see .*b\.log"):
        runner.run_all(variants, counting_commands(tmp_path, {"b": 3}), after_each=lambda: refreshed.append(1))
    assert (runs(tmp_path, "a"), runs(tmp_path, "b"), runs(tmp_path, "c")) == (1, 1, 0)
    assert runner.is_done("a") and not runner.is_done("b") and refreshed == [1]
    assert "ran b.count" in (work / "b.log").read_text()  # the failed command's output stays in its log

    runner.run_all(variants, counting_commands(tmp_path, {}), after_each=lambda: refreshed.append(1))
    assert (runs(tmp_path, "a"), runs(tmp_path, "b"), runs(tmp_path, "c")) == (1, 2, 1)  # a skipped
    assert refreshed == [1, 1, 1]
    record = read_record(work, "c")
    assert record["wall_seconds"] > 0 and record["peak_rss_mib"] > 0 and "c.count" in record["command"]

    runner.run_all(variants, counting_commands(tmp_path, {}), after_each=lambda: refreshed.append(1))
    assert (runs(tmp_path, "a"), runs(tmp_path, "b"), runs(tmp_path, "c")) == (1, 2, 1) and len(refreshed) == 3


def test_a_variant_waits_for_its_source_and_a_dry_run_runs_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="chatfreeze.studies.runner")
    work = tmp_path / "work"
    Runner(work).run_all([Variant("merged", "M", source="trained")], counting_commands(tmp_path, {}))
    assert "[merged] needs trained first; skipped" in caplog.text and runs(tmp_path, "merged") == 0

    Runner(work, dry_run=True).run_all([Variant("trained", "T")], counting_commands(tmp_path, {}))
    assert f"[trained] {sys.executable} -c" in caplog.text
    assert runs(tmp_path, "trained") == 0 and read_record(work, "trained") is None


def test_a_child_gets_the_thread_count_and_environment(tmp_path):
    command = [sys.executable, "-c", "import os; print(os.environ['OMP_NUM_THREADS'], os.environ['STUDY'])"]
    runner = Runner(tmp_path, threads=3, env={"STUDY": "yes"})
    assert runner.run(Variant("env", "E"), [command])
    assert (tmp_path / "env.log").read_text().split() == ["3", "yes"]


def test_select_keeps_the_study_order_and_names_an_unknown_variant():
    variants = [Variant("one", "1"), Variant("two", "2"), Variant("three", "3")]
    assert [v.name for v in select(variants, None)] == ["one", "two", "three"]
    assert [v.name for v in select(variants, ["three", "one"])] == ["one", "three"]
    assert select(variants, []) == []
    with pytest.raises(ValueError, match="--only four: unknown variant; choose from one, three, two."):
        select(variants, ["two", "four"])
    assert Variant("v", "V", ["--a", "1"]).overrides == ("--a", "1")  # a list is kept as a tuple


def test_rows_missing_now_are_carried_from_the_earlier_csv_with_when_they_were_measured(tmp_path):
    path = tmp_path / "study.csv"
    with path.open("w", newline="") as handle:  # a CSV from before the `measured` column
        writer = csv.writer(handle)
        writer.writerow(["variant", "label", "accuracy", "seconds", "reply"])
        writer.writerows([["base", "the base", "0.25", "", "hello"], ["old", "kept, with a comma", "0.5", "815", ""],
                          ["again", "measured before", "0.1", "10", "x"]])
    earlier = results.read_csv(path)
    assert earlier["old"] == Row("old", "kept, with a comma", {"accuracy": 0.5, "seconds": 815, "reply": None})
    assert earlier["base"].get("seconds") is None and earlier["base"].measured == "earlier"
    fresh = {"again": Row("again", "measured now", {"accuracy": 0.75, "seconds": 12}, "2026-12-04"),
             "new": Row("new", "new", {"accuracy": 1.0, "seconds": 3}, "2026-12-04")}
    rows = results.collect_rows(["base", "old", "again", "new", "never"], fresh.get, earlier)
    assert [(row.variant, row.measured) for row in rows] == [
        ("base", "earlier"), ("old", "earlier"), ("again", "2026-12-04"), ("new", "2026-12-04")]
    results.write_csv(rows, path, ["accuracy", "seconds"])
    lines = path.read_text().splitlines()
    assert lines[0] == "variant,label,accuracy,seconds,measured"
    assert lines[2] == 'old,"kept, with a comma",0.5,815,earlier' and lines[3] == "again,measured now,0.75,12,2026-12-04"
    again = results.read_csv(path)  # and back: the next rerun carries them the same way
    assert again["old"].get("seconds") == 815 and again["new"].measured == "2026-12-04"


def test_a_regenerated_doc_keeps_the_hand_written_reading(tmp_path):
    doc = tmp_path / "study.md"
    results.write_doc(doc, ["# Study", "", "| table v1 |", ""], "(to be written)", tail=["", "after"])
    assert doc.read_text() == "# Study\n\n| table v1 |\n\n<!-- reading -->\n(to be written)\n<!-- /reading -->\n\nafter\n"
    hand = doc.read_text().replace("(to be written)", "\nWhat we found:\n\n- it | has | pipes\n")
    doc.write_text(hand)
    results.write_doc(doc, ["# Study", "", "| table v2 |", ""], "(to be written)")
    text = doc.read_text()
    assert "| table v2 |" in text and "table v1" not in text and "after" not in text
    assert "<!-- reading -->\nWhat we found:\n\n- it | has | pipes\n<!-- /reading -->\n" in text
    doc.write_text("a doc without markers\n")
    assert results.previous_reading(doc, "(none)") == "(none)"


def test_tables_and_plot_read_the_metrics_dict(tmp_path):
    rows = [Row("base", "the base", {"learn": 0.12, "keep": 0.0, "params": None}, "2026-12-01"),
            Row("big", "a big one", {"learn": 0.3, "keep": -2.5, "params": 134515008}),
            Row("partial", "no keep metric", {"learn": 0.2})]
    columns = [Column("variant", lambda row: row.label), Column("learn", lambda row: results.fmt(row.get("learn"), "pct")),
               Column("keep", lambda row: results.fmt(row.get("keep"), "signed"), "---:"),
               Column("trainable", lambda row: results.fmt(row.get("params"))), Column("measured", lambda row: row.measured)]
    assert results.markdown_table(rows, columns) == [
        "| variant | learn | keep | trainable | measured |", "|---|---|---:|---|---|",
        "| the base | 12.0% | +0.0 | – | 2026-12-01 |", "| a big one | 30.0% | -2.5 | 134,515,008 | earlier |",
        "| no keep metric | 20.0% | – | – | earlier |"]
    assert [results.fmt(v) for v in (3.14159, 1234.5, 7, "text")] == ["3.14", "1,234", "7", "text"]
    plot = tmp_path / "plot.png"
    results.write_scatter(rows, plot, "learn", "learn (%)", [Panel("keep", "keep"), Panel("keep", "keep", True)], "t")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
