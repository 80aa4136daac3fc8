"""chatfreeze.data: loading, validation, assistant-only labels, over-long policies, collator, converters."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch
from conftest import CHATML_TEMPLATE, build_chatml_tokenizer

from chatfreeze.data import (
    IGNORE_INDEX,
    DataError,
    DataReport,
    DialogueCollator,
    build_dataset,
    convert_abcd,
    convert_bitext_csv,
    convert_sgd,
    load_dialogues,
    load_dialogues_from_args,
    tokenize_dialogue,
    validate_dialogue,
)
from chatfreeze.training.arguments import DataArguments

BITEXT_CSV = "bitext-customer-support/Bitext_Sample_Customer_Support_Training_Dataset.csv"
SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict:
    return {"role": "system", "content": text}


def trained_runs(encoded: dict, tokenizer) -> list[str]:
    """Decoded text of each maximal run of labelled tokens."""
    runs, current = [], []
    for token, label in zip(encoded["input_ids"], encoded["labels"], strict=True):
        if label != IGNORE_INDEX:
            assert label == token  # a label is the token itself; the model shifts internally
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run, skip_special_tokens=False) for run in runs]


def masked_text(encoded: dict, tokenizer) -> str:
    ids = [
        t for t, label in zip(encoded["input_ids"], encoded["labels"], strict=True) if label == IGNORE_INDEX
    ]
    return tokenizer.decode(ids, skip_special_tokens=False)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def exchanges(n: int) -> list[dict]:
    messages = []
    for i in range(n):
        messages += [user(f"question number {i}?"), assistant(f"answer number {i}.")]
    return messages


# ----------------------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------------------


def test_labels_cover_assistant_content_and_end_token(chatml_tokenizer):
    dialogue = [user("Where is my order?"), assistant("It ships tomorrow.")]
    encoded = tokenize_dialogue(dialogue, chatml_tokenizer, max_length=512)
    assert set(encoded) == {"input_ids", "labels"}
    # input_ids are exactly the template's rendering, tokenized once.
    text = chatml_tokenizer.apply_chat_template(dialogue, tokenize=False)
    assert encoded["input_ids"] == chatml_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert trained_runs(encoded, chatml_tokenizer) == ["It ships tomorrow.<|im_end|>"]
    # The newline the template writes after <|im_end|> is the last token and is not trained.
    assert chatml_tokenizer.decode(encoded["input_ids"][-1:]) == "\n"
    assert encoded["labels"][-1] == IGNORE_INDEX


def test_system_user_and_headers_are_masked(chatml_tokenizer):
    dialogue = [system("Be brief."), user("Hello?"), assistant("Hi.")]
    encoded = tokenize_dialogue(dialogue, chatml_tokenizer, max_length=512)
    assert masked_text(encoded, chatml_tokenizer) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello?<|im_end|>\n"
        # the reply's header, then the newline after the reply's <|im_end|>
        "<|im_start|>assistant\n\n"
    )
    assert trained_runs(encoded, chatml_tokenizer) == ["Hi.<|im_end|>"]


def test_every_assistant_turn_is_labelled(chatml_tokenizer):
    dialogue = [
        user("a?"),
        assistant("first reply"),
        user("b?"),
        assistant("second reply"),
        user("c?"),
        assistant("third\nreply"),
    ]
    encoded = tokenize_dialogue(dialogue, chatml_tokenizer, max_length=512)
    assert trained_runs(encoded, chatml_tokenizer) == [
        "first reply<|im_end|>",
        "second reply<|im_end|>",
        "third\nreply<|im_end|>",
    ]
    masked = masked_text(encoded, chatml_tokenizer)
    for question in ("a?", "b?", "c?"):
        assert question in masked
    assert "reply" not in masked


def test_consecutive_assistant_messages_are_both_labelled(chatml_tokenizer):
    encoded = tokenize_dialogue([user("q"), assistant("one"), assistant("two")], chatml_tokenizer, 512)
    assert trained_runs(encoded, chatml_tokenizer) == ["one<|im_end|>", "two<|im_end|>"]


def test_template_default_system_prompt_is_rendered_and_masked(chatml_tokenizer):
    encoded = tokenize_dialogue(exchanges(2), chatml_tokenizer, max_length=512)
    masked = masked_text(encoded, chatml_tokenizer)
    assert masked.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert trained_runs(encoded, chatml_tokenizer) == [
        "answer number 0.<|im_end|>",
        "answer number 1.<|im_end|>",
    ]


def test_not_prefix_stable_template_raises():
    # Like reasoning templates: earlier assistant turns lose their <think> part, the latest keeps it.
    tokenizer = build_chatml_tokenizer()
    tokenizer.chat_template = CHATML_TEMPLATE.replace(
        "message['content']",
        "(message['content'].split('</think>')[-1] if message['role'] == 'assistant' and not loop.last "
        "else message['content'])",
    )
    dialogue = [user("a"), assistant("<think>hmm</think>yes"), user("b"), assistant("no")]
    with pytest.raises(DataError, match="not prefix-stable") as info:
        tokenize_dialogue(dialogue, tokenizer, max_length=512, where="train.jsonl:7")
    assert str(info.value).startswith("train.jsonl:7: ")
    assert "\n" not in str(info.value)


def merging_tokenizer():
    """Byte-level tokenizer that merges two newlines into one token and has no pre-tokenizer split."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    pieces = specials + sorted(pre_tokenizers.ByteLevel.alphabet()) + ["ĊĊ"]  # ĊĊ is "\n\n" in byte-level
    vocab = {tok: i for i, tok in enumerate(pieces)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("Ċ", "Ċ")]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def test_token_across_turn_boundary_raises():
    tokenizer = merging_tokenizer()
    # The header's "\n" and the reply's leading "\n" become one token that belongs to both turns.
    with pytest.raises(DataError, match="merges text across a turn boundary"):
        tokenize_dialogue([user("q"), assistant("\nreply")], tokenizer, max_length=512)
    # Loaded data is stripped, so the same reply without the leading newline is fine.
    encoded = tokenize_dialogue([user("q"), assistant("reply")], tokenizer, max_length=512, exact_check=True)
    assert trained_runs(encoded, tokenizer) == ["reply<|im_end|>"]


