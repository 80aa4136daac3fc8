"""Chat with a (freeze-tuned) chat model in the terminal: ``python -m chatfreeze.chat``.

    python -m chatfreeze.chat                                   # newest run under outputs/, else the default model
    python -m chatfreeze.chat --model_name_or_path OUTPUT_DIR   # a training output directory or a Hub id
    python -m chatfreeze.chat --prompt "Where is my order?"     # one reply on stdout, exit 0
    printf 'Hi\\n/reset\\nWhere is my order?\\n' | python -m chatfreeze.chat   # one user turn per line
    python -m chatfreeze.chat --model_name_or_path OUT --compare HuggingFaceTB/SmolLM2-135M-Instruct

The chat template, system prompt (``run_info.json``) and generation settings (``generation_config.json``) come
from the model's directory; flags override them. Replies stream as they are generated; Ctrl-C stops a reply,
Ctrl-D (or the end of piped input) exits with status 0. ``/help`` lists the in-chat commands.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TextIO

from .cli import run_cli
from .generation import DEFAULT_GENERATION, ReplyStream, render_prompt
from .modeling import DEFAULT_MODEL, ModelResolutionError, ResolvedModel, resolve_model

logger = logging.getLogger(__name__)

RUN_INFO_FILENAME = "run_info.json"  # same name as chatfreeze.training's; not imported to keep startup light
OUTPUTS_ROOT = "outputs"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "tokenizer.tiktoken")
FALLBACK_CONTEXT = 2048  # tokens, for a model whose config states no maximum length
ROLES = ("system", "user", "assistant")


class SettingError(ValueError):
    """A setting name or value that the chat does not accept."""


class ChatError(ValueError):
    """A turn or command that cannot be carried out; the chat reports it and goes on."""


# ---------------------------------------------------------------------------------------------------- settings


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "yes", "on", "1"}:
        return True
    if text in {"false", "no", "off", "0"}:
        return False
    raise ValueError(value)


def _parse_int(value: Any) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(value)
    return int(value)


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _parse_seed(value: Any) -> int | None:
    return None if value is None or str(value).strip().lower() == "none" else _parse_int(value)


# key -> (parser, acceptance test, what is accepted)
SETTING_RULES: dict[str, tuple] = {
    "max_new_tokens": (_parse_int, lambda v: v >= 1, "an integer >= 1"),
    "do_sample": (parse_bool, lambda v: True, "true (sample) or false (greedy decoding)"),
    "temperature": (_parse_float, lambda v: v > 0, "a number > 0 (for greedy decoding set do_sample=false)"),
    "top_p": (_parse_float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "repetition_penalty": (_parse_float, lambda v: v > 0, "a number > 0 (1.0 = no penalty)"),
    "seed": (_parse_seed, lambda v: v is None or v >= 0, "an integer >= 0, or none"),
    "stats": (parse_bool, lambda v: True, "true or false"),
}
GENERATION_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "repetition_penalty")


def check_setting(key: str, value: Any) -> Any:
    """``value`` (text from /set or a flag, or a JSON value) converted to the setting's type, or SettingError."""
    if key not in SETTING_RULES:
        raise SettingError(f"unknown setting {key!r}; settings are: {', '.join(SETTING_RULES)}")
    parse, accept, wanted = SETTING_RULES[key]
    try:
        converted = parse(value)
        valid = accept(converted)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise SettingError(f"{key} must be {wanted} (got {value!r})")
    return converted


@dataclass
class ChatSettings:
    """What shapes each reply; ``/set`` changes them and ``/save`` records them."""

    max_new_tokens: int = DEFAULT_GENERATION["max_new_tokens"]
    do_sample: bool = DEFAULT_GENERATION["do_sample"]
    temperature: float = DEFAULT_GENERATION["temperature"]
    top_p: float = DEFAULT_GENERATION["top_p"]
    repetition_penalty: float = DEFAULT_GENERATION["repetition_penalty"]
    seed: int | None = None  # reply n of a session uses seed + n: a replayed script repeats, /retry varies
    stats: bool = False

    def update(self, changes: dict[str, Any]) -> None:
        """Apply all of ``changes`` or, if any is invalid, none of them."""
        checked = {key: check_setting(key, value) for key, value in changes.items()}
        for key, value in checked.items():
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        def show(value: Any) -> str:
            return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

        return " ".join(f"{f.name}={show(getattr(self, f.name))}" for f in fields(self))

    def generation_config(self, base):
        """A copy of the model's GenerationConfig (eos, pad, ...) with these settings in place."""
        from transformers import GenerationConfig

        config = copy.deepcopy(base) if base is not None else GenerationConfig()
        config.max_new_tokens = self.max_new_tokens
        config.do_sample = self.do_sample
        # Greedy decoding ignores these; leaving them set makes transformers warn on every reply.
        for key in ("temperature", "top_p"):
            setattr(config, key, getattr(self, key) if self.do_sample else None)
        if not self.do_sample:
            config.top_k = None
        config.repetition_penalty = self.repetition_penalty
        return config


