"""chatfreeze.facts: the facts sheet (loading and every error), drills (planned by fact, deterministic, labelled
on the answer only), the exposure report and its command, the probe split, the probe-overlap detector, and the
Kestrel & Co. sheet in data/facts.yaml."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections import Counter

import pytest
import yaml
from conftest import REPO_ROOT

from chatfreeze.data import DialogueCollator
from chatfreeze.data.schema import IGNORE_INDEX
from chatfreeze.facts import (
    FactsArguments,
    FactsSheetError,
    count_exposures,
    drills_dataset,
    facts_dataset,
    find_overlaps,
    load_facts_sheet,
    normalise,
    plan_drills,
    render_drills,
    split_probe,
)
from chatfreeze.facts.drills import common_system_prompt
from chatfreeze.facts.overlap import compare

KESTREL_SHEET = REPO_ROOT / "data" / "facts.yaml"
PROBE_FILE = REPO_ROOT / "data" / "facts_probe.jsonl"
README = REPO_ROOT / "data" / "README.md"
SYSTEM = "You are the assistant of a small shop."


def small_sheet() -> dict:
    """Two facts: one with details, reverse and not_done entries, one plain; openers given."""
    return {
        "company": "Test Shop",
        "openers": ["", "Hi!"],
        "facts": [
            {"id": "phone", "value": "+44 20 7946 0000", "patterns": [r"7946\s*0000"],
             "questions": ["What is your phone number?", "How do I call you?", "number pls"],
             "answers": ["Call us on +44 20 7946 0000.", "Our number is +44 20 7946 0000."],
             "details": [{"questions": ["When is the phone line open?"],
                       "answers": ["+44 20 7946 0000 is staffed on weekdays."]}],
             "reverse": [{"questions": ["Is +44 20 7946 0000 your number?"],
                          "answers": ["Yes, +44 20 7946 0000 is our number."]}],
             "not_done": [{"what": "call-backs", "questions": ["Can you call me back?"],
                           "answers": ["We don't call back, but you can ring +44 20 7946 0000."]}]},
            {"id": "refund_time", "value": "5–7 business days", "patterns": [r"\b5\s*(?:-|–|to)\s*7\b"],
             "questions": ["How long do refunds take?"],
             "answers": ["Refunds take 5–7 business days.", "Allow 5 to 7 business days for a refund."]},
        ],
    }


def write_sheet(tmp_path, data, name="facts.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


# --- the sheet ---------------------------------------------------------------------------------------------------

def test_a_sheet_loads_with_every_part(tmp_path):
    sheet = load_facts_sheet(write_sheet(tmp_path, small_sheet()))
    assert sheet.ids == ["phone", "refund_time"] and len(sheet) == 2 and sheet.company == "Test Shop"
    phone = sheet.by_id["phone"]
    assert [kind for kind, _ in phone.groups()] == ["ask", "details", "reverse", "not_done"]
    assert phone.not_done[0].what == "call-backs" and len(phone.questions()) == 6 and len(phone.answers()) == 5
    assert sheet.openers == ("", "Hi!")
    assert phone.states_value("ring 020 7946 0000") and not phone.states_value("ring 020 7946 1111")


def test_openers_default_when_the_sheet_names_none(tmp_path):
    from chatfreeze.facts.sheet import DEFAULT_OPENERS

    data = small_sheet()
    del data["openers"]
    assert load_facts_sheet(write_sheet(tmp_path, data)).openers == DEFAULT_OPENERS


def _edit(change):
    data = small_sheet()
    change(data)
    return data


def phone_fact(data: dict) -> dict:
    return data["facts"][0]


BAD_SHEETS = [
    ("facts: [\n  - id: a\n   value: x\n", "not valid YAML at line"),
    ("- just a list", "expected a mapping with a 'facts' list"),
    (_edit(lambda d: d.update(extra=1)), "unknown key(s) extra"),
    (_edit(lambda d: d.update(facts=[])), "'facts' must be a non-empty list"),
    (_edit(lambda d: d.update(company="")), "company: must be a non-empty string"),
    (_edit(lambda d: d.update(openers="Hi!")), "openers: must be a non-empty list"),
    (_edit(lambda d: d["facts"].append("phone")), "facts[2]: expected a mapping"),
    (_edit(lambda d: phone_fact(d).update(id="phone number")), "facts[0]: id: must be a word"),
    (_edit(lambda d: d["facts"][1].update(id="phone")), "fact 'phone': id: duplicate fact id"),
    (_edit(lambda d: phone_fact(d).update(answer=["x"])), "fact 'phone': unknown key(s) answer"),
    (_edit(lambda d: phone_fact(d).pop("value")), "fact 'phone': value: must be a non-empty string"),
    (_edit(lambda d: phone_fact(d).pop("patterns")), "fact 'phone': patterns: must be a non-empty list"),
    (_edit(lambda d: phone_fact(d).update(patterns=["7946("])), "fact 'phone': patterns[0]: '7946(' does not compile"),
    (_edit(lambda d: phone_fact(d).update(value="+44 20 7946 1111")), "fact 'phone': patterns: the value"),
    (_edit(lambda d: phone_fact(d).update(questions="What is your number?")), "fact 'phone': questions: must be a "
                                                                         "non-empty list"),
    (_edit(lambda d: phone_fact(d)["questions"].append(" ")), "fact 'phone': questions[3]: must be a non-empty string"),
    (_edit(lambda d: phone_fact(d)["answers"].append("Call us any time.")),
     "fact 'phone': answers[2]: does not state the value (no match for '7946\\s*0000')"),
    (_edit(lambda d: phone_fact(d)["reverse"][0]["answers"].append("Yes.")),
     "fact 'phone': reverse[0].answers[1]: does not state the value"),
    (_edit(lambda d: phone_fact(d)["details"].append(["When?"])), "fact 'phone': details[1]: expected a mapping"),
    (_edit(lambda d: phone_fact(d)["not_done"][0].pop("what")), "fact 'phone': not_done[0].what: must be a non-empty"),
    (_edit(lambda d: phone_fact(d)["reverse"][0].update(what="x")), "fact 'phone': reverse[0]: unknown key(s) what"),
    (_edit(lambda d: d["facts"][1]["questions"].append("how do i call you?")),
     "fact 'refund_time': questions: 'how do i call you?' is also asked under fact 'phone'"),
    (_edit(lambda d: phone_fact(d)["not_done"][0]["questions"].append("number pls")),
     "fact 'phone': questions: 'number pls' is also asked under this fact"),
    (_edit(lambda d: phone_fact(d).update(neighbours=["fax"])), "fact 'phone': neighbours: unknown fact id 'fax'"),
    (_edit(lambda d: phone_fact(d).update(neighbours=["phone"])), "fact 'phone': neighbours: names the fact itself"),
    (_edit(lambda d: phone_fact(d).update(neighbours="refund_time")), "fact 'phone': neighbours: must be a list"),
    (_edit(lambda d: phone_fact(d).update(applied=[{"questions": ["Open at 19:00?"], "answers": ["Yes."]}])),
     "fact 'phone': applied[0].answers[0]: does not state the value"),
    (_edit(lambda d: phone_fact(d).update(also=phone_fact(d).pop("details"))), "fact 'phone': unknown key(s) also"),
    (_edit(lambda d: phone_fact(d).update(name=" ")), "fact 'phone': name: must be a non-empty string"),
]


@pytest.mark.parametrize(("content", "message"), BAD_SHEETS)
def test_every_sheet_error_is_one_line_naming_file_fact_and_field(tmp_path, content, message):
    path = write_sheet(tmp_path, content)
    with pytest.raises(FactsSheetError) as caught:
        load_facts_sheet(path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and message in text, text
    assert isinstance(caught.value, ValueError)  # the CLI's user errors: exit 2, one line


def test_missing_and_non_utf8_sheets(tmp_path):
    with pytest.raises(FactsSheetError, match="no such facts sheet"):
        load_facts_sheet(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("company: Caf\xe9".encode("latin-1"))
    with pytest.raises(FactsSheetError, match="not UTF-8"):
        load_facts_sheet(bad)


def test_a_thin_fact_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="chatfreeze.facts.sheet"):
        load_facts_sheet(write_sheet(tmp_path, small_sheet()))
    assert "2 fact(s) with fewer than 5 question" in caplog.text and "phone, refund_time" in caplog.text


# --- drills ------------------------------------------------------------------------------------------------------

@pytest.fixture
def sheet(tmp_path):
    return load_facts_sheet(write_sheet(tmp_path, small_sheet()))


def test_every_fact_gets_exactly_per_fact_drills(sheet):
    for per_fact in (0, 1, 7, 50):
        drills = plan_drills(sheet, per_fact, seed=3)
        assert Counter(d.fact for d in drills) == ({"phone": per_fact, "refund_time": per_fact} if per_fact else {})
    with pytest.raises(ValueError, match="per_fact -1"):
        plan_drills(sheet, -1)


def test_drills_go_round_questions_answers_and_openers_before_repeating(sheet):
    drills = [d for d in plan_drills(sheet, 24, seed=0) if d.fact == "phone"]
    # 6 questions (3 ask, 1 details, 1 reverse, 1 not_done): 24 drills ask each one 4 times.
    base = Counter(re.sub(r"^Hi! ", "", d.question) for d in drills)
    assert len(base) == 6 and set(base.values()) == {4}
    assert Counter(d.kind for d in drills) == {"ask": 12, "details": 4, "reverse": 4, "not_done": 4}
    # 3 ask questions x 2 answers x 2 openers = 12 combinations: all used once before any repeats.
    assert len({(d.question, d.answer) for d in drills if d.kind == "ask"}) == 12
    refund = [d for d in plan_drills(sheet, 9, seed=0) if d.fact == "refund_time"]
    # 1 question x 2 answers x 2 openers = 4 combinations, cycled: 9 drills use them 3, 2, 2 and 2 times.
    assert sorted(Counter((d.question, d.answer) for d in refund).values()) == [2, 2, 2, 3]
    for drill in drills:
        assert sheet.by_id[drill.fact].states_value(drill.answer)


def test_drills_are_deterministic_and_seeded(sheet):
    assert plan_drills(sheet, 20, seed=1) == plan_drills(sheet, 20, seed=1)
    assert plan_drills(sheet, 20, seed=1) != plan_drills(sheet, 20, seed=2)
    dialogues = render_drills(sheet, SYSTEM, 5, seed=1)
    assert len(dialogues) == 10 and [m["role"] for m in dialogues[0]] == ["system", "user", "assistant"]
    assert dialogues[0][0]["content"] == SYSTEM and len(render_drills(sheet, None, 5, seed=1)[0]) == 2


@pytest.mark.slow
def test_the_plan_is_the_same_in_another_process(sheet):
    """No hash() (salted per process) in the plan: a fresh interpreter with another hash seed plans the same."""
    code = ("import sys, json; from chatfreeze.facts import load_facts_sheet, plan_drills\n"
            "print(json.dumps([d.__dict__ for d in plan_drills(load_facts_sheet(sys.argv[1]), 9, seed=4)]))")
    result = subprocess.run([sys.executable, "-c", code, sheet.path], capture_output=True, text=True, cwd=REPO_ROOT,
                            env={"PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "123"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [d.__dict__ for d in plan_drills(sheet, 9, seed=4)]


def test_drills_are_labelled_on_the_answer_only(sheet, chatml_tokenizer):
    drills = plan_drills(sheet, 3, seed=0)
    dataset, report = drills_dataset(drills, chatml_tokenizer, system_prompt=SYSTEM, max_length=512)
    assert len(dataset) == len(drills) == report.dialogues_used == report.assistant_turns == 6
    for drill, row in zip(drills, dataset, strict=True):
        trained = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE_INDEX]
        assert chatml_tokenizer.decode(trained) == drill.answer + "<|im_end|>"
        first = next(i for i, label in enumerate(row["labels"]) if label != IGNORE_INDEX)
        assert drill.question in chatml_tokenizer.decode(row["input_ids"][:first])  # the question is context only
    batch = DialogueCollator(chatml_tokenizer)([dataset[0], dataset[1]])
    assert batch["labels"].shape == batch["input_ids"].shape


def test_facts_dataset_mixes_per_fact_or_by_ratio(sheet, chatml_tokenizer):
    assert facts_dataset(FactsArguments(), chatml_tokenizer, 100, system_prompt=SYSTEM) is None
    data = facts_dataset(FactsArguments(facts=sheet.path, facts_per_fact=4), chatml_tokenizer, 100,
                         system_prompt=SYSTEM, max_length=512)
    assert data.per_fact == 4 and len(data.drills) == len(data.dataset) == 8
    by_ratio = facts_dataset(FactsArguments(facts=sheet.path, facts_ratio=0.5), chatml_tokenizer, 10,
                             system_prompt=SYSTEM, max_length=512)
    assert by_ratio.per_fact == 2 and len(by_ratio.dataset) == 4  # 0.5 x 10 dialogues / 2 facts
    none = facts_dataset(FactsArguments(facts=sheet.path, facts_per_fact=0), chatml_tokenizer, 10, system_prompt=None)
    assert none.drills == [] and none.dataset is None


def test_drilled_questions_are_distinct_questions_training_asked_per_fact(sheet, chatml_tokenizer):
    from chatfreeze.evaluation.probes import drilled_probe

    def facts_data(per_fact, seed=0):
        return facts_dataset(FactsArguments(facts=sheet.path, facts_per_fact=per_fact), chatml_tokenizer, 10,
                             system_prompt=SYSTEM, max_length=512, seed=seed)

    data = facts_data(12)
    chosen = data.drilled_questions()
    assert Counter(d.fact for d in chosen) == {"phone": 2, "refund_time": 2}
    assert data.system_prompt == SYSTEM and data.seed == 0
    drilled = {(d.fact, d.question, d.answer) for d in data.drills}
    assert {(d.fact, d.question, d.answer) for d in chosen} <= drilled  # verbatim, as training asked them
    # Phone has 6 questions: its two are different questions, not one question with two openers.
    phone = [re.sub(r"^Hi! ", "", d.question) for d in chosen if d.fact == "phone"]
    assert len(set(phone)) == 2
    # The same questions whatever the number of drills per fact (so the base's measurement is shared), another seed
    # may pick others; a fact drilled once is asked once; none without drills.
    assert facts_data(60).drilled_questions() == chosen
    assert Counter(d.fact for d in facts_data(1).drilled_questions()) == {"phone": 1, "refund_time": 1}
    assert len(data.drilled_questions(per_fact=1)) == 2 and facts_data(0).drilled_questions() == []
    items = drilled_probe(data)
    assert [item.prompt for item in items] == [d.question for d in chosen]
    assert items[0].id == f"{items[0].group}/drilled-1" and len({item.id for item in items}) == 4
    phone_item = next(item for item in items if item.group == "phone")
    assert phone_item.check("Ring +44 20 7946 0000 any weekday.")[0] and not phone_item.check("Ring 0800 123 456.")[0]
    assert drilled_probe(None) == []


def test_facts_options_name_the_flag():
    assert FactsArguments(facts="none").facts is None
    assert FactsArguments().per_fact(800, 41) == 60 and FactsArguments(facts_ratio=1.0).per_fact(800, 41) == 20
    for kwargs, flag in [(dict(facts_per_fact=10, facts_ratio=1.0), "--facts_per_fact 10 and --facts_ratio 1.0"),
                         (dict(facts_per_fact=-1), "--facts_per_fact -1"), (dict(facts_ratio=0.0), "--facts_ratio 0.0"),
                         (dict(facts_min_exposures=-2), "--facts_min_exposures -2")]:
        with pytest.raises(ValueError, match=re.escape(flag)):
            FactsArguments(**kwargs)


def test_common_system_prompt():
    one = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]
    assert common_system_prompt([one, one]) == SYSTEM
    assert common_system_prompt([one, one[1:]]) is None and common_system_prompt([]) is None


# --- exposure ----------------------------------------------------------------------------------------------------

def dialogue(*turns: str) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i, text in enumerate(turns)]


def test_exposures_count_examples_whose_assistant_states_the_value(sheet, caplog):
    support = [
        dialogue("Is it +44 20 7946 0000?", "Yes, that's our number."),  # only the user states it: 0
        dialogue("number?", "+44 20 7946 0000.", "again?", "+44 20 7946 0000, as I said."),  # twice in one: 1
        dialogue("refund?", "5-7 business days, and call +44 20 7946 0000 if not."),  # both facts: 1 + 1
        dialogue("refund?", "It takes 5–7 days."),
        dialogue("hello", "Hi! How can I help?"),
    ]
    drills = render_drills(sheet, SYSTEM, 3, seed=0)
    with caplog.at_level(logging.WARNING, logger="chatfreeze.facts.exposure"):
        report = count_exposures(sheet, {"support": support, "drills": drills}, threshold=5)
    assert report.to_dict()["facts"] == {"phone": {"support": 2, "drills": 3, "total": 5},
                                         "refund_time": {"support": 2, "drills": 3, "total": 5}}
    assert report.sources == {"support": 5, "drills": 6}
    assert report.total("phone") == 5 and report.total("refund_time") == 5 and report.below == []
    assert "facts are stated in fewer" not in caplog.text
    strict = count_exposures(sheet, {"support": support}, threshold=3)
    assert strict.below == ["phone", "refund_time"]
    assert "2 of 2 facts are stated in fewer than 3 training examples: phone, refund_time" in caplog.text
    assert "None of the" not in caplog.text


def test_a_sheet_whose_facts_no_support_dialogue_states_is_named(sheet, caplog):
    """Another company's sheet (the default recipe's, with a user's own --dataset) would drill its values into the
    model: the report says so and how to give the right sheet or none."""
    support = [dialogue("Where is my parcel?", "It left our Leeds depot today."), dialogue("hi", "Hello!")]
    with caplog.at_level(logging.WARNING, logger="chatfreeze.facts.exposure"):
        count_exposures(sheet, {"support": support, "drills": render_drills(sheet, SYSTEM, 3, seed=0)})
    assert ("None of the 2 facts of the facts sheet is stated in the 2 support dialogues: is the sheet (--facts) "
            "this data's?") in caplog.text
    assert "--facts_per_fact 0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="chatfreeze.facts.exposure"):
        count_exposures(sheet, {"support": support + [dialogue("number?", "+44 20 7946 0000.")]})
        count_exposures(sheet, {"support": []})  # no dialogues (drills alone): nothing to compare with
    assert "None of the" not in caplog.text


def test_exposure_report_dict_and_table(sheet):
    report = count_exposures(sheet, {"support": [dialogue("q", "Call +44 20 7946 0000.")], "replay": []},
                             threshold=1, warn=False)
    assert report.to_dict() == {"sources": {"support": 1, "replay": 0}, "threshold": 1, "below": ["refund_time"],
                                "facts": {"phone": {"support": 1, "replay": 0, "total": 1},
                                          "refund_time": {"support": 0, "replay": 0, "total": 0}}}
    lines = report.format_table().splitlines()
    assert lines[0].split() == ["fact", "support", "replay", "total"]
    assert lines[2].split() == ["phone", "1", "0", "1"] and lines[3].split() == ["refund_time", "0", "0", "0", "<"]
    assert "1 of 2 facts stated in fewer than 1" in lines[-1]


# --- the command -------------------------------------------------------------------------------------------------

def test_facts_command_prints_the_table_without_a_model(sheet, tmp_path, capsys):
    from chatfreeze.cli import main

    data = tmp_path / "train.jsonl"
    rows = [{"messages": dialogue("number?", "It's +44 20 7946 0000.")}] * 3
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["facts", "--dataset", str(data), "--facts", sheet.path, "--facts_per_fact", "4",
                 "--facts_min_exposures", "5", "--facts_plan", "uniform"]) == 0
    out = capsys.readouterr().out
    assert "3 support dialogues" in out and "8 drills (4 per fact)" in out
    # fact, drills planned, support, drills, total
    assert re.search(r"^phone\s+4\s+3\s+4\s+7$", out, re.M)
    assert re.search(r"^refund_time\s+4\s+0\s+4\s+4\s+<$", out, re.M)
    assert main(["facts", "--dataset", str(data), "--facts", sheet.path, "--facts_ratio", "2", "--facts_plan",
                 "uniform", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["per_fact"] == 3 and record["facts"]["phone"] == {"support": 3, "drills": 3, "total": 6}
    assert record["planned"] == {"phone": 3, "refund_time": 3}
    # By need: refund_time, which no dialogue states, is topped up to 5; phone (3 + 4) needs no more.
    assert main(["facts", "--dataset", str(data), "--facts", sheet.path, "--facts_per_fact", "4",
                 "--facts_min_exposures", "5", "--facts_plan", "need"]) == 0
    out = capsys.readouterr().out
    assert "9 drills (4 per fact, 1 fact topped up to 5 at most)" in out
    assert re.search(r"^phone\s+4\s+3\s+4\s+7$", out, re.M) and re.search(r"^refund_time\s+5\s+0\s+5\s+5$", out, re.M)


def test_facts_command_errors_are_one_line_exit_2(sheet, tmp_path, capsys):
    from chatfreeze.cli import main

    bad = write_sheet(tmp_path, _edit(lambda d: phone_fact(d)["answers"].append("Ring us.")), "bad.yaml")
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": dialogue("q", "a")}) + "\n")
    # The report reads the default recipe as train does: a user's dialogues with its (Kestrel's) sheet are refused.
    for argv, message in [(["--dataset", str(data)], "but --facts still is"),
                          (["--dataset", str(data), "--facts", "none"], "error: --facts: give a facts sheet"),
                          (["--dataset", str(data), "--facts", str(bad)], f"error: {bad}: fact 'phone': answers[2]"),
                          (["--dataset", str(tmp_path / "no.jsonl"), "--facts", sheet.path], "no such file"),
                          (["--facts", sheet.path, "--facts_per_fact", "1", "--facts_ratio", "1"], "give one of them")]:
        assert main(["facts", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


# --- probe split -------------------------------------------------------------------------------------------------

def probe_items(sizes: dict[str, int]) -> list[dict]:
    return [{"id": f"{fact}-{i}", "fact": fact, "question": f"question {i} about {fact}?"}
            for fact, n in sizes.items() for i in range(1, n + 1)]


def test_the_probe_split_covers_every_fact_on_both_halves():
    items = probe_items({"a": 2, "b": 3, "c": 4, "d": 1, "e": 5, "f": 3})
    dev, test = split_probe(items)
    assert sorted(map(json.dumps, dev + test)) == sorted(map(json.dumps, items)) and not set(
        i["id"] for i in dev) & set(i["id"] for i in test)
    for fact in "abcef":
        assert any(i["fact"] == fact for i in dev) and any(i["fact"] == fact for i in test)
    for fact, n in {"a": 2, "b": 3, "c": 4, "e": 5, "f": 3}.items():
        assert abs(sum(i["fact"] == fact for i in dev) - sum(i["fact"] == fact for i in test)) == n % 2
    assert [i["id"] for i in dev] == [i["id"] for i in items if i in dev]  # input order kept


@pytest.mark.slow
def test_the_probe_split_is_stable():
    items = probe_items({"a": 3, "b": 4, "c": 5})
    dev, _ = split_probe(items)
    assert [i["id"] for i in split_probe(list(reversed(items)))[0]] == [i["id"] for i in reversed(dev)]
    code = ("import json, sys; from chatfreeze.facts import split_probe\n"
            "print(json.dumps([i['id'] for i in split_probe(json.loads(sys.argv[1]))[0]]))")
    result = subprocess.run([sys.executable, "-c", code, json.dumps(items)], capture_output=True, text=True,
                            cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "7"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [i["id"] for i in dev]
    no_ids = [{k: v for k, v in i.items() if k != "id"} for i in items]  # hashed on the question text instead
    assert len(split_probe(no_ids)[0]) in (5, 6, 7)
    with pytest.raises(ValueError, match="probe item 0: no 'fact'"):
        split_probe([{"id": "x", "question": "q"}])


def test_the_real_probe_splits_into_two_halves_covering_all_41_facts():
    items = [json.loads(line) for line in PROBE_FILE.read_text().splitlines() if line.strip()]
    dev, test = split_probe(items)
    facts = {i["fact"] for i in items}
    assert len(facts) == 41 and {i["fact"] for i in dev} == facts == {i["fact"] for i in test}
    assert abs(len(dev) - len(test)) <= 5 and len(dev) + len(test) == len(items)


# --- probe overlap -----------------------------------------------------------------------------------------------

def test_overlap_finds_equal_and_near_questions():
    probe = "How long do I have to return an item after it is delivered?"
    assert normalise("  How LONG do i have -- to return an item,   after it's delivered?!") == (
        "how long do i have to return an item after it s delivered")
    assert compare("how long do I have to return an item after it is delivered", probe).how == "equal"
    near = compare("How long do I have to return an item after it gets delivered?", probe)
    assert near.how == "jaccard" and near.score > 0.5
    two_words = compare("How long do I have to return a product after it is delivered?", probe)
    assert two_words.how == "jaccard" and 0.4 <= two_words.score < 0.5
    inside = compare(f"Hi! I bought a lamp last week. {probe} Thanks a lot, have a nice day and see you soon.", probe)
    assert inside.how == "containment" and inside.score == 1.0


def test_overlap_leaves_different_questions_alone():
    probe = "How long do I have to return an item after it is delivered?"
    for drill in ("What's the deadline for sending something back?", "How long does delivery take?",
                  "Can I return an item without its box?", "return", "How long do I have?"):
        assert compare(drill, probe) is None, drill
    found = find_overlaps(["What's the deadline for sending something back?", probe.upper()], [probe, "Hello?"])
    assert [(o.drill, o.how) for o in found] == [(probe.upper(), "equal")]


ISSUE_PARAPHRASES = [  # issue 34: drill questions the 3-gram rules let through, and the probe question each copies
    ("I'd rather write than chat. Which address should I use?",
     "I'd rather write than chat. Where should I send my message?", "first sentence"),
    ("What's the usual refund processing time?", "refund processing time?", "short"),
    ("express how many days", "express delivery = how many days?", "short"),
    ("Any hotline I can ring?", "Hotline?", "short"),
]


@pytest.mark.parametrize(("drill", "probe", "how"), ISSUE_PARAPHRASES)
def test_the_issues_four_paraphrases_are_caught(drill, probe, how):
    found = compare(drill, probe)
    assert found is not None and found.how == how, found
    assert [o.how for o in find_overlaps([drill], [probe])] == [how]


def test_overlap_rule_first_sentence():
    one, other = "Who should I call about a late parcel?", "Could the courier leave it with a neighbour instead?"
    assert compare(f"Parcel stuck again! {one}", f"Parcel stuck again! {other}").how == "first sentence"
    assert compare(f"Hi there! {one}", f"Hi there! {other}") is None  # an opening without content words
    assert compare("Parcel stuck again!", f"Parcel stuck again! {other}") is None  # one sentence only


def test_overlap_rule_content_words():
    drill = "On weekends, which hours and days does the support team work?"
    probe = "Which days and hours does your support team work at weekends?"
    assert compare(drill, probe).how == "content"  # reordered: few shared 3-grams, all content words shared
    assert compare("Which days do warehouse staff pack orders at weekends?", probe) is None  # 2 of 6 content words


def test_overlap_rule_short_questions():
    assert compare("Is there a hotline at all?", "Hotline?").how == "short"
    assert compare("Is there a phone line?", "Hotline?") is None
    # One keyword is not a copy of a long question that happens to contain it.
    assert compare("where's my order no", "In general, up until what point can an order still be cancelled?") is None


def test_content_words_drop_stop_words_and_plurals():
    from chatfreeze.facts.overlap import content_words

    assert content_words("How many days do I have to return the items?") == {"many", "day", "return", "item"}
    assert content_words("Is it free?") == {"free"} and content_words("Hi! Thanks") == set()


# --- neighbours, contrast and applied drills -------------------------------------------------------------------

def neighbour_sheet(**phone) -> dict:
    """small_sheet with an email fact, phone's declared neighbour, and an applied entry on phone."""
    data = small_sheet()
    data["facts"].append({"id": "email", "value": "support@shop.example", "name": "the email address",
                          "patterns": [r"support@shop\.example"],
                          "questions": ["What is your email?", "Where do I write to?"],
                          "answers": ["Write to support@shop.example.", "Our address is support@shop.example."]})
    phone_fact(data).update(name="the phone number", neighbours=["email"], applied=[
        {"questions": ["It's Tuesday at 19:30. Can I still ring?"],
         "answers": ["The line is open on weekdays until 20:00, so yes: ring +44 20 7946 0000."]}], **phone)
    return data