def test_example_without_trained_token_raises_with_index():
    tokenizer = build_chatml_tokenizer()
    # A template that renders a redacted reply as its header only: that example has nothing to learn.
    tokenizer.chat_template = (
        "{% for message in messages %}{% if message['content'] == '[redacted]' %}"
        "{{ '<|im_start|>assistant\n' }}{% else %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    dialogues = [[user("q"), assistant("fine")], [user("q"), assistant("[redacted]")]]
    with pytest.raises(DataError, match=r"^train\.jsonl example 1: no trained token"):
        build_dataset(
            dialogues, tokenizer, max_length=512, overlong_policy="drop_example", source="train.jsonl"
        )


def test_tokenizer_without_chat_template_raises():
    tokenizer = build_chatml_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(DataError, match="no chat template"):
        tokenize_dialogue(exchanges(1), tokenizer, max_length=512)


# ----------------------------------------------------------------------------------------------------------
# Over-long dialogues
# ----------------------------------------------------------------------------------------------------------


def token_count(tokenizer, messages: list[dict]) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_drop_oldest_turns_keeps_system_and_latest_exchanges(chatml_tokenizer, caplog):
    dialogue = [system("Support bot."), *exchanges(4)]
    kept = [dialogue[0], *dialogue[5:]]  # the last two exchanges
    max_length = token_count(chatml_tokenizer, kept)
    assert token_count(chatml_tokenizer, [dialogue[0], *dialogue[3:]]) > max_length
    short = exchanges(1)
    with caplog.at_level(logging.WARNING, logger="chatfreeze.data"):
        dataset, report = build_dataset(
            [dialogue, short], chatml_tokenizer, max_length=max_length, overlong_policy="drop_oldest_turns"
        )
    assert len(dataset) == 2
    assert (report.truncated_overlong, report.dropped_overlong, report.dialogues_used) == (1, 0, 2)
    text = chatml_tokenizer.decode(dataset[0]["input_ids"], skip_special_tokens=False)
    assert text == chatml_tokenizer.apply_chat_template(kept, tokenize=False)
    assert "Support bot." in text and "number 1" not in text and "number 2" in text
    assert trained_runs(dataset[0], chatml_tokenizer) == [
        "answer number 2.<|im_end|>",
        "answer number 3.<|im_end|>",
    ]
    assert report.turns == 4 + 2 and report.assistant_turns == 3
    assert "1 kept without their oldest exchanges" in caplog.text


def test_drop_example_policy_counts(chatml_tokenizer, caplog):
    long, short = exchanges(6), exchanges(1)
    max_length = token_count(chatml_tokenizer, short) + 5
    with caplog.at_level(logging.WARNING, logger="chatfreeze.data"):
        dataset, report = build_dataset(
            [short, long, short], chatml_tokenizer, max_length=max_length, overlong_policy="drop_example"
        )
    assert len(dataset) == 2
    assert (
        report.dialogues_in,
        report.dialogues_used,
        report.dropped_overlong,
        report.truncated_overlong,
    ) == (
        3,
        2,
        1,
        0,
    )
    assert "1 dropped" in caplog.text


def test_drop_oldest_turns_drops_when_last_exchange_does_not_fit(chatml_tokenizer):
    last_too_long = [*exchanges(2), user("q"), assistant("x" * 400)]
    assert tokenize_dialogue(last_too_long, chatml_tokenizer, max_length=200) is None
    _, report = build_dataset(
        [last_too_long, exchanges(1)], chatml_tokenizer, max_length=200, overlong_policy="drop_oldest_turns"
    )
    assert (report.dropped_overlong, report.truncated_overlong, report.dialogues_used) == (1, 0, 1)


def test_trailing_user_turn_is_kept_with_the_last_reply(chatml_tokenizer):
    # Dropping exchanges must never leave a dialogue without an assistant turn.
    dialogue = [*exchanges(3), user("x" * 30)]
    max_length = token_count(chatml_tokenizer, dialogue[4:])
    encoded = tokenize_dialogue(dialogue, chatml_tokenizer, max_length=max_length)
    assert trained_runs(encoded, chatml_tokenizer) == ["answer number 2.<|im_end|>"]


def test_everything_dropped_raises(chatml_tokenizer):
    with pytest.raises(DataError, match="all 2 dialogues are longer than max_length=20"):
        build_dataset(
            [exchanges(3)] * 2, chatml_tokenizer, max_length=20, overlong_policy="drop_oldest_turns"
        )


def test_build_dataset_columns_and_report(chatml_tokenizer):
    dialogues = [exchanges(1), [system("s"), *exchanges(2)]]
    dataset, report = build_dataset(
        dialogues, chatml_tokenizer, max_length=512, overlong_policy="drop_oldest_turns", source="x.jsonl"
    )
    assert dataset.column_names == ["input_ids", "labels"]
    assert isinstance(report, DataReport)
    assert report.tokens == sum(len(ids) for ids in dataset["input_ids"])
    assert report.trained_tokens == sum(
        sum(label != IGNORE_INDEX for label in row) for row in dataset["labels"]
    )
    assert (report.turns, report.assistant_turns) == (6, 3)
    as_dict = report.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict and as_dict["source"] == "x.jsonl"
    summary = report.summary()
    assert "\n" not in summary and "2/2 dialogues used" in summary


def test_unknown_overlong_policy(chatml_tokenizer):
    with pytest.raises(DataError, match="overlong_policy 'cut'"):
        build_dataset([exchanges(1)], chatml_tokenizer, max_length=512, overlong_policy="cut")


# ----------------------------------------------------------------------------------------------------------
# Collator
# ----------------------------------------------------------------------------------------------------------


def test_collator_right_pads_and_masks(chatml_tokenizer):
    features = [
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
        {"input_ids": [8, 9, 10, 11, 12], "labels": [-100] * 4 + [12]},
    ]
    batch = DialogueCollator(chatml_tokenizer)(features)
    pad = chatml_tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 7, pad, pad], [8, 9, 10, 11, 12]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, -100], [-100, -100, -100, -100, 12]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_collator_pad_to_multiple_of(chatml_tokenizer):
    dataset, _ = build_dataset(
        [exchanges(1), exchanges(3)], chatml_tokenizer, max_length=512, overlong_policy="drop_example"
    )
    batch = DialogueCollator(chatml_tokenizer, pad_to_multiple_of=64)([dataset[0], dataset[1]])
    longest = max(len(row) for row in dataset["input_ids"])
    assert batch["input_ids"].shape == (2, -(-longest // 64) * 64)
    assert batch["attention_mask"].sum(dim=1).tolist() == [len(row) for row in dataset["input_ids"]]
    padded = batch["attention_mask"] == 0
    assert (batch["labels"][padded] == IGNORE_INDEX).all()
    assert (batch["input_ids"][padded] == chatml_tokenizer.pad_token_id).all()


# ----------------------------------------------------------------------------------------------------------
# Loading and validation
# ----------------------------------------------------------------------------------------------------------


def test_load_messages_jsonl_and_json(tmp_path):
    rows = [{"messages": exchanges(1)}, {"messages": [system("s"), *exchanges(2)]}]
    jsonl = write_jsonl(tmp_path / "d.jsonl", rows)
    assert load_dialogues(str(jsonl)) == [rows[0]["messages"], rows[1]["messages"]]
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(rows))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": rows}))
    assert load_dialogues(str(as_list)) == load_dialogues(str(wrapped)) == load_dialogues(str(jsonl))


def test_messages_are_stripped_and_extra_keys_dropped(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"messages": [{"role": "user", "content": "  hi \n", "name": "x"}, assistant("\nyo ")]}],
    )
    assert load_dialogues(str(path)) == [[user("hi"), assistant("yo")]]


