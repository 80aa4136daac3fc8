"""The committed support dialogues in data/: reproducible from the script and data/company.yaml, well-formed,
and consistent with the company's facts. Fast (a few regenerations, ~1 s each)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / "data"
SCRIPT = REPO_ROOT / "scripts" / "make_support_data.py"
COMPANY_FILE = DATA / "company.yaml"
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _load_script():
    spec = importlib.util.spec_from_file_location("make_support_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


msd = _load_script()
COMPANY = msd.load_company(COMPANY_FILE)
VALUES = COMPANY.values
ORDER_RE = re.compile(re.escape(COMPANY.order_prefix) + rf"\d{{{COMPANY.order_digits}}}")
# Anything a customer might type as an order number: a digit more or fewer, behind "#", "KC", "CK", "K" ...
ORDER_CANDIDATE_RE = re.compile(rf"(?i)(?:#|\b[{COMPANY.order_prefix[:-1]}]{{1,2}}[- ]?)?(?<!\d)"
                                rf"\d{{{COMPANY.order_digits - 1},{COMPANY.order_digits + 1}}}(?!\d)")
FORMAT_HINT = COMPANY.facts["order_number_format"]  # "KC- followed by 6 digits"


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {name: _read(DATA / f"{name}.jsonl") for name in ("train", "validation")}


def _assistant_sentences(splits: dict[str, list[dict]]):
    for records in splits.values():
        for rec in records:
            for msg in rec["messages"]:
                if msg["role"] == "assistant":
                    for sentence in SENTENCE_END_RE.split(msg["content"]):
                        yield rec["id"], sentence


def test_committed_files_equal_a_fresh_regeneration(tmp_path, capsys):
    msd.main(["--out_dir", str(tmp_path)])  # defaults = the command in data/README.md, from data/company.yaml
    for name in msd.OUTPUT_FILES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), (
            f"data/{name} is stale: rerun `python scripts/make_support_data.py`"
        )
    assert "train" in capsys.readouterr().out


def test_the_data_follows_company_yaml(tmp_path):
    """The script holds no copy of the company: an edit to company.yaml changes what it writes, so the
    staleness test above fails until data/ is regenerated."""
    raw = yaml.safe_load(COMPANY_FILE.read_text(encoding="utf-8"))
    refund = next(f for f in raw["facts"] if f["id"] == "refund_time")
    refund["text"] = "3–4 business days"
    raw["products"][0]["short"] = "electric kettle"
    raw["system_prompt"] = raw["system_prompt"].replace("Be concise", "Be brief")
    edited = tmp_path / "company.yaml"
    edited.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    msd.main(["--out_dir", str(tmp_path / "out"), "--company", str(edited)])
    readme = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    train = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8")
    assert "| `refund_time` | 3–4 business days |" in readme and "Be brief" in readme
    assert "within 3–4 business days" in train and "5–7 business days." not in train
    assert "electric kettle" in train and '"Be concise' not in train


@pytest.mark.parametrize(("break_it", "message"), [
    (lambda raw: raw["customers"].pop("names"), "customers.names is missing"),
    (lambda raw: raw["facts"][0].update(id="Company Name"), "facts[0].id 'Company Name' must be a new"),
    (lambda raw: raw["products"][0].update(damage="glass"), "damage.glass is missing"),
    (lambda raw: raw["basket_totals"]["over_threshold"].append("€50.00"), "over_threshold must all be amounts over"),
])
def test_company_file_errors_name_the_key(tmp_path, break_it, message):
    raw = yaml.safe_load(COMPANY_FILE.read_text(encoding="utf-8"))
    break_it(raw)
    broken = tmp_path / "company.yaml"
    broken.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        msd.main(["--out_dir", str(tmp_path / "out"), "--company", str(broken)])
    assert str(exc.value.code).startswith(f"error: --company {broken}: ") and message in str(exc.value.code)
    assert not (tmp_path / "out").exists()


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def test_every_fact_has_an_id_text_and_values_that_agree():
    assert len(COMPANY.facts) >= 40
    for fact_id, text in COMPANY.facts.items():
        assert VALUES[fact_id], fact_id
        for leaf in _leaves(VALUES[fact_id]):
            assert isinstance(leaf, str | int | float) and not isinstance(leaf, bool), (fact_id, leaf)
            spelled = {str(leaf)} | ({NUMBER_WORDS[leaf]} if isinstance(leaf, int) and leaf < 11 else set())
            assert any(s in text for s in spelled), (fact_id, leaf, text)


def test_facts_probe_uses_the_company_fact_ids():
    probe_ids = {json.loads(line)["fact"] for line in (DATA / "facts_probe.jsonl").read_text().splitlines()}
    assert probe_ids == set(COMPANY.facts)


def test_readme_shows_system_prompt_facts_and_command():
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert COMPANY.system_prompt in readme
    assert "python scripts/make_support_data.py --seed 1234" in readme
    assert "Apache-2.0" in readme
    for fact_id, text in COMPANY.facts.items():
        assert f"| `{fact_id}` | {text} |" in readme


def test_schema_and_turn_order(splits):
    assert len(splits["train"]) == 800 and len(splits["validation"]) == 100
    for records in splits.values():
        for rec in records:
            assert set(rec) == {"messages", "intent", "id"}
            msgs = rec["messages"]
            assert msgs[0] == {"role": "system", "content": COMPANY.system_prompt}
            roles = [m["role"] for m in msgs[1:]]
            assert roles == ["user", "assistant"] * (len(roles) // 2), rec["id"]
            assert roles[-1] == "assistant"
            assert all(set(m) == {"role", "content"} and m["content"].strip() for m in msgs)
            assert msd.approx_tokens(msgs) <= msd.MAX_APPROX_TOKENS


def test_intents_stratified_ids_unique_no_shared_dialogue(splits):
    train_intents = {r["intent"] for r in splits["train"]}
    val_intents = {r["intent"] for r in splits["validation"]}
    assert len(train_intents) >= 15
    assert train_intents == val_intents == set(msd.INTENTS)
    ids = [r["id"] for records in splits.values() for r in records]
    assert len(ids) == len(set(ids))
    assert all(r["id"].startswith(r["intent"] + "-") for records in splits.values() for r in records)

    def key(r):
        return json.dumps(r["messages"], ensure_ascii=False)

    assert not {key(r) for r in splits["train"]} & {key(r) for r in splits["validation"]}


def test_order_numbers(splits):
    corrections = 0
    for records in splits.values():
        for rec in records:
            msgs = rec["messages"]
            given: set[str] = set()
            for i, msg in enumerate(msgs):
                if msg["role"] == "user":
                    found = [m.group(0) for m in ORDER_CANDIDATE_RE.finditer(msg["content"])]
                    reply = msgs[i + 1]["content"]
                    if any(not ORDER_RE.fullmatch(f) for f in found):
                        assert FORMAT_HINT in reply, (rec["id"], msg["content"])  # a wrong format is explained
                        corrections += 1
                    elif found:
                        assert FORMAT_HINT not in reply, (rec["id"], msg["content"])  # a valid one is accepted
                        given.update(found)
                elif msg["role"] == "assistant":
                    for number in re.findall(re.escape(COMPANY.order_prefix) + r"\d+", msg["content"]):
                        assert ORDER_RE.fullmatch(number), (rec["id"], number)
                        # the assistant repeats the customer's number, or quotes the format example
                        example = COMPANY.facts["order_number_example"]
                        assert number in given or (number == example and FORMAT_HINT in msg["content"])
    assert corrections >= 50  # the wrong-format-first exchange is well represented


def _business_days(fact_id: str) -> tuple[int, int]:
    return VALUES[fact_id]["min_business_days"], VALUES[fact_id]["max_business_days"]


def test_assistant_facts_are_consistent(splits):
    """Every number, amount and contact detail the assistant states is the one in data/company.yaml, those
    the templates write out themselves ("our 2-year warranty") included."""
    facts, hours = COMPANY.facts, COMPANY.facts["support_hours"]
    day_limits = {"damag": VALUES["damaged_on_arrival"]["report_within_days"],
                  "return": VALUES["return_window"]["days"], "delet": VALUES["account_deletion"]["completed_within_days"]}
    ranges = {word: _business_days(fact_id) for word, fact_id in
              (("standard", "standard_shipping"), ("express", "express_shipping"), ("refund", "refund_time"))}
    threshold, currency = facts["free_shipping_threshold"], VALUES["free_shipping_threshold"]["currency"]
    for rid, sentence in _assistant_sentences(splits):
        low = sentence.lower()
        for m in re.finditer(r"within (\d+) days|(\d+)-day", sentence):
            topic = next((t for t in ("damag", "return") if t in low), "delet")
            assert int(m.group(1) or m.group(2)) == day_limits[topic] and topic in low, (rid, sentence)
        for a, b in re.findall(r"(\d+)\s*[–-]\s*(\d+) business days", sentence):
            assert (int(a), int(b)) in ranges.values(), (rid, sentence)
        for word, expected in ranges.items():
            for m in re.finditer(rf"(?i){word}[^;]*?(\d+)\s*[–-]\s*(\d+)", sentence):
                assert (int(m.group(1)), int(m.group(2))) == expected, (rid, word, sentence)
        for word in ("standard", "express"):
            if facts[f"{word}_shipping_cost"] in sentence:
                assert word in low, (rid, sentence)
        assert sentence.count(threshold) == sentence.count(f"over {threshold}"), (rid, sentence)
        amount = str(VALUES["free_shipping_threshold"]["amount"])
        assert all(v == amount for v in re.findall(rf"over {re.escape(currency)}(\d+)", sentence)), (rid, sentence)
        for pattern, value in ((r"(\d+)-year warranty", VALUES["warranty"]["years"]),
                               (r"valid for (\d+) hour", VALUES["password_reset"]["link_valid_hours"]),
                               (r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", VALUES["email"]["address"]),
                               (r"\+\d[\d ]{8,}\d", VALUES["phone"]["number"])):
            assert all(found == str(value) for found in re.findall(pattern, sentence)), (rid, pattern, sentence)
        # opening times only ever appear as the full, exact support-hours string
        assert not re.search(r"\d{1,2}:\d{2}", sentence.replace(hours, "")), (rid, sentence)
        if "Mon–Fri" in sentence and ":" in sentence:
            assert hours in sentence, (rid, sentence)


def test_refuses_to_overwrite_foreign_files(tmp_path, capsys):
    small = ["--out_dir", str(tmp_path), "--num_train", "20", "--num_validation", "20"]
    foreign = tmp_path / "train.jsonl"
    foreign.write_text("my own notes\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        msd.main(small)
    message = str(exc.value.code)
    assert message.startswith("error: refusing to overwrite") and "--force" in message and "\n" not in message
    assert foreign.read_text(encoding="utf-8") == "my own notes\n"
    assert not (tmp_path / "validation.jsonl").exists()  # nothing written before the check

    msd.main([*small, "--force"])
    msd.main(small)  # its own previous outputs are overwritten without --force
    assert len(_read(tmp_path / "train.jsonl")) == 20

    (tmp_path / "README.md").write_text("# hand-written\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        msd.main(small)