def test_declared_neighbours_are_symmetric(tmp_path, monkeypatch):
    from chatfreeze.facts import neighbours, neighbours_of

    monkeypatch.setattr(neighbours, "_value_kinds", lambda: None)  # declared ones only
    sheet = load_facts_sheet(write_sheet(tmp_path, neighbour_sheet()))
    assert sheet.by_id["phone"].neighbours == ("email",) and sheet.by_id["email"].neighbours == ()
    assert neighbours_of(sheet) == {"phone": ("email",), "refund_time": (), "email": ("phone",)}
    del phone_fact(data := neighbour_sheet())["neighbours"]
    assert neighbours_of(load_facts_sheet(write_sheet(tmp_path, data))) == dict.fromkeys(sheet.ids, ())


def test_neighbours_are_found_by_kind_of_value_and_shared_keywords(tmp_path):
    from chatfreeze.facts.neighbours import found_pairs, keywords

    def price(fact_id, amount, word):
        return {"id": fact_id, "value": f"€{amount}", "patterns": [amount.replace(".", "[.,]")],
                "questions": [f"How much is {word} shipping?", f"What does {word} delivery cost?",
                              f"{word} shipping cost?"], "answers": [f"{word.title()} shipping costs €{amount}."]}

    data = {"facts": [price("express_cost", "9.95", "express"), price("standard_cost", "4.95", "standard"),
                      dict(price("gift_wrap", "2.50", "gift"), questions=["Can you wrap a present?",
                                                                           "Gift wrapping price?"])]}
    sheet = load_facts_sheet(write_sheet(tmp_path, data))
    assert {"shipping", "cost", "express"} <= keywords(sheet.by_id["express_cost"])
    kinds = {"€9.95": {"money"}, "€4.95": {"money"}, "€2.50": {"money"}}
    assert found_pairs(sheet, kinds.get) == {frozenset(("express_cost", "standard_cost"))}  # wrapping shares none
    assert found_pairs(sheet, lambda value: {value}) == set()  # another kind of value each: none