def initial_settings(saved_config, overrides: dict[str, Any]) -> tuple[ChatSettings, str]:
    """Chatfreeze's defaults, then what the model's generation_config.json sets, then flags; and where they came from."""
    settings = ChatSettings()
    saved = {key: getattr(saved_config, key, None) for key in GENERATION_KEYS} if saved_config is not None else {}
    saved = {key: value for key, value in saved.items() if value is not None}
    for key, value in saved.items():
        try:
            settings.update({key: value})
        except SettingError as err:
            logger.warning("Ignoring the model's saved generation setting: %s", err)
    source = "saved with the model" if saved else "chatfreeze defaults; the model saved none"
    try:
        settings.update(overrides)
    except SettingError as err:
        raise SettingError(f"--{err}") from None
    if overrides:
        source += f"; flags: {', '.join(overrides)}"
    return settings, source


# ----------------------------------------------------------------------------------------------------- models


@dataclass
class ChatModel:
    """A loaded model with what its directory says about chatting with it."""

    name: str
    resolved: ResolvedModel
    model: Any
    tokenizer: Any
    run_info: dict | None
    max_context: int

    @property
    def system_prompt(self) -> str | None:
        return ((self.run_info or {}).get("data") or {}).get("system_prompt")

    @property
    def base_model(self) -> str | None:
        return ((self.run_info or {}).get("base_model") or {}).get("name_or_path")


def find_newest_output(root: str | Path = OUTPUTS_ROOT, max_depth: int = 3) -> Path | None:
    """The most recently finished training output under ``root``: a directory with run_info.json and config.json."""
    root = Path(root)
    if not root.is_dir():
        return None
    found: list[tuple[float, Path]] = []
    for folder, subfolders, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        subfolders[:] = [] if depth >= max_depth else [d for d in subfolders if not d.startswith("checkpoint-")]
        if RUN_INFO_FILENAME in files and "config.json" in files:
            found.append((os.path.getmtime(os.path.join(folder, RUN_INFO_FILENAME)), Path(folder)))
    return max(found)[1] if found else None


def pick_model(requested: str | None, outputs_root: str | Path = OUTPUTS_ROOT) -> tuple[str, str]:
    """The model to chat with and why it was chosen."""
    if requested:
        return requested, "--model_name_or_path"
    newest = find_newest_output(outputs_root)
    if newest is not None:
        return str(newest), f"newest training output under {outputs_root}/"
    return DEFAULT_MODEL, f"default base model; no training output under {outputs_root}/"


