"""A chat conversation, independent of the terminal: settings and their validation, picking and loading the model
(with the system prompt and generation settings its training saved), the session's history with context
trimming, and transcripts. ``chatfreeze.chat`` puts a terminal around it.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..common import first_line
from ..data.schema import ROLES
from ..generation import DEFAULT_GENERATION, ReplyStream, render_prompt
from ..modeling import DEFAULT_MODEL, ModelResolutionError, ResolvedModel, resolve_model
from ..rundir import CONFIG_FILENAME, OUTPUTS_ROOT, RUN_INFO_FILENAME, RunDirError, is_run_dir, read_json

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "tokenizer.tiktoken")
FALLBACK_CONTEXT = 2048  # tokens, for a model whose config states no maximum length


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
    for folder, subfolders, _files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        subfolders[:] = [] if depth >= max_depth else [d for d in subfolders if not d.startswith("checkpoint-")]
        if is_run_dir(folder):
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


def _resolve(name: str, flag: str, revision: str | None = None) -> ResolvedModel:
    if "/" in name and not Path(name).exists() and Path(name.split("/")[0]).is_dir():
        # "outputs/run-typo" looks like a Hub id ORG/NAME; a local folder ORG says the user meant a path.
        raise ModelResolutionError(f"{flag} {name}: no such directory.")
    try:
        return resolve_model(name, revision=revision)
    except ModelResolutionError as err:
        raise ModelResolutionError(str(err).replace("--model_name_or_path", flag, 1)) from None


def _load_chat_tokenizer(name: str, path: str, flag: str):
    from ..modeling import load_tokenizer

    if not any((Path(path) / file).is_file() for file in TOKENIZER_FILES):
        raise ChatError(
            f"{flag} {name}: {path} has no tokenizer (tokenizer.json / tokenizer_config.json); "
            "save the tokenizer next to the model (tokenizer.save_pretrained)."
        )
    try:
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError) as err:
        raise ChatError(f"{flag} {name}: its tokenizer could not be loaded ({first_line(err)})") from None
    if not tokenizer.chat_template:
        raise ChatError(
            f"{flag} {name}: the tokenizer has no chat template; chat with an -Instruct/-Chat model "
            "or a chatfreeze output directory (training saves chat_template.jinja)."
        )
    return tokenizer


def _read_run_info(path: str) -> dict | None:
    try:
        info = read_json(Path(path) / RUN_INFO_FILENAME, strict=True)
    except RunDirError as err:
        logger.warning("Ignoring %s", err)
        return None
    return info if isinstance(info, dict) else None


def load_chat_model(name: str, dtype: str = "auto", flag: str = "--model_name_or_path",
                    revision: str | None = None) -> ChatModel:
    """Resolve ``name`` (directory or Hub id, at ``revision``) and load its tokenizer (with chat template) and
    model, in eval mode."""
    from ..modeling import check_tokenizer_fits, load_model, select_dtype

    resolved = _resolve(name, flag, revision)
    if not (Path(resolved.path) / CONFIG_FILENAME).is_file():
        raise ChatError(f"{flag} {name}: {resolved.path} has no config.json.")
    tokenizer = _load_chat_tokenizer(name, resolved.path, flag)
    model = load_model(resolved.path, select_dtype(dtype)).eval()
    check_tokenizer_fits(model, tokenizer, f"{flag} {name}")
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