def test_contrast_and_applied_drills_are_rendered_and_counted(tmp_path, monkeypatch):
    from chatfreeze.facts import neighbours

    monkeypatch.setattr(neighbours, "_value_kinds", lambda: None)
    sheet = load_facts_sheet(write_sheet(tmp_path, neighbour_sheet()))
    drills = plan_drills(sheet, 40, seed=0)
    by_kind = {kind: [d for d in drills if d.fact == "phone" and d.kind == kind] for kind in ("contrast", "both",
                                                                                             "applied")}
    assert all(by_kind.values()), {kind: len(found) for kind, found in by_kind.items()}
    for drill in by_kind["contrast"] + by_kind["both"]:
        assert "the email address" in drill.question.lower() and "phone number" in drill.question.lower()
        # Both values, each after its label: the neighbour's never stated as the asked one.
        assert re.search(r"phone number: \+44 20 7946 0000", drill.answer, re.I), drill.answer
        assert re.search(r"email address\W.{0,30}support@shop\.example", drill.answer, re.I), drill.answer
    assert {d.answer for d in by_kind["applied"]} == {"The line is open on weekdays until 20:00, so yes: ring "
                                                       "+44 20 7946 0000."}
    email = [d for d in drills if d.fact == "email"]
    assert {d.kind for d in email} >= {"contrast", "both"}  # declared under phone only: contrasted both ways
    report = count_exposures(sheet, {"drills": [d.messages() for d in drills]}, threshold=1, warn=False)
    contrasts = sum(d.kind in ("contrast", "both") for d in email)
    # Every drill of a fact states its value; a contrast drill of email states phone's too.
    assert report.total("phone") == 40 + contrasts and report.total("email") == 40 + sum(
        d.kind in ("contrast", "both") for d in drills if d.fact == "phone")