def test_custom_messages_column(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"conversation": exchanges(1)}])
    assert load_dialogues(str(path), messages_column="conversation") == [exchanges(1)]
    with pytest.raises(DataError, match="no 'messages' column"):
        load_dialogues(str(path), data_format="messages")


@pytest.mark.parametrize(
    "prompt_column, response_column",
    [
        ("instruction", "response"),
        ("prompt", "completion"),
        ("question", "answer"),
        ("input", "output"),
        ("prompt", "response"),
        ("instruction", "output"),
    ],
)
def test_pair_columns_are_auto_detected(tmp_path, prompt_column, response_column):
    expected = [[user("How do I reset it?"), assistant("Hold the button.")]]
    csv_path = write_csv(
        tmp_path / "pairs.csv",
        ["id", prompt_column, response_column],
        [["1", "How do I reset it?", "Hold the button."]],
    )
    assert load_dialogues(str(csv_path)) == expected
    jsonl = write_jsonl(
        tmp_path / "pairs.jsonl", [{prompt_column: "How do I reset it?", response_column: "Hold the button."}]
    )
    assert load_dialogues(str(jsonl), data_format="pairs") == expected


def test_alpaca_input_is_appended_to_instruction(tmp_path):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"instruction": "Translate.", "input": "bonjour", "output": "hello"},
            {"instruction": "Hi", "input": "", "output": "Hey"},
        ],
    )
    assert load_dialogues(str(path)) == [
        [user("Translate.\n\nbonjour"), assistant("hello")],
        [user("Hi"), assistant("Hey")],
    ]


