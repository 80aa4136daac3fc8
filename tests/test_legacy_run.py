"""Runs written by chatfreeze 0.2 (commit 89a59f8) still work with this version.

``tests/data/legacy_run_0_2`` holds the small files of two real 0.2 runs of the conftest tiny Llama: a full
save (``full/``) and a ``--save_trained_only`` delta (``delta/``); its README says how they were made. They record
the options where 0.2 put them: the evaluation options under ``run_info.json``'s ``data.args``, ``--method`` and
``--lora_*`` in the ``freeze`` section, ``evaluation.json``'s ``config`` with ``window``/``stride``/...

The fixture holds no weights and no tokenizer: they are rebuilt here with the conftest recipe
(``build_tiny_model("llama")``, seed 0, and the ChatML tokenizer), which is deterministic: the SHA-256 of every
frozen base tensor that the delta manifest pinned must match the rebuilt base (``load_delta`` checks them again).
The trained tensors are the base's moved by a fixed random step: the fixture does not keep the trained values, and
the readers do not depend on them.

Then the current code reads the copies: ``load_run`` and the model card, ``chatfreeze push --dry_run``,
``chatfreeze merge``, the chat (loading and one greedy reply), ``chatfreeze plots``, ``chatfreeze evaluate`` and
the web chat's learn-vs-keep panel. In-process only (no subprocess, no real model): a few seconds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import build_chatml_tokenizer, build_tiny_model

from chatfreeze.cli.errors import run_cli
from chatfreeze.evaluation.metrics_table import BY_KEY

FIXTURE = Path(__file__).resolve().parent / "data" / "legacy_run_0_2"
RUNS = ("full", "delta")
LEGACY_BASE = "/tmp/cf-legacy-0.2/tiny-llama"  # where the base model was when the fixture was trained
SYSTEM_PROMPT = "You are a shop's assistant."
REPO_ID = "acme/legacy-bot"


def fixture_json(run: str, name: str):
    return json.loads((FIXTURE / run / name).read_text())


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def card_metadata(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert match, "the card has no YAML front matter"
    return yaml.safe_load(match.group(1))


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    """The two 0.2 runs made whole again (weights and tokenizer beside the committed files), the rebuilt base,
    and the tuned state dict that both runs' weights come from."""
    from safetensors.torch import save_file

    from chatfreeze.modeling.delta import tensor_sha256

    root = tmp_path_factory.mktemp("legacy")
    tokenizer = build_chatml_tokenizer()
    base = build_tiny_model("llama")  # the conftest recipe, seed 0: the base the fixture was trained on
    base.generation_config.eos_token_id = tokenizer.eos_token_id
    base.generation_config.pad_token_id = tokenizer.pad_token_id
    base_dir = root / "tiny-llama"
    base.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)

    manifest = fixture_json("delta", "delta_manifest.json")
    base_state = base.state_dict()
    rebuilt = {name: tensor_sha256(base_state[name]) for name in manifest["frozen_sha256"]}
    assert rebuilt == manifest["frozen_sha256"], "conftest's tiny model no longer rebuilds the fixture's base"
    trained = fixture_json("full", "freeze_plan.json")["trainable_parameter_names"]
    assert sorted(trained) == manifest["trained"] == sorted(fixture_json("delta", "freeze_plan.json")
                                                             ["trainable_parameter_names"])

    tuned = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in tuned.named_parameters():
            if name in trained:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    weights = root / "tuned-weights"
    tuned.save_pretrained(weights)
    tuned_state = {name: value.clone() for name, value in tuned.state_dict().items()}

    runs = {}
    for name in RUNS:
        out = root / name
        shutil.copytree(FIXTURE / name, out)
        tokenizer.save_pretrained(out)  # tokenizer.json, tokenizer_config.json, chat_template.jinja
        runs[name] = out
    # Only the weights: the run keeps the config.json 0.2 wrote.
    shutil.copyfile(weights / "model.safetensors", runs["full"] / "model.safetensors")
    save_file({name: tuned_state[name].contiguous() for name in manifest["trained"]},
              str(runs["delta"] / "delta.safetensors"), metadata={"format": "pt"})
    # The manifest pins the base by an absolute path of the machine that trained it; the base now lives here.
    manifest["base"]["name_or_path"] = str(base_dir)
    (runs["delta"] / "delta_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return dict(root=root, base_dir=base_dir, runs=runs, base_state=base_state, tuned_state=tuned_state,
                trained=trained)


