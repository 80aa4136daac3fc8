"""`chatfreeze facts init`: the value model (each kind found, its pattern accepting the ways a reply writes it and
rejecting its neighbours), question and answer rules (deterministic, varied, never a probe question), the probe
(carved first, split dev/test, no overlap), bad input (one line, exit 2, nothing overwritten), the command end to
end, and a run on a FAQ alone through the training recipe on a tiny model."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest

from chatfreeze.facts.draft import draft_facts
from chatfreeze.facts.faq import FaqEntry, FaqError, read_faq
from chatfreeze.facts.generate import draft_from_files
from chatfreeze.facts.overlap import find_overlaps
from chatfreeze.facts.phrasing import add_typos, drill_questions, probe_questions, topic_of
from chatfreeze.facts.probe_split import split_probe
from chatfreeze.facts.sheet import load_facts_sheet
from chatfreeze.facts.values import KINDS, find_values, value_kinds

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_FAQ = REPO_ROOT / "examples" / "spokewise_faq.csv"

# kind: (a text stating one value, ways a reply writes the same value, neighbours it must not accept)
KIND_CASES = {
    "money": ("The deposit is €150.", ["€150", "150 euros", "EUR 150.00", "150,00 €", "€ 150"],
              ["€15", "€1500", "€150.50", "150 dollars", "$150", "€1.50"]),
    "duration": ("Refunds take 5–7 business days.", ["5-7 business days", "5 to 7 working days",
                                                      "five to seven business days"],
                 ["5-8 business days", "15-7 business days", "5-7 weeks"]),
    "time": ("We open at 8:30.", ["8:30", "08:30", "8.30 am", "8:30am", "08.30"], ["8:30 pm", "18:30", "8:35"]),
    "weekday": ("Closed on Sundays.", ["Sunday", "sundays", "Sun"], ["Saturday", "Monday"]),
    "date": ("Closed on 24 December.", ["24 December", "December 24th", "24th of Dec", "24/12"],
             ["14 December", "24 November", "4 December"]),
    "email": ("Write to help@pedalo.example.com.", ["help@pedalo.example.com", "HELP@pedalo.example.com"],
              ["info@pedalo.example.com", "help@pedalo.example.co"]),
    "phone": ("Call +31 20 555 0199.", ["+31 20 555 0199", "+31205550199", "+31 (0)20 555 0199", "020 555 0199",
                                        "020-555-0199"], ["+31 20 555 0198", "+31 20 555 01999"]),
    "url": ("See www.pedalo.nl/rates for more.", ["www.pedalo.nl/rates", "https://pedalo.nl/rates",
                                                  "pedalo.nl/rates/"], ["pedalo.nl/ratesheet", "pedalo.nl/book"]),
    "percent": ("Students get 15% off.", ["15%", "15 %", "15 percent", "fifteen per cent"], ["1.5%", "115%", "5%"]),
    "quantity": ("It carries up to 80 kg.", ["80 kg", "80kg", "80 kilos", "80 kilograms"], ["8 kg", "80 km", "180 kg"]),
    "address": ("Find us at 27 Harbour Street.", ["27 Harbour Street", "27 harbour st.", "27, Harbour Street"],
                ["72 Harbour Street", "27 Harbour Road"]),
}


@pytest.mark.parametrize("kind", list(KIND_CASES))
def test_each_kind_is_found_and_its_pattern_accepts_the_variants_and_rejects_neighbours(kind):
    text, variants, neighbours = KIND_CASES[kind]
    values = find_values(text)
    assert [v.kind for v in values] == [kind], values
    pattern = values[0].pattern
    for variant in variants:
        assert re.search(pattern, f"It is {variant} for you.", re.IGNORECASE), (variant, pattern)
    for neighbour in neighbours:
        assert not re.search(pattern, f"It is {neighbour} for you.", re.IGNORECASE), (neighbour, pattern)
    assert kind in value_kinds(text) and set(KIND_CASES) == set(KINDS)


def test_values_in_one_text_keep_their_own_kinds_and_keys():
    text = ("Open Mon–Fri 8.30-17.30 and Saturday 9am to 1 pm; riders must be 12 years old; email "
            "hi@spokes.bike; refunds within 30 days; 2026-12-31 closed.")
    found = [(v.kind, v.key) for v in find_values(text)]
    assert ("time", "08:30") in found and ("time", "17:30") in found and ("time", "13:00") in found
    assert ("weekday", "monday") in found and ("weekday", "friday") in found and ("weekday", "saturday") in found
    assert ("quantity", "age 12") in found and ("email", "hi@spokes.bike") in found
    assert ("duration", "30 day") in found and ("date", "2026-12-31") in found
    assert not [k for k, _ in found if k in ("url", "phone")]  # the email's domain and the date are not those
    assert find_values("€18")[0].key == find_values("18.00 euros")[0].key == "EUR 18"
    assert value_kinds("Helmets are free and we are friendly.") == set()


ENTRIES = [
    FaqEntry("How much is the deposit?", "We hold a deposit of €150 per bike.", "faq.csv:2"),
    FaqEntry("What does a day of e-bike rental cost?", "An e-bike is €32 per day, charger included.", "faq.csv:3"),
    FaqEntry("When do you open on Saturdays?", "On Saturdays we open at 9:00 and close at 17:00.", "faq.csv:4"),
    FaqEntry("Do I need to bring ID?", "Yes, bring a passport or an identity card.", "faq.csv:5"),
]


def test_questions_are_deterministic_varied_and_made_by_every_rule():
    first = drill_questions("How much is the deposit?", "the deposit", "money", "Pedalo", random.Random("1"))
    again = drill_questions("How much is the deposit?", "the deposit", "money", "Pedalo", random.Random("1"))
    other = drill_questions("How much is the deposit?", "the deposit", "money", "Pedalo", random.Random("2"))
    assert first == again and first != other
    rules = {rule for rule, _ in first}
    assert {"as written", "keywords", "casual", "polite", "typos", "longer message", "with company"} <= rules
    assert len({q for _, q in first}) == len(first) >= 12
    probe = probe_questions("the deposit", "money", random.Random("1"))
    assert len(probe) == 6 and {rule for rule, _ in probe} <= {"probe frame", "probe text-speak", "probe story"}
    assert not find_overlaps([q for _, q in first], [q for _, q in probe])  # the rules share no template
    assert topic_of("How long does a refund take?") == "a refund"
    assert topic_of("Can I rent a bike for a week?") == "renting a bike for a week"
    typo = add_typos("Where is the nearest station", random.Random(0), 2)
    assert typo != "Where is the nearest station" and len(typo.split()) == 5


def test_the_draft_has_reverse_questions_answers_and_a_probe_no_drill_overlaps():
    draft = draft_facts(ENTRIES, "Pedalo", seed=3)
    assert draft_facts(ENTRIES, "Pedalo", seed=3) == draft  # same input, same draft
    deposit = draft.facts[0]
    yes, no = deposit.reverse
    assert any("€150" in q for q in yes[0]) and any("€150" not in q and "€" in q for q in no[0])
    assert all("€150" in a for a in yes[1] + no[1])
    assert len(set(deposit.answers)) >= 4 and deposit.answers[0] == ENTRIES[0].answer
    drills = [q for fact in draft.facts for q in fact.all_questions()]
    probe = [item["question"] for item in draft.probe]
    assert not find_overlaps(drills, probe) and not set(drills) & set(probe)
    # The probe: only scored facts, expect = the fact's patterns, reject = the other money value.
    assert {item["fact"] for item in draft.probe} == {f.id for f in draft.facts[:3]}
    item = next(i for i in draft.probe if i["fact"] == deposit.id)
    assert item["expect"] == deposit.patterns
    assert any(re.search(r, "It's €32.") for r in item["reject"]) and not any(re.search(r, "€150") for r in
                                                                               item["reject"])
    assert (draft.dev, draft.test) == split_probe(draft.probe)
    assert not draft.facts[3].scored and "not scored" in " ".join(draft.facts[3].warnings)


def test_drills_that_find_overlaps_flags_are_dropped(monkeypatch):
    from chatfreeze.facts import draft as draft_module
    from chatfreeze.facts.overlap import Overlap

    # A stricter find_overlaps than today's: every long drill question about the deposit overlaps a probe question.
    monkeypatch.setattr(draft_module, "find_overlaps", lambda drills, probe: [
        Overlap(d, probe[0], "content", 1.0) for d in drills if "deposit" in d.lower() and len(d) > 30])
    draft = draft_facts(ENTRIES, "Pedalo", seed=3)
    kept = [q for q in draft.facts[0].all_questions() if "deposit" in q.lower()]
    assert kept and all(len(q) <= 30 for q in kept) and draft.facts[0].scored
    assert draft.dropped_overlaps > 0


def test_the_example_faq_meets_the_goals_in_seconds(tmp_path):
    started = time.perf_counter()
    draft = draft_from_files(str(EXAMPLE_FAQ), company="Spokewise")
    assert time.perf_counter() - started < 10
    scored = [f for f in draft.facts if f.values]
    assert len(draft.facts) >= 20 and len(scored) >= 15
    for fact in scored:
        assert len(fact.all_questions()) >= 10 and len(fact.answers) >= 4, fact.id
        assert sum(i["fact"] == fact.id for i in draft.dev) >= 2, fact.id
        assert sum(i["fact"] == fact.id for i in draft.test) >= 2, fact.id
    drills = [q for fact in draft.facts for q in fact.all_questions()]
    assert not find_overlaps(drills, [item["question"] for item in draft.probe])
    kinds = {v.kind for f in draft.facts for v in f.values}
    assert kinds >= {"money", "duration", "time", "weekday", "date", "email", "phone", "url", "percent",
                     "quantity", "address"}


# --- readers ------------------------------------------------------------------------------------------------------

def test_faq_formats_read_the_same_entries(tmp_path):
    rows = [("How much is the deposit?", "It is €150."), ("When do you open?", "At 9:00 every day.")]
    (tmp_path / "faq.jsonl").write_text("".join(json.dumps({"Question": q, "Answer": a}) + "\n" for q, a in rows))
    (tmp_path / "faq.md").write_text("# FAQ\n\n" + "".join(f"## {q}\n\n{a}\n\n" for q, a in rows))
    (tmp_path / "qa.md").write_text("".join(f"Q: {q}\nA: {a}\n\n" for q, a in rows))
    (tmp_path / "faq.csv").write_text("prompt,response\n" + "".join(f'"{q}","{a}"\n' for q, a in rows))
    for name in ("faq.jsonl", "faq.md", "qa.md", "faq.csv"):
        entries = read_faq(tmp_path / name)
        assert [(e.question, e.answer) for e in entries] == rows, name


def test_a_catalogue_gives_a_fact_per_product_and_attribute_named_the_customers_ways(tmp_path):
    catalogue = tmp_path / "products.csv"
    catalogue.write_text("name,kind,price,warranty,colours\n"
                         "Kestrel Aurora Kettle 1.7,kettle,€49,2 years,\"red, teal\"\n"
                         "Kestrel Mini Toaster,toaster,€35,1 year,white\n")
    draft = draft_from_files(None, str(catalogue), company="Kestrel")
    ids = [f.id for f in draft.facts]
    assert len(ids) == 6 and "kestrel_aurora_kettle_1_7_price" in ids
    kettle = draft.facts[0]
    asked = " ".join(kettle.all_questions())
    assert "Kestrel Aurora Kettle 1.7" in asked and "Aurora Kettle 1.7" in asked and "kettle" in asked
    colours = next(f for f in draft.facts if f.id.endswith("kettle_1_7_colours"))
    assert colours.scored and all(re.search(p, "It comes in red and teal.", re.I) for p in colours.patterns)
    # A FAQ and a catalogue in one sheet.
    both = draft_from_files(str(EXAMPLE_FAQ), str(catalogue), company="Kestrel")
    assert len(both.facts) == len(draft_from_files(str(EXAMPLE_FAQ)).facts) + 6


# --- bad input: one line, exit 2, nothing overwritten ---------------------------------------------------------------

BAD_FAQS = {
    "no columns": ("faq.csv", "title,body\nA,B\n", "no question and answer columns"),
    "empty answer": ("faq.csv", "question,answer\nHow much?,€5\nWhen?,\n", "faq.csv:3: empty answer"),
    "empty question": ("faq.jsonl", '{"question": " ", "answer": "€5"}\n', "faq.jsonl:1: empty question"),
    "duplicate": ("faq.csv", "question,answer\nHow much is it?,€5\nhow much is it,€6\n", "duplicate question"),
    "conflict": ("faq.csv", "question,answer\nHow much is the deposit?,The deposit is €150.\n"
                 "What is the deposit?,A deposit of €200.\nWhen do you open?,At 9:00.\n", "for the same question"),
    "too small": ("faq.csv", "question,answer\nHow much is it?,€5\nIs it nice?,Yes very.\n", "too small to carve"),
    "no markdown entries": ("faq.md", "Just some text.\n", "no '## question' headings"),
}


@pytest.mark.parametrize("case", list(BAD_FAQS))
def test_bad_faqs_are_one_line_exit_2_and_nothing_is_written(case, tmp_path, capsys):
    from chatfreeze.cli import main

    name, body, message = BAD_FAQS[case]
    (tmp_path / name).write_text(body)
    out = tmp_path / "sheet.yaml"
    assert main(["facts", "init", str(tmp_path / name), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not (tmp_path / "sheet_probe.jsonl").exists()


def test_init_refuses_to_overwrite_without_force(tmp_path, capsys):
    from chatfreeze.cli import main

    sheet, probe = tmp_path / "sheet.yaml", tmp_path / "probe.jsonl"
    probe.write_text("mine\n")
    args = ["facts", "init", str(EXAMPLE_FAQ), "--output", str(sheet), "--probe", str(probe)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--probe" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert probe.read_text() == "mine\n" and not sheet.exists()
    assert main([*args, "--force"]) == 0 and probe.read_text() != "mine\n"


# --- the command end to end ---------------------------------------------------------------------------------------

def test_init_writes_a_sheet_that_loads_and_a_split_probe(tmp_path, capsys):
    from chatfreeze.cli import main
    from chatfreeze.evaluation.probes import load_facts_probe

    sheet_path = tmp_path / "spokewise.yaml"
    assert main(["facts", "init", str(EXAMPLE_FAQ), "--output", str(sheet_path), "--company", "Spokewise"]) == 0
    out = capsys.readouterr().out
    assert "entry" in out and "warnings" in out and "not scored" in out and "Wrote" in out
    sheet = load_facts_sheet(sheet_path)
    text = sheet_path.read_text()
    assert "# values found:" in text and "# not scored" in text and sheet.company == "Spokewise"
    probe_path = tmp_path / "spokewise_probe.jsonl"
    items = [json.loads(line) for line in probe_path.read_text().splitlines()]
    assert set(items[0]) == {"id", "fact", "question", "expect", "reject"}
    assert {i["fact"] for i in items} <= set(sheet.ids)
    assert len(load_facts_probe(str(probe_path))) == len(items)
    drills = [q for _, q in sheet.questions()]
    assert not find_overlaps(drills, [i["question"] for i in items])
    # Same input and seed, same files.
    again = tmp_path / "again.yaml"
    assert main(["facts", "init", str(EXAMPLE_FAQ), "--output", str(again), "--company", "Spokewise"]) == 0
    assert again.read_text() == text


def test_the_exposure_report_shows_the_plan_train_would_use(capsys):
    from chatfreeze.cli import main

    assert main(["facts"]) == 0  # the default recipe: its sheet, its dialogues, 20 drills per fact topped up by need
    out = capsys.readouterr().out
    assert re.search(r"\(20 per fact, \d+ facts topped up to \d+ at most\)", out)
    assert main(["facts", "--config", str(REPO_ROOT / "chatfreeze" / "recipes" / "facts.yaml")]) == 0
    assert "(60 per fact)" in capsys.readouterr().out


def test_the_exposure_report_of_a_faq_recipe(capsys):
    from chatfreeze.cli import main

    assert main(["facts", "--config", str(REPO_ROOT / "chatfreeze" / "recipes" / "faq.yaml"), "--faq",
                 str(EXAMPLE_FAQ), "--faq_company", "Spokewise"]) == 0
    out = capsys.readouterr().out
    assert "0 support dialogues" in out and "(60 per fact)" in out


# --- training on a FAQ alone --------------------------------------------------------------------------------------

def small_faq(tmp_path: Path) -> Path:
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nHow much is the deposit?,The deposit is €150.\n"
                   "When do you open?,We open at 9:00.\nHow long is the warranty?,The warranty lasts 2 years.\n")
    return faq


def test_a_run_on_a_faq_alone_trains_on_its_drills_and_replay(tiny_model_dir, tmp_path, monkeypatch):
    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import parse_args

    monkeypatch.setenv("CHATFREEZE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(recipe, "generate_reply", lambda *args, **kwargs: "(stub reply)")
    out = tmp_path / "out"
    args = parse_args(["--config", str(REPO_ROOT / "chatfreeze" / "recipes" / "faq.yaml"),
                       "--faq", str(small_faq(tmp_path)), "--faq_company", "Pedalo",
                       "--model_name_or_path", str(tiny_model_dir), "--num_frozen_layers", "2", "--max_steps", "2",
                       "--facts_per_fact", "4", "--facts_plan", "uniform", "--replay_ratio", "0",
                       "--text_replay_ratio", "0.5",
                       "--text_replay_tokens", "16", "--per_device_train_batch_size", "4", "--output_dir", str(out),
                       "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no",
                       "--general_text", "none", "--skills_probe", "none", "--generation_max_new_tokens", "8",
                       "--generation_eval_samples", "0"])
    run = recipe.start(*args)
    assert run.facts_args.facts.endswith("facts.yaml") and run.eval_args.facts_probe.endswith(".jsonl")
    assert "Pedalo" in run.data_args.system_prompt
    for step in (recipe.load, recipe.plan, recipe.data):
        run = step(run)
    assert len(run.facts.drills) == 3 * 4 and len(run.text_replay_dataset) == 6  # 0.5 per drill
    assert len(run.train_dataset) == 12 + 6
    for step in (recipe.build_trainer, recipe.train, recipe.finish):
        run = step(run)
    info = json.loads((out / "run_info.json").read_text())
    assert info["data"]["train"] is None and info["facts"]["drills"] == 12
    evaluation = json.loads((out / "evaluation.json").read_text())  # the drafted probe, scored before and after
    assert "facts_test_accuracy" in json.dumps(evaluation)
    from chatfreeze.publish.card import build_model_card
    from chatfreeze.publish.run import load_run

    assert "Pedalo" in build_model_card(load_run(out), "acme/bot")


def test_no_dialogues_and_no_faq_is_one_line(tmp_path):
    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import parse_args

    with pytest.raises(ValueError, match="no training data"):
        recipe.start(*parse_args(["--config", str(REPO_ROOT / "chatfreeze" / "recipes" / "faq.yaml"),
                                  "--output_dir", str(tmp_path / "out"), "--use_cpu", "true"]))


def test_faq_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("question,answer\n\"A\nquestion?\",€5\n,€6\n")
    with pytest.raises(FaqError, match=r"faq.csv:4: empty question"):
        read_faq(path)


def test_the_shipped_example_draft_is_what_init_makes(tmp_path, monkeypatch):
    from chatfreeze.cli import main

    monkeypatch.chdir(REPO_ROOT)  # the draft names its FAQ as given: examples/spokewise_faq.csv
    sheet, probe = tmp_path / "s.yaml", tmp_path / "p.jsonl"
    assert main(["facts", "init", "examples/spokewise_faq.csv", "--output", str(sheet), "--probe", str(probe),
                 "--company", "Spokewise"]) == 0
    assert sheet.read_text() == (REPO_ROOT / "examples" / "spokewise_facts.yaml").read_text()
    assert probe.read_text() == (REPO_ROOT / "examples" / "spokewise_probe.jsonl").read_text()


def test_a_fact_whose_every_phrasing_overlaps_keeps_them_and_loses_those_probe_questions(monkeypatch):
    from chatfreeze.facts import draft as draft_module
    from chatfreeze.facts.overlap import Overlap

    def deposit_overlaps(drills, probe):  # every deposit drill overlaps every deposit probe question
        return [Overlap(d, p, "content", 1.0) for d in drills for p in probe
                if "deposit" in d.lower() and "deposit" in p.lower()]

    monkeypatch.setattr(draft_module, "find_overlaps", deposit_overlaps)
    draft = draft_facts(ENTRIES, "Pedalo", seed=3)
    deposit = draft.facts[0]
    assert len(deposit.all_questions()) >= 10 and not deposit.scored
    assert "probe question(s) dropped" in " ".join(deposit.warnings)
    assert all(item["fact"] != deposit.id for item in draft.probe)


VALUE_SNIPPETS = ["€12", "$4.50/month", "£1,200", "12/31/2026", "3 March", "Oct 5th", "10am-6pm", "9:00–17:30",
                  "Mon-Fri", "Sundays", "30-day", "2-3 working days", "48 hours", "support@x-y.co.uk",
                  "https://www.x.io/a/b", "(555) 123-4567", "+44 20 7946 0000", "20%", "5 kg", "up to 3 users",
                  "aged 16+", "12 Baker St.", "Hauptstraße 5", "noon", "one week", "1.5 km", "two seats"]
WORDS = ("how what when where can do you is the price for my order a delivery return account plan store card gift "
         "voucher shipping time open yes 3").split()


@pytest.mark.parametrize("seed", range(25))
def test_any_faq_drafts_a_sheet_and_probe_that_load_with_no_overlap(seed, tmp_path):
    """FAQs of random words and values: each draft loads, its probe loads, nothing overlaps (or a one-line
    FaqError)."""
    from chatfreeze.evaluation.probes import load_facts_probe
    from chatfreeze.facts.draft import probe_jsonl, sheet_yaml

    rng = random.Random(seed)
    entries = [FaqEntry(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) + f" {i}?",
                        " ".join(rng.choice(WORDS + VALUE_SNIPPETS) for _ in range(rng.randint(1, 12))) + ".",
                        f"faq.csv:{i + 2}") for i in range(rng.randint(3, 25))]
    try:
        draft = draft_facts(entries, rng.choice([None, "Acme"]), seed)
    except FaqError as err:
        assert len(str(err).splitlines()) == 1
        return
    (tmp_path / "s.yaml").write_text(sheet_yaml(draft, "faq.csv"))
    (tmp_path / "p.jsonl").write_text(probe_jsonl(draft))
    sheet = load_facts_sheet(tmp_path / "s.yaml")
    assert len(load_facts_probe(str(tmp_path / "p.jsonl"))) == len(draft.probe)
    assert not find_overlaps([q for _, q in sheet.questions()], [item["question"] for item in draft.probe])
