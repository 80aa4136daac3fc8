"""Plain-text replay (``--text_replay``): passages the base model writes itself (seeded, cached per batch, the
global RNG untouched) or windows of the user's own general text, each trained on every passage token after the
document-start token, mixed into the run with their own KL weight (``--kl_sources text``)."""

from __future__ import annotations

import json

import pytest
import torch
from test_facts_training import train_with_facts

from chatfreeze.data.schema import IGNORE_INDEX
from chatfreeze.evaluation.measurement_cache import MeasurementCache
from chatfreeze.retention import text_replay
from chatfreeze.retention.text_replay import (
    base_passages,
    document_start,
    file_passages,
    read_text_file,
    text_replay_dataset,
)


class BosTokenizer:
    """A stand-in for a Llama-style tokenizer that adds a BOS to any text."""

    unk_token_id, eos_token_id = 0, 2

    def __call__(self, text, add_special_tokens=True, **kwargs):
        return {"input_ids": ([1] if add_special_tokens else []) + [3 + ord(c) % 200 for c in text]}

    def get_vocab(self):
        return {"<s>": 1, "</s>": 2}


def test_the_document_start_is_the_bos_a_tokenizer_adds_else_its_endoftext(chatml_tokenizer):
    assert document_start(BosTokenizer()) == [1]
    assert document_start(chatml_tokenizer) == [chatml_tokenizer.convert_tokens_to_ids("<|endoftext|>")]