@pytest.fixture(autouse=True)
def chatfreeze_logger():
    """``push``'s main sends the chatfreeze logger to stdout for the rest of its process; in this one process
    that would put log lines into the stdout a later test reads."""
    log = logging.getLogger("chatfreeze")
    saved = list(log.handlers), log.level, log.propagate
    yield
    log.handlers[:] = saved[0]
    log.setLevel(saved[1])
    log.propagate = saved[2]


@pytest.fixture(params=RUNS)
def run_dir(request, legacy, tmp_path) -> Path:
    """A private copy of one legacy run (a test may write plots into it)."""
    out = tmp_path / request.param
    shutil.copytree(legacy["runs"][request.param], out)
    return out


def test_the_fixture_is_in_the_0_2_format():
    """What this module guards: the places 0.2 put things that the current version moved."""
    for name in RUNS:
        info = fixture_json(name, "run_info.json")
        assert "evaluation" not in info and info["data"]["args"]["general_window"] == 64
        assert info["freeze"]["method"] == "freeze" and "method" not in info["training_args"]
        config = fixture_json(name, "evaluation.json")["config"]
        assert config["window"] == 64 and config["stride"] == 32 and "general_window" not in config
    assert fixture_json("delta", "run_info.json")["training_args"]["save_trained_only"] is True


def test_load_run_and_the_model_card(run_dir, legacy):
    from chatfreeze.evaluation.metrics_table import BY_KEY, format_change
    from chatfreeze.publish.card import build_model_card
    from chatfreeze.publish.run import load_run

    run = load_run(run_dir)
    delta = run_dir.name == "delta"
    evaluation = fixture_json(run_dir.name, "evaluation.json")
    assert run.plan.frozen_layers == [0, 1] and run.plan.trainable_layers == [2, 3]
    assert run.plan.spec["method"] == "freeze"
    assert run.evaluation == evaluation and run.results == fixture_json(run_dir.name, "all_results.json")
    assert run.trainer_state["global_step"] == 2 and len(run.samples) == 2
    assert run.base.source == "local" and run.base.hub_id is None and run.base.dtype == "float32"
    assert (run.delta is not None) == delta

    card = build_model_card(run, REPO_ID)
    meta = card_metadata(card)
    assert meta["library_name"] == "transformers" and "base_model" not in meta  # a local base of unknown origin
    metrics = {m["name"]: m["value"] for result in meta["model-index"][0]["results"] for m in result["metrics"]}
    for key in ("facts_accuracy", "skills_accuracy", "support_perplexity", "general_perplexity", "rougeL", "chrf"):
        assert metrics[BY_KEY[key].card_label] == pytest.approx(evaluation["after"][key])
    before, after = evaluation["before"], evaluation["after"]
    assert "| blocks 0-1 |" in card and "| blocks 2-3 |" in card
    # 0.2 recorded the LoRA defaults in every plan's spec; a freeze run's card leaves them out.
    assert "Freeze spec: `--num_frozen_layers 2`, `--freeze_embeddings True`, `--freeze_final_norm False`, " \
           "`--train_lm_head False`, `--method freeze`. The full list" in card
    # A plan from before the methods recorded their card sentence gets the one that holds for any method.
    assert "fine-tuned from `tiny-llama` with chatfreeze (`--method freeze`): the embeddings and blocks 0-1 of 4 " \
           "are bit-identical to the base" in card
    assert f"System prompt added to dialogues without one: {json.dumps(SYSTEM_PROMPT)}" in card
    assert "at most 256 tokens each (over-long policy: `drop_oldest_turns`)" in card
    assert "| learning rate | 0.01 |" in card and "| steps run | 2 |" in card
    assert "| keeping old skills | none beyond the freeze |" in card
    general = format_change("general_perplexity", before["general_perplexity"], after["general_perplexity"])
    assert general and f"({general}). A rise means" in card
    assert f"| {BY_KEY['support_perplexity'].card_label} |" in card
    assert "Learned:\n  company facts right (facts probe): 0.0% -> 0.0% (+0.0 points)" in card
    assert "Not measured: self-agreement: every reply of the base model to the skills probe is empty." in card
    assert "Trained with chatfreeze (chatfreeze 0.1.0, python" in card  # 0.2 still called itself 0.1.0
    assert "Where is order 8?" in card  # the sample replies
    if delta:
        assert "only the tensors training changed (18,592 parameters in `delta.safetensors`)" in card
        assert f"pins the base model `{legacy['base_dir']}`" in card
    else:
        assert "python -m chatfreeze.chat --model_name_or_path acme/legacy-bot" in card