def test_explicit_column_mapping(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["customer", "agent"], [["My card broke.", "I'll send a new one."]])
    dialogues = load_dialogues(str(path), prompt_column="customer", response_column="agent")
    assert dialogues == [[user("My card broke."), assistant("I'll send a new one.")]]


def test_csv_missing_mapped_column_names_the_columns(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["question", "reply"], [["q", "r"]])
    with pytest.raises(DataError, match=r"c\.csv: no column 'answer' \(columns: question, reply\)"):
        load_dialogues(str(path), prompt_column="question", response_column="answer")
    with pytest.raises(DataError, match=r"cannot tell the format.*columns: question, reply"):
        load_dialogues(str(path))


def test_system_prompt_inserted_only_where_missing(tmp_path):
    rows = [{"messages": exchanges(1)}, {"messages": [system("Own prompt."), *exchanges(1)]}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    first, second = load_dialogues(str(path), system_prompt="You are Acme support.")
    assert first == [system("You are Acme support."), *exchanges(1)]
    assert second == [system("Own prompt."), *exchanges(1)]


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": exchanges(1)}) + "\n\n" + '{"messages": [\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: not valid JSON"):
        load_dialogues(str(path))


def test_bad_json_file_names_position(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"messages": []},\n  {oops}\n]')
    with pytest.raises(DataError, match=r"bad\.json:3:4: not valid JSON"):
        load_dialogues(str(path))