def test_without_neighbours_there_are_no_contrast_drills(tmp_path, monkeypatch):
    from chatfreeze.facts import neighbours

    monkeypatch.setattr(neighbours, "_value_kinds", lambda: None)
    data = neighbour_sheet()
    del phone_fact(data)["neighbours"]
    kinds = {d.kind for d in plan_drills(load_facts_sheet(write_sheet(tmp_path, data)), 40, seed=0)}
    assert kinds == {"ask", "details", "reverse", "not_done", "applied"}


# --- drills planned by need ------------------------------------------------------------------------------------

def test_the_plan_by_need_tops_up_the_least_exposed_facts(sheet):
    from chatfreeze.facts import plan_by_need

    support = [dialogue("number?", "Call +44 20 7946 0000.")] * 9 + [dialogue("refund?", "5-7 business days.")]
    planned = plan_by_need(sheet, 3, {"support": support}, min_exposures=12, seed=0)
    assert planned == {"phone": 3, "refund_time": 11}  # 9 + 3 >= 12; 1 + 3 + 8 more = 12
    drills = render_drills(sheet, None, planned, seed=0)
    report = count_exposures(sheet, {"support": support, "drills": drills}, threshold=12, warn=False,
                             planned=planned)
    assert report.below == [] and report.total("refund_time") == 12
    assert plan_by_need(sheet, 3, {"support": support}, min_exposures=0) == {"phone": 3, "refund_time": 3}
    # A fact's first drills stay the same when it gets more: the top-up only adds.
    first = [d for d in plan_drills(sheet, 3, seed=0) if d.fact == "refund_time"]
    more = [d for d in plan_drills(sheet, planned, seed=0) if d.fact == "refund_time"]
    assert set(first) <= set(more) and len(more) == 11
    lines = report.format_table().splitlines()
    assert lines[0].split() == ["fact", "planned", "support", "drills", "total"]
    assert lines[2].split() == ["phone", "3", "9", "3", "12"] and lines[3].split() == ["refund_time", "11", "1", "11",
                                                                                         "12"]
    assert report.to_dict()["planned"] == planned


