"""Chat with a (freeze-tuned) chat model in the terminal: ``python -m chatfreeze.chat`` / ``chatfreeze chat``.

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
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..common import LiteralPercentHelpFormatter
from ..generation import ReplyStream
from ..modeling import DEFAULT_MODEL
from .conversation import (
    OUTPUTS_ROOT,
    SETTING_RULES,
    ChatError,
    ChatModel,
    ChatSession,
    ChatSettings,
    SettingError,
    initial_settings,
    load_chat_model,
    pick_model,
    read_transcript,
    transcript,
)

logger = logging.getLogger(__name__)



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
        formatter_class=LiteralPercentHelpFormatter,
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