@pytest.mark.parametrize(
    "messages, message",
    [
        (
            [{"role": "bot", "content": "hi"}, assistant("x")],
            r"message 0 has unknown role 'bot'; allowed roles: system, user, assistant",
        ),
        ([user("   "), assistant("x")], r"message 0 \(user\) has empty content"),
        (
            [user("q"), {"role": "assistant", "content": ["a", "b"]}],
            r"message 1 \(assistant\) content must be a non-empty string",
        ),
        ([user("q"), {"role": "assistant"}], r"message 1 must be an object with 'role' and 'content'"),
        ([system("s"), user("q")], r"no assistant message"),
        ([user("q"), system("s"), assistant("a")], r"message 1 is a system message"),
        (
            [assistant("Hi!"), user("q"), assistant("a")],
            r"the first message after the system prompt must be a user message",
        ),
        ([], r"expected a non-empty list of messages"),
    ],
)
def test_validation_errors_name_the_line(tmp_path, messages, message):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": exchanges(1)}, {"messages": messages}])
    with pytest.raises(DataError, match=rf"d\.jsonl:2: {message}") as info:
        load_dialogues(str(path))
    assert "\n" not in str(info.value)


def test_validate_dialogue_accepts_a_good_dialogue_and_refuses_the_same_one_broken():
    good = [system("s"), *exchanges(2)]
    assert validate_dialogue(good, "x") is None  # accepted: no error, nothing returned
    # The check runs: the same dialogue without its first user turn (it opens with the assistant) fails.
    with pytest.raises(DataError, match="x: the first message after the system prompt must be a user message"):
        validate_dialogue([good[0], *good[2:]], "x")


def test_missing_field_in_later_record(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": exchanges(1)}, {"msgs": exchanges(1)}])
    with pytest.raises(DataError, match=r"d\.jsonl:2: no 'messages' field \(fields: msgs\)"):
        load_dialogues(str(path))


def test_csv_error_names_the_row_line(tmp_path):
    path = write_csv(tmp_path / "p.csv", ["prompt", "completion"], [["multi\nline q", "a"], ["q2", ""]])
    with pytest.raises(DataError, match=r"p\.csv:4: message 1 \(assistant\) has empty content"):
        load_dialogues(str(path))


def test_directory_prefers_split_files(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"messages": exchanges(1)}])
    write_jsonl(tmp_path / "validation.jsonl", [{"messages": exchanges(2)}, {"messages": exchanges(3)}])
    assert len(load_dialogues(str(tmp_path), split="train")) == 1
    assert len(load_dialogues(str(tmp_path), split="validation")) == 2
    assert len(load_dialogues(str(tmp_path), split="test")) == 3  # no test.* file: every file


def test_missing_local_path_and_unreachable_hub_dataset(monkeypatch):
    import datasets
    import huggingface_hub.constants

    with pytest.raises(DataError, match="data/nope.jsonl: no such file or directory"):
        load_dialogues("data/nope.jsonl")
    # Offline, so the Hub lookup fails at once instead of retrying the network.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        DataError, match="no-such-org/no-such-dataset: neither a local path nor a dataset reachable"
    ):
        load_dialogues("no-such-org/no-such-dataset")


def test_saved_dataset_directory(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"question": ["q1", "q2"], "answer": ["a1", "a2"]}).save_to_disk(
        str(tmp_path / "ds")
    )
    assert load_dialogues(str(tmp_path / "ds")) == [
        [user("q1"), assistant("a1")],
        [user("q2"), assistant("a2")],
    ]