def test_facts_dataset_plans_by_need_when_asked(sheet, chatml_tokenizer):
    support = [dialogue("number?", "Call +44 20 7946 0000.")] * 5
    common = dict(system_prompt=SYSTEM, max_length=512, counted={"support": support})
    uniform = facts_dataset(FactsArguments(facts=sheet.path, facts_per_fact=2, facts_min_exposures=6),
                            chatml_tokenizer, 5, **common)
    assert uniform.planned == {"phone": 2, "refund_time": 2} and len(uniform.drills) == 4
    need = facts_dataset(FactsArguments(facts=sheet.path, facts_per_fact=2, facts_min_exposures=6,
                                        facts_plan="need"), chatml_tokenizer, 5, **common)
    assert need.planned == {"phone": 2, "refund_time": 6} and len(need.dataset) == 8 and need.count("refund_time") == 6
    assert Counter(d.fact for d in need.drilled_questions()) == {"phone": 2, "refund_time": 2}
    off = facts_dataset(FactsArguments(facts=sheet.path, facts_per_fact=0, facts_min_exposures=6,
                                       facts_plan="need"), chatml_tokenizer, 5, **common)
    assert off.drills == [] and off.planned == {"phone": 0, "refund_time": 0}  # 0 turns drills off, by need too
    with pytest.raises(ValueError, match="--facts_plan 'always': choose uniform or need"):
        FactsArguments(facts_plan="always")


