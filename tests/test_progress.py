"""Progress of the long loops: log lines with counts and the time left when stderr is no terminal, a bar when it
is one, nothing when switched off; greedy replies (each evaluation probe) and replay generation show it."""

from __future__ import annotations

import logging
import time

import pytest

from chatfreeze import progress as progress_module
from chatfreeze.progress import Progress, progress


class FakeTime:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def logged(monkeypatch, caplog):
    """Progress on, log lines (no terminal), the heartbeat asleep; returns the progress log's messages."""
    monkeypatch.setattr(progress_module, "_enabled", True)
    monkeypatch.setattr(progress_module, "on_terminal", lambda: False)
    monkeypatch.setattr(progress_module, "HEARTBEAT_SECONDS", 3600.0)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    caplog.set_level(logging.INFO, logger="chatfreeze.progress")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "chatfreeze.progress"]


def test_progress_logs_counts_and_the_time_left_at_each_tenth(monkeypatch, logged):
    clock = FakeTime()
    monkeypatch.setattr(progress_module, "time", clock)
    seen = []
    for item in progress(range(20), "Facts probe", unit="replies"):
        clock.now += 2.0  # 2 s a reply: a tenth (2 replies) every 4 s, a line at most every 5 s
        seen.append(item)
    assert seen == list(range(20))
    assert logged() == ["Facts probe: 4/20 replies, 8 s, about 32 s left",
                        "Facts probe: 8/20 replies, 16 s, about 24 s left",
                        "Facts probe: 12/20 replies, 24 s, about 16 s left",
                        "Facts probe: 16/20 replies, 32 s, about 8 s left",
                        "Facts probe: 20/20 replies in 40 s."]


def test_progress_logs_every_30_seconds_without_a_total_and_nothing_for_a_short_phase(monkeypatch, logged):
    clock = FakeTime()
    monkeypatch.setattr(progress_module, "time", clock)
    with Progress("Delta", unit="tensors") as shown:
        for _ in range(7):
            clock.now += 10.0
            shown.update(3)
    assert logged() == ["Delta: 9 tensors, 30 s", "Delta: 18 tensors, 60 s", "Delta: 21 tensors in 70 s."]
    for _ in progress(range(100), "Short", unit="batches"):
        clock.now += 0.04  # 4 s in all: under FIRST_LINE_AFTER
    assert len(logged()) == 3
    with pytest.raises(KeyError), Progress("Failing", 2) as shown:
        clock.now += 60.0
        raise KeyError("x")  # no "done" line for a phase that failed
    assert len(logged()) == 3


def test_progress_is_silent_when_switched_off_or_not_the_main_process(monkeypatch, logged, capsys):
    monkeypatch.setattr(progress_module, "FIRST_LINE_AFTER", 0.0)
    progress_module.set_enabled(False)
    assert list(progress(range(5), "Off")) == list(range(5))
    progress_module.set_enabled(True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(progress_module, "on_terminal", lambda: True)
    assert list(progress(range(5), "Other rank")) == list(range(5))
    assert list(progress(range(5), None)) == list(range(5))  # no name: nothing shown
    assert logged() == [] and capsys.readouterr().err == ""


def test_progress_draws_a_bar_on_a_terminal(monkeypatch, logged, capsys):
    monkeypatch.setattr(progress_module, "on_terminal", lambda: True)
    assert list(progress(range(3), "Support perplexity", unit="batches")) == [0, 1, 2]
    assert "Support perplexity" in capsys.readouterr().err and logged() == []


def test_the_heartbeat_logs_while_one_step_runs_long(monkeypatch, logged):
    monkeypatch.setattr(progress_module, "FIRST_LINE_AFTER", 0.05)
    monkeypatch.setattr(progress_module, "HEARTBEAT_SECONDS", 0.01)
    with Progress("Replay generation", 2, "replies") as shown:
        deadline = time.monotonic() + 10
        while not logged() and time.monotonic() < deadline:
            time.sleep(0.01)
        shown.update(2)
    assert logged()[0].startswith("Replay generation: 0/2 replies, 0 s")  # no estimate before a reply is done
    assert logged()[-1].startswith("Replay generation: 2/2 replies in ")


def test_greedy_replies_show_progress_and_the_same_replies(monkeypatch, logged, tiny):
    from chatfreeze.evaluation.generation_metrics import greedy_replies

    monkeypatch.setattr(progress_module, "FIRST_LINE_AFTER", 0.0)
    model, tokenizer = tiny
    conversations = [[{"role": "user", "content": text}] for text in ("Hi", "Where is my order?", "Refund", "x" * 20)]
    quiet = greedy_replies(model, tokenizer, conversations, 3, batch_size=2)
    assert logged() == []
    shown = greedy_replies(model, tokenizer, conversations, 3, batch_size=2, what="Facts probe (before)")
    assert shown == quiet
    lines = logged()
    assert lines[0].startswith("Facts probe (before): 2/4 replies, ") and lines[0].endswith(" left")
    assert lines[-1].startswith("Facts probe (before): 4/4 replies in ")


def test_replay_generation_says_what_it_does_and_shows_progress(monkeypatch, logged, caplog, tiny):
    from chatfreeze.retention.replay import BaseReplies, replay_prompts

    monkeypatch.setattr(progress_module, "FIRST_LINE_AFTER", 0.0)
    caplog.set_level(logging.INFO, logger="chatfreeze.retention.replay")
    model, tokenizer = tiny
    pool = replay_prompts()[:6]
    replies = BaseReplies(model, tokenizer, pool, max_new_tokens=2, batch_size=4)(pool)
    assert len(replies) == 6
    assert "Replay: the base model answers 6 pool prompt(s) now (greedy, up to 2 new tokens each; no cache)." in \
        caplog.messages
    lines = logged()
    assert lines[0].startswith("Replay generation: 3/6 replies, ")  # 6 prompts in batches of up to 4: 3 + 3
    assert lines[-1].startswith("Replay generation: 6/6 replies in ")


def test_every_named_phase_is_timed_nested_and_merged_when_repeated():
    from chatfreeze import timings

    timings.reset()
    with timings.phase("Evaluation before"):
        for _ in progress(range(3), "Skills probe (before)", unit="replies"):
            time.sleep(0.01)
        with Progress("Replay generation", 2, "replies") as shown:
            shown.update(2)
        with Progress("Replay generation", 1, "replies") as shown:
            shown.update(1)
    timings.note_cached("Plain-text replay generation", passages=200)
    records = timings.to_dict()
    assert [(r["phase"], r["depth"]) for r in records] == [
        ("Evaluation before", 0), ("Skills probe (before)", 1), ("Replay generation", 1),
        ("Plain-text replay generation", 0)]
    assert records[1]["wall_s"] >= 0.03 and records[0]["wall_s"] >= records[1]["wall_s"]
    assert records[2]["runs"] == 2 and "runs" not in records[1]
    assert records[3]["cached"] is True and records[3]["passages"] == 200
    table = timings.format_table(total_wall_s=10.0)
    assert "  Skills probe (before)" in table and "from the cache, passages 200" in table
    assert table.splitlines()[-1].split() == ["total", "10.0"]
    timings.reset()
    assert timings.to_dict() == []
