"""What a dialogue is: roles, the label convention, validation, and the pieces of a dialogue other modules take
(the system prompt, the opening prompt of a held-out dialogue).

A dialogue is a list of ``{"role", "content"}`` messages with roles ``system`` (first message only), ``user`` and
``assistant``; the first turn after the system prompt is the user's, and at least one reply is the assistant's.
"""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant")

IGNORE_INDEX = -100

Dialogue = list[dict]


class DataError(ValueError):
    """Bad training data or an unusable chat template; the message names the file/line or example."""


def validate_dialogue(messages: list[dict], where: str) -> None:
    """Raise ``DataError`` unless ``messages`` is a usable dialogue. ``where`` names it (``file:line``...)."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: expected a non-empty list of messages, got {_describe(messages)}.")
    for index, message in enumerate(messages):
        _validate_message(message, index, where)
    for index, message in enumerate(messages[1:], start=1):
        if message["role"] == "system":
            raise DataError(
                f"{where}: message {index} is a system message; a system message may only be the first one."
            )
    first_turn = 1 if messages[0]["role"] == "system" else 0
    if first_turn >= len(messages) or messages[first_turn]["role"] != "user":
        # Chat templates render an assistant turn as the reply to a user turn, and a chat session always
        # opens with the user; a dialogue that opens with the assistant has no prompt for that reply.
        raise DataError(
            f"{where}: the first message after the system prompt must be a user message, "
            "not an assistant one; drop the leading assistant turns or add the user turn they answer."
        )
    if not any(message["role"] == "assistant" for message in messages):
        raise DataError(f"{where}: no assistant message, so nothing to train on; add the assistant's reply.")


def _validate_message(message: Any, index: int, where: str) -> None:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise DataError(
            f"{where}: message {index} must be an object with 'role' and 'content', got {_describe(message)}."
        )
    role, content = message["role"], message["content"]
    if role not in ROLES:
        raise DataError(
            f"{where}: message {index} has unknown role {role!r}; allowed roles: {', '.join(ROLES)}."
        )
    if not isinstance(content, str):
        raise DataError(
            f"{where}: message {index} ({role}) content must be a non-empty string, got {_describe(content)}."
        )
    if not content.strip():
        raise DataError(
            f"{where}: message {index} ({role}) has empty content; remove the message or fill it."
        )


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _clean_dialogue(messages: list[dict], where: str) -> Dialogue:
    """Validate, keep only role/content and strip surrounding whitespace from each content.

    Stripping matters: a template writes its own separators around content, and a leading newline in the
    content would merge with the header's newline into one token that straddles the reply's boundary.
    """
    validate_dialogue(messages, where)
    return [{"role": m["role"], "content": m["content"].strip()} for m in messages]


def _with_system_prompt(dialogue: Dialogue, system_prompt: str | None) -> Dialogue:
    if not system_prompt or dialogue[0]["role"] == "system":
        return dialogue
    return [{"role": "system", "content": system_prompt}, *dialogue]


def opening_prompts(dialogues: list[Dialogue], n: int, system_prompt: str | None = None) -> list[dict]:
    """``{"messages", "reference"}`` for the first ``n`` dialogues: the turns before the first assistant reply
    (with ``system_prompt`` first when they have no system message), and that reply."""
    prompts = []
    for dialogue in dialogues[:n]:
        cut = next(i for i, message in enumerate(dialogue) if message["role"] == "assistant")
        prompts.append({"messages": _with_system_prompt(dialogue[:cut], system_prompt),
                        "reference": dialogue[cut]["content"]})
    return prompts