def test_load_dialogues_from_args(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"messages": exchanges(1)}] * 5)
    valid = write_jsonl(tmp_path / "valid.jsonl", [{"messages": exchanges(2)}] * 3)
    args = DataArguments(
        dataset=str(train),
        eval_dataset=str(valid),
        max_train_samples=2,
        max_eval_samples=1,
        system_prompt="S.",
    )
    train_dialogues = load_dialogues_from_args(args)
    assert len(train_dialogues) == 2 and train_dialogues[0][0] == system("S.")
    assert load_dialogues_from_args(args, eval=True) == [[system("S."), *exchanges(2)]]
    assert load_dialogues_from_args(DataArguments(dataset=str(train), eval_dataset=""), eval=True) == []


# ----------------------------------------------------------------------------------------------------------
# Converters on the public corpora in ../shared/data
# ----------------------------------------------------------------------------------------------------------


def alternates(dialogue: list[dict]) -> bool:
    roles = [m["role"] for m in dialogue]
    changes = all(a != b for a, b in zip(roles, roles[1:], strict=False))
    return roles[0] == "user" and roles[-1] == "assistant" and changes


@pytest.mark.slow
def test_bitext_converter(shared_data):
    dialogues = convert_bitext_csv(shared_data / BITEXT_CSV)
    assert len(dialogues) == 4047
    first = dialogues[0]
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert first[0]["content"] == "how can I cancel purchase 113542617735902?"
    assert first[1]["content"].startswith("I understand how unnerving it can be to cancel an order")
    # auto-detection reads the same CSV as instruction/response pairs
    assert load_dialogues(str(shared_data / BITEXT_CSV))[:3] == dialogues[:3]


@pytest.mark.slow
def test_sgd_converter(shared_data):
    dialogues = convert_sgd(shared_data / "sgd" / "train")
    assert len(dialogues) == 1148  # per ../shared/data/sgd/README.md
    assert sum(len(d) for d in dialogues) == 16650  # README's turn count: nothing merged or lost
    assert all(alternates(d) for d in dialogues)
    single = convert_sgd(shared_data / "sgd" / "train" / "dialogues_022.json")
    assert len(single) == 128 and single[0][0]["content"].startswith("I'm looking for a one-way flight")
    assert len(load_dialogues(str(shared_data / "sgd" / "dev"))) == 256  # auto-detected, schema.json skipped


@pytest.mark.slow
def test_abcd_converter(shared_data):
    path = shared_data / "abcd-sample" / "abcd_sample.json"
    dialogues = convert_abcd(path)
    assert len(dialogues) == 3
    raw = json.loads(path.read_text())
    action_texts = [text for item in raw for speaker, text in item["original"] if speaker == "action"]
    assert len(action_texts) == 9
    contents = "\n".join(m["content"] for d in dialogues for m in d)
    assert not any(text in contents for text in action_texts)
    assert all(alternates(d) for d in dialogues)
    first = dialogues[0]
    # The agent's opening greeting (before the customer speaks) is trimmed; consecutive lines are merged.
    assert first[0] == user("Hi! I need to return an item, can you help me with that?")
    assert user("Username: cminh730\ncminh730@email.com\nOrder ID: 3348917502") in first
    assert load_dialogues(str(path)) == dialogues  # auto-detected from `original` + `scenario`


def check_smollm2_example(encoded: dict, dialogue: list[dict], tokenizer) -> None:
    replies = [m["content"] + "<|im_end|>" for m in dialogue if m["role"] == "assistant"]
    assert trained_runs(encoded, tokenizer) == replies
    masked = masked_text(encoded, tokenizer)
    assert SMOLLM2_DEFAULT_SYSTEM in masked  # the template's own system prompt, never trained
    assert all(m["content"] in masked for m in dialogue if m["role"] == "user")