# --- the Kestrel & Co. sheet -------------------------------------------------------------------------------------

def readme_values() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Company facts"):text.index("## Intents")]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `(\w+)` \| (.+) \|$", table, re.M)}


@pytest.fixture(scope="module")
def kestrel():
    return load_facts_sheet(KESTREL_SHEET)


@pytest.fixture(scope="module")
def probe():
    return [json.loads(line) for line in PROBE_FILE.read_text().splitlines() if line.strip()]


def test_kestrel_sheet_covers_every_fact_with_many_phrasings(kestrel, probe):
    assert set(kestrel.ids) == {item["fact"] for item in probe} == set(readme_values()) and len(kestrel) == 41
    for fact in kestrel.facts:
        assert len(fact.ask.questions) >= 8 and len(fact.ask.answers) >= 5, fact.id
        assert len(set(fact.ask.answers)) == len(fact.ask.answers), fact.id


def test_kestrel_values_agree_with_the_readme(kestrel):
    readme = readme_values()
    assert {fact.id: fact.value for fact in kestrel.facts} == readme
    for fact in kestrel.facts:
        assert fact.states_value(readme[fact.id]), fact.id


def test_kestrel_values_are_the_company_files_the_dialogues_come_from(kestrel):
    """The drills and the dialogues teach the same values: the sheet's value of every fact is the text of
    data/company.yaml (the source of train.jsonl), and its patterns recognise it."""
    import yaml

    company = {fact["id"]: fact["text"] for fact in
               yaml.safe_load((README.parent / "company.yaml").read_text(encoding="utf-8"))["facts"]}
    assert {fact.id: fact.value for fact in kestrel.facts} == company
    for fact in kestrel.facts:
        assert fact.states_value(company[fact.id]), fact.id