def context_length(config, tokenizer) -> int:
    """Tokens the model can attend to: prompt plus reply."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else FALLBACK_CONTEXT


def _resolve(name: str, flag: str) -> ResolvedModel:
    if "/" in name and not Path(name).exists() and Path(name.split("/")[0]).is_dir():
        # "outputs/run-typo" looks like a Hub id ORG/NAME; a local folder ORG says the user meant a path.
        raise ModelResolutionError(f"{flag} {name}: no such directory.")
    try:
        return resolve_model(name)
    except ModelResolutionError as err:
        raise ModelResolutionError(str(err).replace("--model_name_or_path", flag, 1)) from None


def _load_chat_tokenizer(name: str, path: str, flag: str):
    from .modeling import load_tokenizer

    if not any((Path(path) / file).is_file() for file in TOKENIZER_FILES):
        raise ChatError(
            f"{flag} {name}: {path} has no tokenizer (tokenizer.json / tokenizer_config.json); "
            "save the tokenizer next to the model (tokenizer.save_pretrained)."
        )
    try:
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ChatError(f"{flag} {name}: its tokenizer could not be loaded ({first})") from None
    if not tokenizer.chat_template:
        raise ChatError(
            f"{flag} {name}: the tokenizer has no chat template; chat with an -Instruct/-Chat model "
            "or a chatfreeze output directory (training saves chat_template.jinja)."
        )
    return tokenizer


def _read_run_info(path: str) -> dict | None:
    file = Path(path) / RUN_INFO_FILENAME
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as err:
        logger.warning("Ignoring %s: %s", file, err)
        return None


def load_chat_model(name: str, dtype: str = "auto", flag: str = "--model_name_or_path") -> ChatModel:
    """Resolve ``name`` (directory or Hub id) and load its tokenizer (with chat template) and model, in eval mode."""
    from .modeling import load_model, select_dtype

    resolved = _resolve(name, flag)
    if not (Path(resolved.path) / "config.json").is_file():
        raise ChatError(f"{flag} {name}: {resolved.path} has no config.json.")
    tokenizer = _load_chat_tokenizer(name, resolved.path, flag)
    model = load_model(resolved.path, select_dtype(dtype)).eval()
    return ChatModel(
        name=name,
        resolved=resolved,
        model=model,
        tokenizer=tokenizer,
        run_info=_read_run_info(resolved.path),
        max_context=context_length(model.config, tokenizer),
    )


# ---------------------------------------------------------------------------------------------------- session


class ChatSession:
    """One conversation with one model: history, system prompt, settings and context trimming.

    ``messages`` holds the user/assistant turns; the system prompt is kept apart so that /system and trimming
    never lose it. Before each reply the oldest exchanges are dropped until prompt + ``max_new_tokens`` fit the
    model's context.
    """

    def __init__(self, chat_model: ChatModel, settings: ChatSettings, system_prompt: str | None = None,
                 max_context: int | None = None):
        self.chat_model = chat_model
        self.settings = settings
        self.system_prompt = system_prompt or None
        self.max_context = min(max_context or chat_model.max_context, chat_model.max_context)
        self.messages: list[dict] = []
        self.replies_started = 0

    def system_messages(self) -> list[dict]:
        return [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    def conversation(self) -> list[dict]:
        return self.system_messages() + self.messages

    def prompt_ids(self, messages: list[dict] | None = None):
        return render_prompt(self.chat_model.tokenizer, self.conversation() if messages is None else messages)

    @property
    def prompt_budget(self) -> int:
        return self.max_context - self.settings.max_new_tokens

    def check_budget(self) -> None:
        if self.prompt_budget < 1:
            raise SettingError(
                f"max_new_tokens={self.settings.max_new_tokens} leaves no room for the prompt in "
                f"{self.chat_model.name}'s {self.max_context}-token context"
            )

    def fit_context(self):
        """Prompt ids that leave room for a full reply, dropping the oldest exchanges; (ids, messages dropped)."""
        self.check_budget()
        ids = self.prompt_ids()
        if ids.shape[1] <= self.prompt_budget:
            return ids, 0
        last_user = max((i for i, m in enumerate(self.messages) if m["role"] == "user"), default=0)
        needed = self.prompt_ids(self.system_messages() + self.messages[last_user:]).shape[1]
        if needed > self.prompt_budget:
            raise ChatError(
                f"the message needs {needed} prompt tokens but only {self.prompt_budget} fit "
                f"({self.max_context}-token context minus max_new_tokens={self.settings.max_new_tokens}); "
                "shorten it, /reset, or lower max_new_tokens"
            )
        dropped = 0
        while ids.shape[1] > self.prompt_budget:
            cut = next(i for i, m in enumerate(self.messages) if i > 0 and m["role"] == "user")
            del self.messages[:cut]
            dropped += cut
            ids = self.prompt_ids()
        return ids, dropped

    def start_reply(self) -> tuple[ReplyStream, int]:
        """Generate the assistant's reply to the conversation in the background; (stream, messages dropped)."""
        if not self.messages or self.messages[-1]["role"] != "user":
            raise ChatError("there is no user message to reply to")
        ids, dropped = self.fit_context()
        if self.settings.seed is not None:
            from transformers import set_seed

            set_seed(self.settings.seed + self.replies_started)
        self.replies_started += 1
        config = self.settings.generation_config(self.chat_model.model.generation_config)
        return ReplyStream(self.chat_model.model, self.chat_model.tokenizer, ids, config), dropped

    def ask(self, text: str) -> tuple[ReplyStream, int]:
        self.messages.append({"role": "user", "content": text})
        try:
            return self.start_reply()
        except Exception:
            self.messages.pop()
            raise

    def add_reply(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})

    def drop_last_reply(self) -> dict | None:
        if self.messages and self.messages[-1]["role"] == "assistant":
            return self.messages.pop()
        return None

    def load(self, messages: list[dict]) -> None:
        """Continue from ``messages``; a leading system message replaces the system prompt."""
        system, self.messages = split_system(messages)
        if system is not None:
            self.system_prompt = system or None


