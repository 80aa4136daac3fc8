"""The committed support dialogues in data/: reproducible from the script, well-formed, and consistent with
the company facts. Fast (one regeneration, ~1 s)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / "data"
SCRIPT = REPO_ROOT / "scripts" / "make_support_data.py"
ORDER_RE = re.compile(r"KC-\d{6}")
# Anything a customer might type as an order number: 5-7 digits, optionally behind "#", "KC", "CK", "K" ...
ORDER_CANDIDATE_RE = re.compile(r"(?i)(?:#|\b[kc]{1,2}[- ]?)?(?<!\d)\d{5,7}(?!\d)")
FORMAT_HINT = "KC- followed by 6 digits"
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")


def _load_script():
    spec = importlib.util.spec_from_file_location("make_support_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


msd = _load_script()


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
    msd.main(["--out_dir", str(tmp_path)])  # defaults = the command in data/README.md
    for name in msd.OUTPUT_FILES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), (
            f"data/{name} is stale: rerun `python scripts/make_support_data.py`"
        )
    assert "train" in capsys.readouterr().out


def test_readme_shows_system_prompt_facts_and_command():
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert msd.SYSTEM_PROMPT in readme
    assert "python scripts/make_support_data.py --seed 1234" in readme
    assert "Apache-2.0" in readme
    for value in msd.COMPANY_FACTS.values():
        assert value in readme


def test_schema_and_turn_order(splits):
    assert len(splits["train"]) == 800 and len(splits["validation"]) == 100
    for records in splits.values():
        for rec in records:
            assert set(rec) == {"messages", "intent", "id"}
            msgs = rec["messages"]
            assert msgs[0] == {"role": "system", "content": msd.SYSTEM_PROMPT}
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
                    for number in re.findall(r"KC-\d+", msg["content"]):
                        assert ORDER_RE.fullmatch(number), (rec["id"], number)
                        # the assistant repeats the customer's number, or quotes the format example
                        assert number in given or (number == "KC-123456" and FORMAT_HINT in msg["content"])
    assert corrections >= 50  # the wrong-format-first exchange is well represented


def test_assistant_facts_are_consistent(splits):
    hours = msd.COMPANY_FACTS["support_hours"]
    for rid, sentence in _assistant_sentences(splits):
        low = sentence.lower()
        for m in re.finditer(r"within (\d+) days|(\d+)-day", sentence):
            days = int(m.group(1) or m.group(2))
            if "damag" in low:
                assert days == 14, (rid, sentence)
            elif "return" in low:
                assert days == 30, (rid, sentence)
            else:
                assert days == 7 and "delet" in low, (rid, sentence)
        for a, b in re.findall(r"(\d+)\s*[–-]\s*(\d+) business days", sentence):
            assert (a, b) in {("5", "7"), ("3", "5"), ("1", "2")}, (rid, sentence)
        for word, expected in (("standard", "3–5"), ("express", "1–2"), ("refund", "5–7")):
            for m in re.finditer(rf"(?i){word}[^;]*?(\d+\s*[–-]\s*\d+)", sentence):
                assert m.group(1) == expected, (rid, word, sentence)
        if "€4.95" in sentence:
            assert "standard" in low, (rid, sentence)
        if "€9.95" in sentence:
            assert "express" in low, (rid, sentence)
        assert sentence.count("€50") == sentence.count("over €50"), (rid, sentence)
        assert all(v == "50" for v in re.findall(r"over €(\d+)", sentence)), (rid, sentence)
        assert all(y == "2" for y in re.findall(r"(\d+)-year warranty", sentence)), (rid, sentence)
        assert all(h == "1" for h in re.findall(r"valid for (\d+) hour", sentence)), (rid, sentence)
        assert all(e == "support@kestrel.example" for e in re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", sentence))
        assert all(p == "+44 20 7946 0000" for p in re.findall(r"\+\d[\d ]{8,}\d", sentence)), (rid, sentence)
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