def test_push_dry_run(run_dir, legacy, tmp_path, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM

    from chatfreeze.cli.push import main as push_main
    from chatfreeze.modeling import load_model

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may reach a Hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    before = tree_digest(run_dir)
    target = tmp_path / "staged"
    assert run_cli(lambda: push_main([str(run_dir), "--repo_id", REPO_ID, "--dry_run", str(target)])) == 0
    printed = capsys.readouterr()
    assert "README.md" in printed.out, printed.err
    assert tree_digest(run_dir) == before  # only read
    names = {p.name for p in target.iterdir()}
    assert {"README.md", "run_info.json", "freeze_plan.json", "evaluation.json", "all_results.json", "samples.json",
            "trainer_state.json", "generation_config.json", "config.json", "tokenizer.json",
            "chat_template.jinja"} <= names
    assert json.loads((target / "run_info.json").read_text()) == fixture_json(run_dir.name, "run_info.json")
    ids = torch.randint(3, 250, (1, 8))
    with torch.no_grad():
        want = load_model(str(run_dir))(input_ids=ids).logits
        if run_dir.name == "full":
            assert "model.safetensors" in names
            got = AutoModelForCausalLM.from_pretrained(target)(input_ids=ids).logits
        else:
            assert {"delta.safetensors", "delta_manifest.json"} <= names and "model.safetensors" not in names
            got = load_model(str(target))(input_ids=ids).logits
    assert torch.equal(got, want)

    if run_dir.name == "full":  # --trained_only makes a delta of a 0.2 full save, pinned to run_info's base
        delta = tmp_path / "as-delta"
        assert run_cli(lambda: push_main([str(run_dir), "--repo_id", REPO_ID, "--dry_run", str(delta),
                                          "--trained_only"])) == 0
        manifest = json.loads((delta / "delta_manifest.json").read_text())
        assert manifest["base"]["name_or_path"] == LEGACY_BASE
        assert manifest["trained"] == sorted(legacy["trained"])
        # The same base hashes as 0.2's own delta (which also pinned the tied head, absent from a saved file).
        pinned = fixture_json("delta", "delta_manifest.json")["frozen_sha256"]
        assert manifest["frozen_sha256"] == {name: pinned[name] for name in manifest["frozen_sha256"]}
        assert set(pinned) - set(manifest["frozen_sha256"]) == {"lm_head.weight"}


def test_merge(legacy, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from chatfreeze.cli.merge import main as merge_main

    runs, base_state, tuned_state = legacy["runs"], legacy["base_state"], legacy["tuned_state"]
    # The delta becomes a standalone model: the tuned weights, loaded by plain transformers.
    standalone = tmp_path / "standalone"
    assert run_cli(lambda: merge_main([str(runs["delta"]), str(standalone)])) == 0
    state = AutoModelForCausalLM.from_pretrained(standalone).state_dict()
    assert all(torch.equal(state[name], tuned_state[name]) for name in tuned_state)
    assert json.loads((standalone / "interpolation.json").read_text())["from_delta"] is True
    assert json.loads((standalone / "run_info.json").read_text()) == fixture_json("delta", "run_info.json")
    # The full save halfway to the base (run_info's base_model.dtype read from the 0.2 record; the base moved).
    halfway = tmp_path / "halfway"
    assert run_cli(lambda: merge_main([str(runs["full"]), str(halfway), "--alpha", "0.5", "--base",
                                       str(legacy["base_dir"])])) == 0
    capsys.readouterr()
    state = AutoModelForCausalLM.from_pretrained(halfway).state_dict()
    assert state["model.embed_tokens.weight"].dtype == torch.float32
    for name in tuned_state:
        if name in legacy["trained"]:
            expected = base_state[name] + 0.5 * (tuned_state[name] - base_state[name])
            torch.testing.assert_close(state[name], expected, rtol=0, atol=1e-6)
        else:
            assert torch.equal(state[name], base_state[name]), name


def test_chat_loads_the_run_and_replies(run_dir, legacy, monkeypatch, capsys):
    import io
    import sys

    from chatfreeze.chat.conversation import ChatSession, initial_settings, load_chat_model
    from chatfreeze.chat.terminal import main as chat_main

    chat_model = load_chat_model(str(run_dir))
    assert chat_model.system_prompt == SYSTEM_PROMPT  # 0.2's run_info data.system_prompt
    assert chat_model.base_model == LEGACY_BASE
    assert chat_model.max_context == 512
    settings, source = initial_settings(chat_model.model.generation_config, {"do_sample": False,
                                                                              "max_new_tokens": 6})
    assert settings.repetition_penalty == pytest.approx(1.1)
    if run_dir.name == "full":  # a delta is built on its base and gets the base's generation config (0.2 too)
        assert source.startswith("saved with the model")
    session = ChatSession(chat_model, settings, chat_model.system_prompt)
    stream, dropped = session.ask("Where is order 3?")
    reply = stream.result()
    assert dropped == 0 and isinstance(reply, str)
    assert session.conversation()[0] == {"role": "system", "content": SYSTEM_PROMPT}

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert chat_main(["--model_name_or_path", str(run_dir), "--prompt", "Where is order 3?", "--do_sample", "false",
                      "--max_new_tokens", "6"]) == 0
    printed = capsys.readouterr()
    assert f"fine-tuned from {LEGACY_BASE}" in printed.err
    assert printed.out.strip() == reply.strip()  # greedy: the same reply as the in-process session


def test_plots_are_redrawn_and_the_card_shows_them(run_dir, capsys):
    from chatfreeze.cli.plots import main as plots_main
    from chatfreeze.publish.card import build_model_card
    from chatfreeze.publish.run import load_run

    assert run_cli(lambda: plots_main([str(run_dir)])) == 0
    drawn = {Path(line).name for line in capsys.readouterr().out.split()}
    assert drawn == {"loss_curves.png", "before_after.png", "learn_keep.png"}
    for name in drawn:
        assert (run_dir / name).read_bytes().startswith(b"\x89PNG")
    card = build_model_card(load_run(run_dir), REPO_ID)
    assert all(f"]({name})" in card for name in drawn)


def test_evaluate_and_the_web_panel_read_the_run(run_dir, capsys):
    from chatfreeze.chat.web import learn_keep_markdown
    from chatfreeze.cli.evaluate import main as evaluate_main

    assert run_cli(lambda: evaluate_main(["--model_name_or_path", str(run_dir), "--dataset",
                                          str(FIXTURE / "inputs" / "validation.jsonl"), "--json"])) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["support_examples"] == 2 and result["support_perplexity"] > 1.0
    panel = learn_keep_markdown(str(run_dir))
    assert f"| learn | {BY_KEY['facts_accuracy'].name} | 0.0% | 0.0% |" in panel  # the table's label
    assert f"| keep | {BY_KEY['general_perplexity'].name} | 251.7 | 239.3 |" in panel