def test_no_kestrel_drill_question_is_a_probe_question(kestrel, probe):
    from chatfreeze.facts.drills import fact_groups

    questions = [question for _, question in kestrel.questions()]
    assert not find_overlaps(questions, [item["question"] for item in probe])
    contrasts = [q for groups in fact_groups(kestrel).values() for kind, qa in groups if kind in ("contrast", "both")
                 for q in qa.questions]
    assert contrasts and not find_overlaps(contrasts, [item["question"] for item in probe])
    # and with the openers the drills add
    drilled = {d.question for d in plan_drills(kestrel, 60, seed=0)}
    assert not find_overlaps(sorted(drilled), [item["question"] for item in probe])


def test_kestrel_answers_never_state_a_value_the_probe_calls_wrong(kestrel, probe):
    """No answer matches a ``reject`` regex of its fact's probe items, and every probe item has an answer in the
    sheet that its scorer would count right: the drills teach what the probe checks, not a contradiction."""
    for item in probe:
        answers = kestrel.by_id[item["fact"]].answers()
        wrong = [a for a in answers for pattern in item["reject"] if re.search(pattern, a, re.IGNORECASE)]
        assert not wrong, (item["id"], wrong)
        assert any(all(re.search(p, a, re.IGNORECASE) for p in item["expect"]) for a in answers), item["id"]