# ------------------------------------------------------------------------------------------------ transcripts


def split_system(messages: Any, where: str = "transcript") -> tuple[str | None, list[dict]]:
    """Validate a ``messages`` list; return (system prompt or None, the user/assistant turns)."""
    if not isinstance(messages, list):
        raise ChatError(f"{where}: 'messages' must be a list of {{role, content}} objects")
    for index, message in enumerate(messages):
        if not (isinstance(message, dict) and message.get("role") in ROLES and isinstance(message.get("content"), str)):
            raise ChatError(f"{where}: message {index} must be {{\"role\": one of {ROLES}, \"content\": text}}")
        if message["role"] == "system" and index > 0:
            raise ChatError(f"{where}: message {index} is a system message; only the first may be one")
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], [dict(m) for m in messages[1:]]
    return None, [dict(m) for m in messages]


def transcript(sessions: list[tuple[str, ChatSession]], settings: ChatSettings) -> dict:
    """The conversation as ``messages`` (system prompt first) with the settings in use now."""
    main = sessions[-1][1]
    data = {
        "model": main.chat_model.name,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings.to_dict(),
        "messages": main.conversation(),
    }
    if len(sessions) > 1:
        base = sessions[0][1]
        data["compare"] = {"model": base.chat_model.name, "messages": base.conversation()}
    return data


