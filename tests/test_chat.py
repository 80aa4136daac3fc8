"""The terminal chat: settings validation, model choice, history and context trimming, commands, scripted use
(--prompt, piped stdin), the interactive loop in a pseudo-terminal, clear errors, and the real default model."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, require_package

from chatfreeze.chat.conversation import (
    ChatError,
    ChatSession,
    ChatSettings,
    SettingError,
    check_setting,
    find_newest_output,
    initial_settings,
    load_chat_model,
    pick_model,
)
from chatfreeze.chat.terminal import ChatApp, Console, main
from chatfreeze.cli.errors import run_cli
from chatfreeze.generation import ReplyStream, render_prompt, support_generation_config
from chatfreeze.modeling import DEFAULT_MODEL

SYSTEM = "You are the support assistant of Kettle & Co."


def chat_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, NO_COLOR="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT), **extra)
    env.pop("PYTHONSTARTUP", None)
    return env


def make_output_dir(model_dir: Path, target: Path, system_prompt: str = SYSTEM) -> Path:
    """A stand-in for a training output directory: the tiny model with run_info.json and chat defaults."""
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    shutil.copytree(model_dir, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    config = support_generation_config(GenerationConfig.from_pretrained(target), tokenizer)
    config.save_pretrained(target)
    info = {"base_model": {"name_or_path": "tiny/base"}, "data": {"system_prompt": system_prompt}}
    (target / "run_info.json").write_text(json.dumps(info))
    return target


@pytest.fixture
def tiny_chat(tiny_model_dir):
    return load_chat_model(str(tiny_model_dir))


def make_app(chat_model, settings=None, system_prompt=SYSTEM, max_context=None, compare=None):
    settings = settings or ChatSettings(max_new_tokens=4, seed=0)
    models = ([("base", compare)] if compare else []) + [("fine-tuned", chat_model)]
    sessions = [(label, ChatSession(m, settings, system_prompt, max_context)) for label, m in models]
    out, err = io.StringIO(), io.StringIO()
    return ChatApp(sessions, settings, Console(io.StringIO(), out, err)), out, err


# ------------------------------------------------------------------------------------------------ settings


def test_settings_parse_and_reject_with_clear_messages():
    assert check_setting("max_new_tokens", "12") == 12
    assert check_setting("do_sample", "off") is False
    assert check_setting("seed", "none") is None and check_setting("seed", 7) == 7
    assert check_setting("top_p", 1) == 1.0
    with pytest.raises(SettingError, match="unknown setting 'temprature'; settings are: max_new_tokens"):
        check_setting("temprature", "0.5")
    cases = {
        ("temperature", "0"): "temperature must be a number > 0 (for greedy decoding set do_sample=false)",
        ("temperature", "hot"): "temperature must be a number > 0",
        ("top_p", "1.5"): "top_p must be a number in (0, 1] (got '1.5')",
        ("max_new_tokens", "2.5"): "max_new_tokens must be an integer >= 1",
        ("max_new_tokens", True): "max_new_tokens must be an integer >= 1",
        ("do_sample", "maybe"): "do_sample must be true",
        ("seed", "-3"): "seed must be an integer >= 0, or none",
    }
    for (key, value), message in cases.items():
        with pytest.raises(SettingError, match=re.escape(message)):
            check_setting(key, value)


def test_settings_update_is_all_or_nothing():
    settings = ChatSettings()
    with pytest.raises(SettingError):
        settings.update({"temperature": "0.9", "top_p": "2"})
    assert settings.temperature == 0.3 and settings.top_p == 0.9


def test_saved_generation_settings_are_used_and_flags_win(tiny_model_dir, chatml_tokenizer):
    from transformers import GenerationConfig

    saved = support_generation_config(GenerationConfig(), chatml_tokenizer)
    saved.temperature = 0.7
    settings, source = initial_settings(saved, {"max_new_tokens": "9"})
    assert (settings.temperature, settings.max_new_tokens, settings.do_sample) == (0.7, 9, True)
    assert source == "saved with the model; flags: max_new_tokens"
    settings, source = initial_settings(GenerationConfig(), {})
    assert settings == ChatSettings() and "defaults" in source
    with pytest.raises(SettingError, match="^--top_p must be"):
        initial_settings(saved, {"top_p": "0"})


def test_greedy_generation_config_drops_sampling_knobs(tiny_chat):
    config = ChatSettings(do_sample=False).generation_config(tiny_chat.model.generation_config)
    assert config.do_sample is False and config.temperature is None and config.top_p is None
    assert config.eos_token_id == tiny_chat.tokenizer.eos_token_id


# ------------------------------------------------------------------------------------------- model choice


def test_newest_training_output_is_picked_else_the_default(tmp_path, tiny_model_dir):
    assert pick_model(None, tmp_path / "outputs") == (DEFAULT_MODEL, f"default base model; no training output under {tmp_path / 'outputs'}/")
    old = make_output_dir(tiny_model_dir, tmp_path / "outputs" / "old")
    new = make_output_dir(tiny_model_dir, tmp_path / "outputs" / "sweep" / "new")
    (tmp_path / "outputs" / "unfinished").mkdir()
    (tmp_path / "outputs" / "unfinished" / "config.json").write_text("{}")
    os.utime(old / "run_info.json", (time.time() - 100, time.time() - 100))
    assert find_newest_output(tmp_path / "outputs") == new
    assert pick_model("some/model", tmp_path / "outputs") == ("some/model", "--model_name_or_path")


# ---------------------------------------------------------------------------------------- session mechanics


def test_history_is_rendered_through_the_chat_template(tiny_chat):
    app, out, err = make_app(tiny_chat)
    app.handle("Where is my order 1234?")
    app.handle("And can I change the address?")
    session = app.sessions[-1][1]
    assert [m["role"] for m in session.conversation()] == ["system", "user", "assistant", "user", "assistant"]
    prompt = tiny_chat.tokenizer.decode(session.prompt_ids()[0])
    assert prompt.count("<|im_start|>user") == 2 and SYSTEM in prompt and "order 1234" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    app.handle("/reset")
    assert session.conversation() == [{"role": "system", "content": SYSTEM}]
    assert "(conversation cleared" in err.getvalue()


def test_oldest_turns_are_dropped_when_the_context_would_overflow(tiny_chat):
    app, out, err = make_app(tiny_chat, max_context=160)  # 160 - 4 new tokens = 156 prompt tokens
    session = app.sessions[-1][1]
    for n in range(4):
        app.handle(f"question number {n}: " + "x" * 20)
    assert "context full: dropped the 2 oldest messages to fit 160 tokens" in err.getvalue()
    assert session.prompt_ids().shape[1] <= session.prompt_budget
    assert session.messages[0]["role"] == "user" and session.conversation()[0]["role"] == "system"
    assert session.messages[-2]["content"].startswith("question number 3")
    kept = list(session.messages)
    app.handle("y" * 400)  # cannot fit on its own: refused, history untouched
    assert "only 156 fit" in err.getvalue() and session.messages == kept


def test_set_validates_and_too_large_max_new_tokens_is_refused(tiny_chat):
    app, out, err = make_app(tiny_chat)
    app.handle("/set temperature=0.8 top_p=0.5")
    assert (app.settings.temperature, app.settings.top_p) == (0.8, 0.5)
    app.handle("/set colour=blue")
    app.handle("/set temperature")
    app.handle("/set max_new_tokens=600")  # the tiny model has 512 positions
    messages = err.getvalue()
    assert "error: unknown setting 'colour'" in messages
    assert "error: /set temperature: expected key=value" in messages
    assert "error: max_new_tokens=600 leaves no room for the prompt" in messages
    assert app.settings.max_new_tokens == 4


def test_retry_replaces_the_last_reply(tiny_chat):
    app, out, err = make_app(tiny_chat, settings=ChatSettings(max_new_tokens=8, temperature=1.0, seed=3))
    app.handle("/retry")
    assert "error: nothing to retry yet" in err.getvalue()
    app.handle("Hello")
    session = app.sessions[-1][1]
    first = session.messages[-1]["content"]
    app.handle("/retry")
    assert [m["role"] for m in session.messages] == ["user", "assistant"]
    assert session.messages[-1]["content"] != first  # seed + reply number: reproducible, yet a new sample
    session.max_context = 10  # a new reply cannot start: the old one stays
    kept = list(session.messages)
    app.handle("/retry")
    assert session.messages == kept and "but only 2 fit" in err.getvalue()


def test_seed_makes_replies_reproducible(tiny_chat):
    replies = []
    for _ in range(2):
        app, out, err = make_app(tiny_chat, settings=ChatSettings(max_new_tokens=8, temperature=1.0, seed=11))
        app.handle("Hello")
        replies.append(app.sessions[-1][1].messages[-1]["content"])
    assert replies[0] == replies[1]


def test_save_then_load_round_trip_with_current_settings(tiny_chat, tmp_path):
    app, out, err = make_app(tiny_chat)
    app.handle("My kettle leaks.")
    app.handle("/set max_new_tokens=3 stats=true")
    app.handle("It is the blue one.")
    saved_at = tmp_path / "chat.json"
    app.handle(f"/save {saved_at}")
    data = json.loads(saved_at.read_text())
    assert data["settings"]["max_new_tokens"] == 3 and data["settings"]["stats"] is True
    assert [m["role"] for m in data["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert data["messages"][0]["content"] == SYSTEM and data["model"] == tiny_chat.name

    fresh, out, err = make_app(tiny_chat, system_prompt=None)
    fresh.handle(f"/load {saved_at}")
    assert fresh.sessions[-1][1].conversation() == data["messages"]
    assert fresh.settings.to_dict() == data["settings"]
    assert "(loaded 4 messages" in err.getvalue()
    fresh.handle(f"/load {tmp_path / 'missing.json'}")
    (tmp_path / "bad.json").write_text(json.dumps({"messages": [{"role": "robot", "content": "hi"}]}))
    fresh.handle(f"/load {tmp_path / 'bad.json'}")
    assert "missing.json: no such file" in err.getvalue() and "message 0 must be" in err.getvalue()
    assert fresh.sessions[-1][1].conversation() == data["messages"]


def test_system_command_and_escaped_slash(tiny_chat):
    app, out, err = make_app(tiny_chat)
    app.handle("/system Answer in French.")
    app.handle("//etc/hosts is missing")
    session = app.sessions[-1][1]
    assert session.conversation()[0]["content"] == "Answer in French."
    assert session.messages[0]["content"] == "/etc/hosts is missing"
    app.handle("/system none")
    assert session.conversation()[0]["role"] == "user"
    app.handle("/frobnicate")
    assert "unknown command /frobnicate" in err.getvalue()


def test_stop_flag_ends_generation_early(tiny_chat):
    config = ChatSettings(max_new_tokens=300).generation_config(tiny_chat.model.generation_config)
    ids = render_prompt(tiny_chat.tokenizer, [{"role": "user", "content": "hi"}])
    stream = ReplyStream(tiny_chat.model, tiny_chat.tokenizer, ids, config)
    stream.stop()
    stream.result()
    assert stream.stopped and 1 <= stream.new_tokens < 300


def test_compare_labels_both_models(tiny_chat, tiny_model_dir):
    app, out, err = make_app(tiny_chat, compare=load_chat_model(str(tiny_model_dir), flag="--compare"))
    app.handle("Can I return an opened kettle?")
    text = out.getvalue()
    assert text.startswith("[base] ") and "\n[fine-tuned] " in text
    assert all(len(s.messages) == 2 for _, s in app.sessions)


# ------------------------------------------------------------------------------------ main: scripted, errors


def test_prompt_prints_only_the_reply_and_uses_the_newest_output(tmp_path, tiny_model_dir, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    make_output_dir(tiny_model_dir, tmp_path / "outputs" / "run-1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", Terminal(""))  # --prompt stays plain even when run from a terminal
    assert main(["--prompt", "Hi", "--max_new_tokens", "4", "--stats"]) == 0
    captured = capsys.readouterr()
    assert captured.out.endswith("\n") and "using" not in captured.out and "bot>" not in captured.out
    assert "using outputs/run-1 (newest training output under outputs/, fine-tuned from tiny/base)" in captured.err
    assert "tokens/s" in captured.err


def test_piped_lines_in_process_keep_the_saved_system_prompt(tmp_path, tiny_model_dir, monkeypatch, capsys):
    out_dir = make_output_dir(tiny_model_dir, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi\n\n/set max_new_tokens=2\nThanks\n/save t.json\n"))
    assert main(["--model_name_or_path", str(out_dir), "--max_new_tokens", "4"]) == 0
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["messages"][0] == {"role": "system", "content": SYSTEM}
    assert len(data["messages"]) == 5 and data["settings"]["max_new_tokens"] == 2
    assert data["settings"]["temperature"] == 0.3  # from the output dir's generation_config.json


def run_main(argv, monkeypatch, capsys, tmp_path) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    status = run_cli(lambda: main(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return status, err[-1] if err else ""


def test_clear_one_line_errors(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import shutil

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model_dir, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (no_tokenizer / name).unlink(missing_ok=True)
    no_template = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, no_template)
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "outputs").mkdir()
    cases = {
        str(tmp_path / "nowhere"): "no such directory",
        "outputs/typo": "error: --model_name_or_path outputs/typo: no such directory.",
        str(no_tokenizer): "has no tokenizer (tokenizer.json / tokenizer_config.json)",
        str(no_template): "the tokenizer has no chat template",
        "no-such-org/no-such-model": "not in the Hugging Face cache, and the Hub cannot be reached",
    }
    for path, message in cases.items():
        status, line = run_main(["--model_name_or_path", path, "--prompt", "hi"], monkeypatch, capsys, tmp_path)
        assert status == 2 and line.startswith("error: ") and message in line, (path, line)
    # The mechanism that keeps an unknown Hub id fast offline: HF_HUB_OFFLINE=1 skips the Hub probe entirely.
    status, line = run_main(["--model_name_or_path", "no-such-org/no-such-model", "--prompt", "hi"], monkeypatch,
                            capsys, tmp_path)
    assert "(HF_HUB_OFFLINE=1)" in line
    status, line = run_main(["--model_name_or_path", str(tiny_model_dir), "--compare", str(tmp_path / "nowhere"),
                             "--prompt", "hi"], monkeypatch, capsys, tmp_path)
    assert status == 2 and line.startswith("error: --compare ")
    status, line = run_main(["--model_name_or_path", str(tiny_model_dir), "--temperature", "-1", "--prompt", "hi"],
                            monkeypatch, capsys, tmp_path)
    assert status == 2 and line == "error: --temperature must be a number > 0 (for greedy decoding set " \
        "do_sample=false) (got '-1')"


def test_chat_errors_are_one_line_user_errors(capsys):
    for error in (ChatError("first line\nsecond line"), SettingError("first line\nsecond line")):
        def fail(error=error):
            raise error

        assert run_cli(fail) == 2
        assert capsys.readouterr().err == "error: first line\n"


# ---------------------------------------------------------------------------------------- real processes


@pytest.mark.slow
def test_piped_stdin_subprocess_exits_zero_with_plain_output(tmp_path, tiny_model_dir):
    script = "Hello\nWhere is my parcel?\n/set temperature=zero\n/retry\n/save a.json\n/reset\n/save b.json\n" \
             "/load a.json\n/save c.json\nOne more\n"
    result = subprocess.run(
        [sys.executable, "-m", "chatfreeze.chat", "--model_name_or_path", str(tiny_model_dir),
         "--max_new_tokens", "4", "--seed", "0"],
        input=script, capture_output=True, text=True, cwd=tmp_path, env=chat_env(), timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "you>" not in result.stdout and "\x1b" not in result.stdout and "using" not in result.stdout
    assert "error: temperature must be a number > 0" in result.stderr
    a, b, c = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "abc")
    assert [m["content"] for m in a["messages"] if m["role"] == "user"] == ["Hello", "Where is my parcel?"]
    assert b["messages"] == [] and c["messages"] == a["messages"] and c["settings"] == a["settings"]


def spawn_chat(args, cwd, timeout=180):  # generous: a loaded 2-core machine starts Python + torch slowly
    pexpect = require_package("pexpect")
    # A test run started in the background of a script (`make test &`) has SIGINT ignored, and an ignored signal
    # stays ignored across exec: give the chat the default, as a terminal would, so Ctrl-C reaches it.
    child = pexpect.spawn(sys.executable, ["-m", "chatfreeze.chat", *args], cwd=str(cwd), env=chat_env(),
                          encoding="utf-8", codec_errors="replace", timeout=timeout, dimensions=(40, 200),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return pexpect, child


@pytest.fixture
def long_model_dir(tmp_path, chatml_tokenizer) -> Path:
    """The tiny Llama with 8192 positions that never emits a special token: every reply runs to max_new_tokens,
    long enough (thousands of tokens) to be stopped with Ctrl-C mid-way."""
    from conftest import tiny_config
    from transformers import AutoModelForCausalLM

    config = tiny_config("llama")
    config.max_position_embeddings = 8192
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = chatml_tokenizer.eos_token_id
    model.generation_config.pad_token_id = chatml_tokenizer.pad_token_id
    model.generation_config.suppress_tokens = [0, 1, 2]
    path = tmp_path / "long-llama"
    model.save_pretrained(path)
    chatml_tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_interactive_terminal_session(tmp_path, long_model_dir):
    pexpect, child = spawn_chat(["--model_name_or_path", str(long_model_dir), "--max_new_tokens", "4",
                                 "--system_prompt", SYSTEM], tmp_path)
    try:
        child.expect_exact("system prompt: " + SYSTEM)
        child.expect_exact("/help lists the commands")
        child.expect_exact("you> ")
        for question in ("My order is late.", "It was order 42."):
            child.sendline(question)
            child.expect_exact("bot> ")
            child.expect_exact("you> ")
        child.sendline("/set top_p=7")
        child.expect_exact("error: top_p must be a number in (0, 1] (got '7')")
        child.sendline("/retry")
        child.expect_exact("bot> ")
        child.expect_exact("you> ")
        child.sendline("/save s.json")
        child.expect_exact("(saved 4 messages, the system prompt and the settings to s.json)")
        child.sendline("/reset")
        child.expect_exact("(conversation cleared")
        child.sendline("/load s.json")
        child.expect_exact("(loaded 4 messages")
        child.sendline("/help")
        child.expect_exact("/retry")
        child.expect_exact("you> ")
        child.sendintr()  # Ctrl-C at the prompt does not leave
        child.expect_exact("Ctrl-D or /exit leaves the chat")
        child.expect_exact("you> ")
        child.sendline("/set max_new_tokens=4000 stats=true")
        child.expect_exact("you> ")
        child.sendline("Tell me everything.")
        child.expect_exact("bot> ")
        child.expect(".")  # the reply has started streaming
        child.sendintr()  # Ctrl-C stops the reply, not the chat
        child.expect_exact("[stopped")
        child.expect(r"\[(\d+) tokens in")
        stopped_after = int(child.match.group(1))
        child.expect_exact("you> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert stopped_after < 4000
    saved = json.loads((tmp_path / "s.json").read_text())
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["My order is late.", "It was order 42."]


@pytest.mark.slow
def test_default_model_answers_a_support_question_offline(tmp_path):
    """The outside contract with the real SmolLM2: the Hub id resolves offline (PyPI fallback, no waiting) and
    --prompt prints one greedy English reply on stdout, status 0."""
    result = subprocess.run(
        [sys.executable, "-m", "chatfreeze.chat", "--model_name_or_path", DEFAULT_MODEL, "--prompt",
         "Hi, my parcel arrived damaged. What should I do?", "--do_sample", "false", "--max_new_tokens", "32"],
        capture_output=True, text=True, cwd=tmp_path, env=chat_env(), timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert f"using {DEFAULT_MODEL}" in result.stderr and "using" not in result.stdout
    words = [w.strip(".,!?:;*()'\"").lower() for w in result.stdout.split()]
    common = {"the", "a", "to", "you", "your", "and", "it", "of", "is", "i", "for", "can", "that", "this"}
    assert len(words) >= 10 and sum(w in common for w in words) >= 3, result.stdout