def test_kestrel_drill_answers_never_state_a_value_the_probe_calls_wrong(kestrel, probe):
    """The drills' own answers too -- contrast answers state a neighbour's value, applied ones a conclusion."""
    drills = plan_drills(kestrel, 60, seed=0)
    for item in probe:
        wrong = {d.answer for d in drills if d.fact == item["fact"] for pattern in item["reject"]
                 if re.search(pattern, d.answer, re.IGNORECASE)}
        assert not wrong, (item["id"], wrong)


def test_kestrel_neighbours_include_the_issues_confusions(kestrel):
    from chatfreeze.facts import neighbours_of

    found = neighbours_of(kestrel)
    for a, b in [("express_shipping_cost", "standard_shipping_cost"), ("free_shipping_threshold",
                                                                      "standard_shipping_cost"),
                 ("phone", "email"), ("support_hours", "support_closed"), ("email_reply_time", "refund_time"),
                 ("free_shipping", "express_shipping_cost"), ("express_shipping", "standard_shipping")]:
        assert b in kestrel.by_id[a].neighbours, (a, b)  # declared in the sheet
        assert b in found[a] and a in found[b]
    assert all(kestrel.by_id[other].name for fact in kestrel.facts for other in fact.neighbours)  # labelled


def test_kestrel_facts_are_applied(kestrel):
    applied = {fact.id: fact.applied for fact in kestrel.facts if fact.applied}
    assert {"free_shipping", "return_window", "support_hours", "order_changes"} <= set(applied)
    assert sum(map(len, applied.values())) >= 10
    assert any("€4.95" in a for qa in applied["free_shipping"] for a in qa.answers)  # under the threshold
    assert any("is free" in a for qa in applied["free_shipping"] for a in qa.answers)  # over it


def test_the_probes_applied_items_are_on_both_halves_and_leave_the_rest_where_it_was(probe):
    applied = [item for item in probe if item.get("kind") == "applied"]
    assert len(applied) >= 8 and all(item["id"] not in {i["id"] for i in probe if i not in applied} for item in applied)
    dev, test = split_probe(probe)
    assert {i["fact"] for i in dev if i in applied} == {i["fact"] for i in test if i in applied} == {
        "free_shipping", "return_window", "support_hours", "order_changes"}
    # Appended with ids chosen so that no earlier item changed half: the measured baseline stays comparable.
    before = [item for item in probe if item not in applied]
    old_dev, old_test = split_probe(before)
    assert [i["id"] for i in dev if i not in applied] == [i["id"] for i in old_dev]
    assert [i["id"] for i in test if i not in applied] == [i["id"] for i in old_test]


def test_the_facts_layer_imports_only_common_and_data():
    from test_layout import import_graph

    graph = import_graph()
    imported = {target for module, targets in graph.items() if module.startswith("chatfreeze.facts")
                for target in targets}
    assert imported and all(t.startswith(("chatfreeze.common", "chatfreeze.data", "chatfreeze.facts"))
                            for t in imported), imported