@pytest.mark.slow
def test_smollm2_rendering_and_masks_on_shared_data(shared_data, smollm2_tokenizer):
    samples = {
        "bitext": convert_bitext_csv(shared_data / BITEXT_CSV)[:20],
        "sgd": convert_sgd(shared_data / "sgd" / "dev" / "dialogues_002.json")[:20],
        "abcd": convert_abcd(shared_data / "abcd-sample" / "abcd_sample.json"),
    }
    for name, dialogues in samples.items():
        for index, dialogue in enumerate(dialogues):
            encoded = tokenize_dialogue(
                dialogue, smollm2_tokenizer, max_length=2048, where=f"{name} {index}", exact_check=True
            )
            check_smollm2_example(encoded, dialogue, smollm2_tokenizer)


@pytest.mark.slow
def test_smollm2_whole_sgd_train_split(shared_data, smollm2_tokenizer):
    dialogues = convert_sgd(shared_data / "sgd" / "train")
    dataset, report = build_dataset(
        dialogues, smollm2_tokenizer, max_length=1024, overlong_policy="drop_oldest_turns", source="sgd/train"
    )
    assert (report.dialogues_used, report.dropped_overlong, report.truncated_overlong) == (1148, 0, 0)
    assert report.assistant_turns == sum(m["role"] == "assistant" for d in dialogues for m in d)
    assert len(dataset) == 1148
    check_smollm2_example(dataset[0], dialogues[0], smollm2_tokenizer)
    check_smollm2_example(dataset[1147], dialogues[1147], smollm2_tokenizer)


@pytest.mark.slow
def test_smollm2_truncation_keeps_template_system_prompt(shared_data, smollm2_tokenizer):
    dialogue = convert_sgd(shared_data / "sgd" / "train" / "dialogues_022.json")[0]
    encoded = tokenize_dialogue(dialogue, smollm2_tokenizer, max_length=150)
    assert encoded is not None and len(encoded["input_ids"]) <= 150
    text = smollm2_tokenizer.decode(encoded["input_ids"], skip_special_tokens=False)
    assert text.startswith(f"<|im_start|>system\n{SMOLLM2_DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert dialogue[0]["content"] not in text  # the oldest exchange went
    assert trained_runs(encoded, smollm2_tokenizer)[-1] == dialogue[-1]["content"] + "<|im_end|>"


def test_abcd_conversation_without_an_answered_turn_is_skipped(tmp_path, caplog):
    conversations = [
        {"convo_id": 1, "scenario": {}, "original": [["agent", "Hello?"], ["action", "Searching..."]]},
        {
            "convo_id": 2,
            "scenario": {},
            "original": [["customer", "hi"], ["customer", "my order"], ["action", "x"], ["agent", "sure"]],
        },
    ]
    path = tmp_path / "abcd.json"
    path.write_text(json.dumps(conversations))
    with caplog.at_level(logging.WARNING, logger="chatfreeze.data"):
        dialogues = load_dialogues(str(path), data_format="abcd")
    assert dialogues == [[user("hi\nmy order"), assistant("sure")]]
    assert "skipped 1 of 2 conversations" in caplog.text


def test_every_example_must_end_its_trained_turns_with_an_end_of_turn_token(chatml_tokenizer):
    """The check covers all examples (not a sample of the first few): example 20's reply is not closed."""
    import copy

    from chatfreeze.data import build_dataset
    from chatfreeze.data.labels import check_turns_end

    tokenizer = copy.deepcopy(chatml_tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
        "{% if 'NOEND' in m['content'] %}\n{% else %}<|im_end|>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    dialogues = [[{"role": "user", "content": f"Question {i}?"},
                  {"role": "assistant", "content": f"Answer {i}." + (" NOEND" if i == 20 else "")}]
                 for i in range(30)]
    build_dataset(dialogues[:20], tokenizer, max_length=256, overlong_policy="drop_example")  # closed turns pass
    with pytest.raises(DataError, match=r"example 20: a trained assistant reply ends with token \d+, not with an "
                                        "end-of-turn token"):
        build_dataset(dialogues, tokenizer, max_length=256, overlong_policy="drop_example", source="data.jsonl")
    check_turns_end([-100, 5, 2, -100, 7, 2], {2}, "x")
    with pytest.raises(DataError, match="x: a trained assistant reply ends with token 7"):
        check_turns_end([-100, 5, 2, -100, 7], {2}, "x")