def test_the_base_writes_seeded_passages_cached_per_batch_without_touching_the_global_rng(tiny, tmp_path,
                                                                                          monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setattr(text_replay, "BASE_BATCH", 4)
    cache = MeasurementCache(tmp_path / "cache")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = base_passages(model, tokenizer, 6, 16, seed=1, cache=cache)
    assert torch.equal(torch.get_rng_state(), state)  # training's RNG is not moved by the sampling
    assert len(first) == 6 and all(text_replay.MIN_PASSAGE_TOKENS <= len(p) <= 16 for p in first)
    assert len({tuple(p) for p in first}) == 6  # sampled, not one passage repeated
    again = base_passages(model, tokenizer, 6, 16, seed=1, cache=None)
    assert again == first  # the same seed writes the same passages

    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(model, "generate", refuse)
    assert base_passages(model, tokenizer, 5, 16, seed=1, cache=cache) == first[:5]
    monkeypatch.undo()
    monkeypatch.setattr(text_replay, "BASE_BATCH", 4)
    more = base_passages(model, tokenizer, 10, 16, seed=1, cache=cache)
    assert more[:6] == first and len(more) == 10  # the cached batches come first, new ones follow
    assert base_passages(model, tokenizer, 4, 16, seed=2, cache=None) != first[:4]


def test_a_passage_ends_at_the_first_end_of_text_the_base_writes(tiny, monkeypatch):
    model, tokenizer = tiny
    end = tokenizer.eos_token_id

    def fake_generate(prompt, **kwargs):
        rows = [list(range(10, 30)), list(range(10, 20)) + [end] + [0] * 9, [40, 41, end] + [0] * 17,
                list(range(50, 70))]
        return torch.cat([prompt, torch.tensor(rows)], dim=1)

    monkeypatch.setattr(text_replay, "BASE_BATCH", 4)
    monkeypatch.setattr(model, "generate", fake_generate)
    passages = base_passages(model, tokenizer, 3, 20, seed=0, cache=None)
    # The third row ended after 3 tokens (shorter than MIN_PASSAGE_TOKENS): skipped.
    assert passages == [list(range(10, 30)), list(range(10, 20)) + [end], list(range(50, 70))]


def test_file_passages_are_a_seeded_sample_of_windows_repeated_when_too_few(chatml_tokenizer, tmp_path):
    text = tmp_path / "general.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 4)  # 180 bytes = 180 byte tokens
    passages, distinct = file_passages(str(text), chatml_tokenizer, 5, 64, seed=0)
    windows = {tuple(p) for p in passages}
    assert distinct == 3 and len(windows) == 3  # 64 + 64 + 52 tokens
    assert sorted(len(p) for p in windows) == [52, 64, 64]
    assert passages[3:] == passages[:2]  # the sample again, in the same order
    assert file_passages(str(text), chatml_tokenizer, 5, 64, seed=0) == (passages, distinct)


def test_a_jsonl_file_gives_one_document_per_text_field_and_bad_lines_are_named(tmp_path):
    good = tmp_path / "corpus.jsonl"
    good.write_text(json.dumps({"text": "first document"}) + "\n\n" + json.dumps({"text": "second"}) + "\n")
    assert read_text_file(str(good)) == ["first document", "second"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl, line 2: no 'text' string"):
        read_text_file(str(bad))
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl, line 1: not JSON"):
        read_text_file(str(bad))
    with pytest.raises(ValueError, match=r"--text_replay .*missing.txt: no such file"):
        read_text_file(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("tiny")
    with pytest.raises(ValueError, match="no text of at least 8 tokens"):
        text_replay_dataset(None, _ByteTokenizer(), 4, 0.5, source=str(empty), tokens=16)


class _ByteTokenizer:
    unk_token_id, eos_token_id = None, 2

    def __call__(self, text, add_special_tokens=True, **kwargs):
        return {"input_ids": [3 + b for b in text.encode()]}

    def get_vocab(self):
        return {"<|endoftext|>": 0}


def test_each_example_trains_every_passage_token_after_the_document_start(chatml_tokenizer, tmp_path):
    text = tmp_path / "general.txt"
    text.write_text("Plain text about rivers, mountains and the sea. " * 10)
    dataset, report = text_replay_dataset(None, chatml_tokenizer, 8, 0.5, source=str(text), tokens=32, seed=0)
    start = document_start(chatml_tokenizer)
    assert len(dataset) == 4 and report.examples == 4
    for row in dataset:
        assert row["input_ids"][:1] == start and row["labels"][0] == IGNORE_INDEX
        assert row["labels"][1:] == row["input_ids"][1:] and len(row["input_ids"]) == 33
    assert report.trained_tokens == 4 * 32 and report.tokens == 4 * 33
    assert text_replay_dataset(None, chatml_tokenizer, 8, 0.0, source=str(text)) == (None, None)


def test_the_recipe_mixes_text_replay_with_its_own_kl_weight(tiny_model_dir, tmp_path):
    corpus = tmp_path / "general.txt"
    corpus.write_text("Rivers run to the sea, and the sea returns as rain over the hills. " * 40)
    common = ("--text_replay_ratio", "0.25", "--text_replay", str(corpus), "--kl_to_base", "0.5")
    (tmp_path / "default").mkdir()
    (tmp_path / "without").mkdir()
    run = train_with_facts(tiny_model_dir, tmp_path / "default", *common)  # default --kl_sources support,replay,text
    assert len(run.train_dataset) == 16 + 4 + 12  # support, 0.25 x 16 passages, 2 facts x 6 drills
    assert run.train_dataset["chatfreeze_kl_weight"] == [1.0] * 16 + [1.0] * 4 + [0.0] * 12
    assert run.text_replay_report.examples == 4
    without = train_with_facts(tiny_model_dir, tmp_path / "without", *common, "--kl_sources", "support,replay")
    assert without.train_dataset["chatfreeze_kl_weight"] == [1.0] * 16 + [0.0] * 4 + [0.0] * 12


def test_a_run_with_text_replay_and_kl_trains_through_the_fast_path_and_records_it(tiny_model_dir, tmp_path,
                                                                                   monkeypatch, caplog):
    from chatfreeze.training import recipe
    from chatfreeze.training.arguments import parse_args

    monkeypatch.setenv("CHATFREEZE_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(recipe, "generate_reply", lambda *args, **kwargs: "(stub reply)")
    rows = [{"messages": [{"role": "system", "content": "You are a shop's assistant."},
                          {"role": "user", "content": f"Where is order {i}?"},
                          {"role": "assistant", "content": f"Order {i} ships tomorrow."}]} for i in range(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    with caplog.at_level("INFO", logger="chatfreeze"):
        metrics = recipe.run_training(*parse_args([
            "--model_name_or_path", str(tiny_model_dir), "--dataset", str(data), "--eval_dataset", "none",
            "--num_frozen_layers", "2", "--max_steps", "3", "--per_device_train_batch_size", "4", "--output_dir",
            str(out), "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--eval_before_after",
            "false", "--text_replay_ratio", "0.5", "--text_replay_tokens", "24", "--kl_to_base", "0.5"]))
    info = json.loads((out / "run_info.json").read_text())
    replayed = info["data"]["text_replay"]
    assert replayed["source"] == "the base model's own text" and replayed["examples"] == 8
    assert info["training_args"]["text_replay_ratio"] == 0.5
    assert "Fast path on" in caplog.text and "KL to the base (beta 0.5)" in caplog.text
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
    from chatfreeze.publish.card import build_model_card
    from chatfreeze.publish.run import load_run

    card = build_model_card(load_run(out), "acme/bot")
    assert "plain-text replay (the base's own text), 0.5 per support dialogue" in card


# ---- the passages' sampler: nucleus sampling without sorting every row --------------------------------------------

def _warper_kept(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    from transformers.generation.logits_process import TopPLogitsWarper

    return TopPLogitsWarper(top_p)(None, scores.clone()) != -float("inf")


@pytest.mark.parametrize("candidates", [1024, 4])
def test_the_nucleus_sampler_draws_only_from_the_warpers_nucleus_in_its_proportions(candidates):
    from chatfreeze.generation import NucleusSampler

    generator = torch.Generator().manual_seed(0)
    # Row 0 peaked (its nucleus is inside any candidates), row 1 flat (a sort when candidates are few), row 2 two
    # tied favourites (tokens tied at the nucleus' edge are the one case the warper's sort order decides).
    scores = torch.stack([torch.randn(50, generator=generator) * 4, torch.randn(50, generator=generator) * 0.3,
                          torch.cat([torch.tensor([3.0, 3.0]), torch.linspace(-1.0, 0.0, 48)])])
    kept = _warper_kept(scores, 0.9)
    sampler = NucleusSampler(0.9, candidates=candidates)
    torch.manual_seed(1)
    draws = torch.stack([sampler(None, scores).argmax(dim=-1) for _ in range(4000)])
    assert sampler.rows == 3 * 4000
    assert (sampler.sorted_rows > 0) == (candidates == 4)
    for row in range(3):
        counts = torch.bincount(draws[:, row], minlength=50).float()
        assert bool((counts[~kept[row]] == 0).all()), f"row {row} drew outside the nucleus"
        expected = scores[row].softmax(-1) * kept[row]
        expected = expected / expected.sum()
        assert float((counts / counts.sum() - expected).abs().max()) < 0.03


def test_the_nucleus_sampler_returns_one_allowed_token_per_row_and_is_seeded():
    from chatfreeze.generation import NucleusSampler, nucleus_sampling

    scores = torch.randn(6, 300, generator=torch.Generator().manual_seed(3))
    out = NucleusSampler(0.95)(None, scores)
    assert ((out == 0).sum(dim=-1) == 1).all() and ((out == -float("inf")).sum(dim=-1) == 299).all()
    torch.manual_seed(7)
    first = NucleusSampler(0.95, temperature=0.7)(None, scores).argmax(dim=-1)
    torch.manual_seed(7)
    assert torch.equal(first, NucleusSampler(0.95, temperature=0.7)(None, scores).argmax(dim=-1))
    assert nucleus_sampling(0.9)["do_sample"] is False  # greedy decoding takes the sampler's draw
    with pytest.raises(ValueError, match="top_p"):
        NucleusSampler(1.5)


def test_base_passages_are_sampled_by_the_nucleus_sampler_through_generate(tiny, monkeypatch):
    from chatfreeze import generation

    model, tokenizer = tiny
    made = []
    original = generation.NucleusSampler.__init__

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(generation.NucleusSampler, "__init__", record)
    monkeypatch.setattr(text_replay, "BASE_BATCH", 4)
    passages = base_passages(model, tokenizer, count=4, tokens=12, seed=0)
    assert len(passages) == 4 and made and made[0].rows >= 4 and made[0].top_p == text_replay.BASE_TOP_P