def read_transcript(path: str) -> dict:
    """A transcript written by /save, or any JSON file holding ``{"messages": [...]}`` or a bare list."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ChatError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise ChatError(f"{path}: not a readable JSON file ({err})") from None
    if isinstance(data, list):
        data = {"messages": data}
    if not isinstance(data, dict) or "messages" not in data:
        raise ChatError(f"{path}: expected a JSON object with 'messages' (as /save writes)")
    split_system(data["messages"], path)
    if "compare" in data:
        split_system((data["compare"] or {}).get("messages", []), f"{path} (compare)")
    if not isinstance(data.get("settings", {}), dict):
        raise ChatError(f"{path}: 'settings' must be an object")
    return data


# ---------------------------------------------------------------------------------------------------- console

UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # control characters other than \t and \n
COLORS = {"user": "1;32", "bot": "1;36", "note": "2", "error": "1;31"}


class Console:
    """Terminal input and output. Replies go to stdout; notes, errors and headers to stderr.

    Prompts, colours and line editing only when stdin/stdout are terminals; piped use stays plain.
    """

    def __init__(self, stdin: TextIO, stdout: TextIO, stderr: TextIO, interactive: bool | None = None):
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.interactive = _isatty(stdin) if interactive is None else interactive
        self.color = _isatty(stdout) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        if self.interactive:
            _enable_line_editing()

    def paint(self, text: str, style: str, for_readline: bool = False) -> str:
        if not self.color:
            return text
        start, end = f"\033[{COLORS[style]}m", "\033[0m"
        if for_readline:  # tell readline these bytes take no screen width
            start, end = f"\001{start}\002", f"\001{end}\002"
        return f"{start}{text}{end}"

    def note(self, text: str) -> None:
        self._write(self.stderr, self.paint(text, "note") + "\n")

    def error(self, text: str) -> None:
        self._write(self.stderr, self.paint(f"error: {text}", "error") + "\n")

    def read(self) -> str | None:
        """The next line of input, or None at end of input. Ctrl-C at the prompt raises KeyboardInterrupt."""
        if self.interactive:
            try:
                if _isatty(self.stdout):
                    return input(self.paint("you>", "user", for_readline=True) + " ")
                self._write(self.stderr, "you> ")
                return input()
            except EOFError:
                self._write(self.stderr, "\n")
                return None
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\r\n")

    def show_reply(self, stream: ReplyStream, label: str | None) -> tuple[str, bool]:
        """Print the reply as it streams; Ctrl-C stops it. Returns (the whole reply, whether it was stopped)."""
        if label or self.interactive:
            prefix = f"{label or 'bot'}>" if self.interactive else f"[{label}]"
            self._write(self.stdout, self.paint(prefix, "bot") + " ")
        while True:
            try:
                for piece in stream:
                    self._write(self.stdout, UNPRINTABLE.sub("", piece))
                text = stream.result()
                break
            except KeyboardInterrupt:
                stream.stop()  # generation ends after the current token; keep printing what is left of it
            except BaseException:  # e.g. BrokenPipeError from `| head`
                stream.close()
                raise
        self._write(self.stdout, "\n")
        return text, stream.stopped

    def end_turn(self) -> None:
        if self.interactive:
            self._write(self.stdout, "\n")

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        stream.write(text)
        stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _enable_line_editing() -> None:
    try:
        import readline
    except ImportError:  # not on every platform; input() still works
        return
    names = [f"/{name}" for name in COMMANDS]

    def complete(text: str, state: int) -> str | None:
        matches = [name + " " for name in names if name.startswith(text)]
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.set_completer_delims(" ")
    readline.parse_and_bind("tab: complete")


# --------------------------------------------------------------------------------------------------- commands


@dataclass
class Command:
    usage: str
    help: str
    handler: str  # name of the ChatApp method


COMMANDS: dict[str, Command] = {
    "help": Command("/help", "this list", "cmd_help"),
    "reset": Command("/reset", "forget the conversation (keeps the system prompt and settings)", "cmd_reset"),
    "system": Command("/system [TEXT|none]", "show, set or clear (none) the system prompt", "cmd_system"),
    "set": Command("/set [key=value ...]", "show or change settings: " + ", ".join(SETTING_RULES), "cmd_set"),
    "save": Command("/save [FILE]", "write the conversation and current settings as JSON "
                    "(default chat-DATE-TIME.json)", "cmd_save"),
    "load": Command("/load FILE", "continue a saved conversation (its messages, system prompt, settings)", "cmd_load"),
    "retry": Command("/retry", "generate the last reply again", "cmd_retry"),
    "exit": Command("/exit", "leave the chat (also /quit, Ctrl-D)", "cmd_exit"),
}
ALIASES = {"quit": "exit", "q": "exit", "?": "help"}


class ExitChat(Exception):
    """/exit was given."""


class ChatApp:
    """The loop: reads lines, runs commands, sends the rest as user turns to every session.

    With ``--compare`` there are two sessions (base first, then the fine-tuned model) sharing settings, system
    prompt and commands; each keeps its own history, so each model sees its own earlier replies.
    """

    def __init__(self, sessions: list[tuple[str, ChatSession]], settings: ChatSettings, console: Console):
        self.sessions = sessions
        self.settings = settings
        self.console = console
        self.failures = 0

    @property
    def comparing(self) -> bool:
        return len(self.sessions) > 1

    def fail(self, text: str) -> None:
        self.failures += 1
        self.console.error(text)

    def run(self) -> int:
        """Chat until /exit or end of input (status 0; failed lines were reported on stderr as they came)."""
        while True:
            try:
                line = self.console.read()
            except KeyboardInterrupt:
                self.console.note("\n(Ctrl-D or /exit leaves the chat)")
                continue
            if line is None:
                break
            try:
                self.handle(line)
            except ExitChat:
                break
            except KeyboardInterrupt:  # between replies (rendering, starting); a reply catches its own
                self.console.note("(interrupted)")
            self.console.end_turn()
        return 0

    def handle(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        if text.startswith("/") and not text.startswith("//"):
            self.run_command(text)
        else:
            self.answer(text[1:] if text.startswith("//") else text)

    def run_command(self, text: str) -> None:
        name, _, arg = text[1:].partition(" ")
        name = ALIASES.get(name.lower(), name.lower())
        if name not in COMMANDS:
            self.fail(f"unknown command /{name}; /help lists the commands (start a message with // to send '/...')")
            return
        try:
            getattr(self, COMMANDS[name].handler)(arg.strip())
        except (ChatError, SettingError) as err:
            self.fail(str(err))

    # -- turns

    def answer(self, text: str) -> None:
        for label, session in self.sessions:
            self.reply(label, session, lambda s=session: s.ask(text))

    def reply(self, label: str, session: ChatSession, start) -> bool:
        """Start a reply with ``start()`` and show it; False (after saying why) if it could not start."""
        from jinja2 import TemplateError

        try:
            stream, dropped = start()
        except (ChatError, SettingError, TemplateError) as err:
            self.fail(f"{self._who(label)}{err}")
            return False
        if dropped:
            self.console.note(
                f"({self._who(label)}context full: dropped the {dropped} oldest messages to fit "
                f"{session.max_context} tokens)"
            )
        text, stopped = self.console.show_reply(stream, label if self.comparing else None)
        session.add_reply(text)
        if stopped:
            self.console.note("[stopped: the partial reply is kept; /retry generates it again]")
        if self.settings.stats:
            rate = stream.new_tokens / stream.seconds if stream.seconds > 0 else 0.0
            self.console.note(
                f"[{stream.new_tokens} tokens in {stream.seconds:.1f} s, {rate:.1f} tokens/s; "
                f"prompt {stream.prompt_tokens} of {session.max_context} context tokens]"
            )
        return True

    def _who(self, label: str) -> str:
        return f"{label}: " if self.comparing else ""

    # -- commands (each takes the text after the command name)

    def cmd_help(self, arg: str) -> None:
        width = max(len(c.usage) for c in COMMANDS.values())
        lines = [f"  {c.usage:<{width}}  {c.help}" for c in COMMANDS.values()]
        lines.append("Ctrl-C stops a reply; a line starting with // sends a message that starts with /.")
        self.console.note("Commands:\n" + "\n".join(lines))

    def cmd_reset(self, arg: str) -> None:
        for _, session in self.sessions:
            session.messages.clear()
        self.console.note("(conversation cleared; system prompt and settings kept)")

    def cmd_system(self, arg: str) -> None:
        main = self.sessions[-1][1]
        if not arg:
            shown = main.system_prompt or "(none: the chat template's default applies)"
            self.console.note(f"system prompt: {shown}")
            return
        for _, session in self.sessions:
            session.system_prompt = None if arg.lower() == "none" else arg
        self.console.note("(system prompt cleared)" if arg.lower() == "none" else "(system prompt set)")

    def cmd_set(self, arg: str) -> None:
        if not arg:
            self.console.note(f"settings: {self.settings.describe()}")
            return
        changes = {}
        for pair in arg.split():
            key, sep, value = pair.partition("=")
            if not sep or not key or not value:
                raise ChatError(f"/set {arg}: expected key=value, e.g. /set temperature=0.7")
            changes[key.strip().lower()] = value.strip()
        self._apply_settings(changes)
        self.console.note(f"settings: {self.settings.describe()}")

    def _apply_settings(self, changes: dict[str, Any]) -> None:
        before = self.settings.to_dict()
        self.settings.update(changes)
        try:
            for _, session in self.sessions:
                session.check_budget()
        except SettingError:
            self.settings.update(before)
            raise

    def cmd_save(self, arg: str) -> None:
        path = Path(arg or time.strftime("chat-%Y%m%d-%H%M%S.json")).expanduser()
        data = transcript(self.sessions, self.settings)
        try:
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        except OSError as err:
            raise ChatError(f"/save {path}: {err.strerror or err}") from None
        main = self.sessions[-1][1]
        system = ", the system prompt" if main.system_prompt else ""
        self.console.note(f"(saved {len(main.messages)} messages{system} and the settings to {path})")

    def cmd_load(self, arg: str) -> None:
        if not arg:
            raise ChatError("usage: /load FILE")
        data = read_transcript(str(Path(arg).expanduser()))
        self._apply_settings(data.get("settings") or {})
        compare_messages = (data.get("compare") or {}).get("messages", data["messages"])
        for label, session in self.sessions:
            session.load(compare_messages if label == "base" else data["messages"])
        main = self.sessions[-1][1]
        self.console.note(f"(loaded {len(main.messages)} messages from {arg}; settings: {self.settings.describe()})")
        if main.messages and main.messages[-1]["role"] == "user":
            self.console.note("(the conversation ends with a user message: /retry answers it)")

    def cmd_retry(self, arg: str) -> None:
        if not any(s.messages for _, s in self.sessions):
            raise ChatError("nothing to retry yet")
        if not self.settings.do_sample:
            self.console.note("(greedy decoding gives the same reply again; /set do_sample=true to vary it)")
        for label, session in self.sessions:
            previous = session.drop_last_reply()
            if not self.reply(label, session, session.start_reply) and previous:
                session.messages.append(previous)  # keep the old reply when a new one cannot start

    def cmd_exit(self, arg: str) -> None:
        raise ExitChat


# ------------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chatfreeze.chat",
        description="Chat in the terminal with a freeze-tuned (or any) chat model. Type /help in the chat.",
    )
    parser.add_argument("--model_name_or_path", help="training output directory or Hub id (default: the newest "
                        f"run under {OUTPUTS_ROOT}/ with run_info.json, else {DEFAULT_MODEL})")
    parser.add_argument("--compare", metavar="BASE_ID_OR_DIR",
                        help="answer each message with this base model too, then the fine-tuned one, labelled")
    parser.add_argument("--prompt", help="print the reply to this one message and exit")
    parser.add_argument("--system_prompt", help="system prompt (default: the one saved with the model; '' for none)")
    parser.add_argument("--max_new_tokens", type=str, help="tokens per reply")
    parser.add_argument("--temperature", type=str, help="sampling temperature (> 0)")
    parser.add_argument("--top_p", type=str, help="nucleus sampling mass (0 < p <= 1)")
    parser.add_argument("--repetition_penalty", type=str, help="repetition penalty (1.0 = none)")
    parser.add_argument("--do_sample", nargs="?", const="true", help="sample (true) or decode greedily (false)")
    parser.add_argument("--seed", type=str, help="set before each reply (reply n uses seed + n) for reproducibility")
    parser.add_argument("--stats", nargs="?", const="true", help="print tokens and tokens/s after each reply")
    parser.add_argument("--max_context", type=int, help="cap on prompt + reply tokens (default: the model's maximum)")
    parser.add_argument("--model_dtype", default="auto", help="auto, float32, bfloat16 or float16")
    return parser


def quiet_libraries() -> None:
    """No progress bars or library warnings between the user and the chat."""
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    disable_progress_bars()


def describe_model(chat_model: ChatModel, reason: str) -> str:
    origin = f", fine-tuned from {chat_model.base_model}" if chat_model.base_model else ""
    where = chat_model.resolved.describe().split(" from ", 1)[-1]  # "the local directory: /abs/path"
    return f"{chat_model.name} ({reason}{origin}) from {where}"


def print_header(console: Console, sessions: list[tuple[str, ChatSession]], reason: str, settings_source: str,
                 settings: ChatSettings) -> None:
    main = sessions[-1][1]
    console.note(f"chatfreeze chat: using {describe_model(main.chat_model, reason)}")
    if len(sessions) > 1:
        console.note(f"comparing with base {describe_model(sessions[0][1].chat_model, '--compare')}")
    if not console.interactive:
        return
    system = main.system_prompt or "(none: the chat template's default applies)"
    console.note(f"  system prompt: {system}")
    console.note(f"  settings ({settings_source}): {settings.describe()}")
    console.note(f"  context: {main.max_context} tokens (prompt + reply)")
    console.note("/help lists the commands; Ctrl-C stops a reply; Ctrl-D or /exit leaves.\n")


def setting_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in SETTING_RULES if getattr(args, key, None) is not None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    console = Console(sys.stdin, sys.stdout, sys.stderr, interactive=False if args.prompt is not None else None)
    name, reason = pick_model(args.model_name_or_path)
    if console.interactive:
        console.note(f"loading {name} ...")
    chat_model = load_chat_model(name, args.model_dtype)
    base_model = load_chat_model(args.compare, args.model_dtype, "--compare") if args.compare else None
    settings, source = initial_settings(chat_model.model.generation_config, setting_flags(args))
    system_prompt = chat_model.system_prompt if args.system_prompt is None else args.system_prompt
    models = ([("base", base_model)] if base_model else []) + [("fine-tuned", chat_model)]
    sessions = [(label, ChatSession(m, settings, system_prompt, args.max_context)) for label, m in models]
    for _, session in sessions:
        try:
            session.check_budget()
        except SettingError as err:
            raise SettingError(f"--{err}") from None
    app = ChatApp(sessions, settings, console)
    print_header(console, sessions, reason, source, settings)
    try:
        if args.prompt is not None:
            app.answer(args.prompt)
            return 1 if app.failures else 0
        return app.run()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Python's docs recommend
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
