"""Rendering with the chat template and assistant-only labels.

Label convention: the tokens of each assistant message's content plus the template's end-of-turn marker
(ChatML: ``<|im_end|>``) are trained; everything else (system prompt, the template's default system prompt,
user turns, role headers, and the whitespace a template writes *after* the end-of-turn marker, e.g. ChatML's
newline) is ``-100``. Generation stops at the marker, so the newline after it is never generated.

Labels are derived without ``{% generation %}`` markers: the dialogue's prefixes are rendered and their
lengths give each assistant reply's character span in the full rendering; the span is mapped to tokens
through the tokenizer's offsets. Both steps are checked (prefixes must be prefixes, no token may straddle
a turn boundary) so a template or tokenizer that breaks the assumption fails loudly instead of training on
the wrong tokens. Dialogues longer than ``max_length`` lose their oldest exchanges or are dropped.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ..common import check_choice, first_line
from .options import OVERLONG_POLICIES
from .schema import IGNORE_INDEX, DataError, Dialogue, validate_dialogue


@dataclass
class _Rendered:
    """One dialogue rendered by the chat template and tokenized once, with character offsets per token."""

    messages: Dialogue
    text: str
    input_ids: list[int]
    offsets: list[tuple[int, int]]


def _render(tokenizer, messages: Dialogue, where: str, generation_prompt: bool = False) -> str:
    try:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as err:  # jinja2 errors and a template's own raise_exception() calls
        raise DataError(
            f"{where}: the chat template failed to render the dialogue: {first_line(err)}"
        ) from None
    if not isinstance(text, str):
        raise DataError(f"{where}: the chat template rendered {type(text).__name__}, not text.")
    return text


def _render_and_tokenize(tokenizer, messages: Dialogue, where: str) -> _Rendered:
    text = _render(tokenizer, messages, where)
    # The template already wrote every special token it wants (BOS included), so add none.
    try:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:  # Python ("slow") tokenizers cannot map tokens back to characters
        raise DataError(
            "assistant-only labels need character offsets, which this tokenizer cannot give; "
            "load the model's fast tokenizer."
        ) from None
    return _Rendered(
        messages, text, list(encoding["input_ids"]), [tuple(o) for o in encoding["offset_mapping"]]
    )


def _assistant_spans(rendered: _Rendered, tokenizer, where: str) -> list[tuple[int, int, int]]:
    """``(start, trained_end, turn_end)`` character positions of each assistant turn in ``rendered.text``.

    ``start`` is where the reply begins (the rendering of the turns before it plus the generation prompt,
    i.e. exactly what the model sees at chat time), ``turn_end`` where the next turn begins, and
    ``trained_end`` is ``turn_end`` less the whitespace the template writes after its end-of-turn marker.
    """
    full, messages, spans = rendered.text, rendered.messages, []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:index], where, generation_prompt=True)
        through = _render(tokenizer, messages[: index + 1], where)
        for prefix, what in ((prompt, "the prompt before"), (through, "the turns through")):
            if not full.startswith(prefix):
                raise DataError(
                    f"{where}: the chat template is not prefix-stable: rendering {what} message {index} "
                    "is not a prefix of rendering the whole dialogue (the template rewrites earlier turns, "
                    "e.g. strips their reasoning), so assistant-only labels cannot be derived; "
                    "use a template that renders each turn the same way wherever it appears."
                )
        start, turn_end = len(prompt), len(through)
        # An empty span (a template that renders no reply text) is allowed here; an example whose spans
        # hold no token at all fails as a whole in _tokenize.
        if turn_end < start or (spans and start < spans[-1][2]):
            raise DataError(f"{where}: the chat template renders assistant message {index} out of order.")
        spans.append((start, start + len(full[start:turn_end].rstrip()), turn_end))
    return spans


def _label_tokens(
    rendered: _Rendered, spans: list[tuple[int, int, int]], where: str
) -> tuple[list[int], list[int]]:
    """Labels for ``rendered`` (token ids inside the spans, -100 elsewhere) and each span's first token."""
    starts = [start for start, _ in rendered.offsets]
    ends = [end for _, end in rendered.offsets]
    if any(a > b for a, b in zip(starts, starts[1:], strict=False)):
        raise DataError(f"{where}: the tokenizer returned unordered character offsets; use a fast tokenizer.")
    labels = [IGNORE_INDEX] * len(starts)
    first_tokens = []
    for start, trained_end, turn_end in spans:
        for boundary in (start, turn_end):
            _check_boundary(starts, ends, boundary, where)
        first = bisect.bisect_left(starts, start)
        # A token that starts before trained_end belongs to the reply even if it reaches past it.
        last = bisect.bisect_left(starts, trained_end)
        labels[first:last] = rendered.input_ids[first:last]
        first_tokens.append(first)
    return labels, first_tokens


def end_of_turn_ids(tokenizer) -> set[int]:
    """Token ids that can end an assistant turn: the tokenizer's EOS and its special tokens (``<|im_end|>``,
    ``<|eot_id|>``, ``</s>``, ...); generation stops on them."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def check_turns_end(labels: list[int], end_ids: set[int], where: str) -> None:
    """Every trained span (a run of labelled tokens) must end with an end-of-turn token: a model trained on
    replies that never end learns to run on."""
    for index, label in enumerate(labels):
        ends_run = label != IGNORE_INDEX and (index + 1 == len(labels) or labels[index + 1] == IGNORE_INDEX)
        if ends_run and label not in end_ids:
            raise DataError(
                f"{where}: a trained assistant reply ends with token {label}, not with an end-of-turn token "
                "(EOS or a special token such as <|im_end|>); the model would not learn to stop. Use the chat "
                "template of an -Instruct/-Chat model, or one that closes assistant turns with EOS.")


def _check_boundary(starts: list[int], ends: list[int], boundary: int, where: str) -> None:
    """A turn boundary must fall between two tokens; a token across it would belong to both turns."""
    index = bisect.bisect_left(starts, boundary)
    if index > 0 and ends[index - 1] > boundary:
        raise DataError(
            f"{where}: the tokenizer merges text across a turn boundary (character {boundary}), "
            "so tokenizing the prompt and the reply separately does not line up with tokenizing the "
            "whole dialogue; "
            "check for leading/trailing whitespace in the messages."
        )


def _check_prefix_tokens(rendered: _Rendered, tokenizer, first_tokens: list[int], spans, where: str) -> None:
    """Exact check: each prompt before a reply, tokenized alone, gives the same tokens as in the full text."""
    for (start, _, _), first in zip(spans, first_tokens, strict=True):
        alone = tokenizer(rendered.text[:start], add_special_tokens=False)["input_ids"]
        if list(alone) != rendered.input_ids[:first]:
            raise DataError(
                f"{where}: tokenizing the prompt before an assistant reply (up to character {start}) "
                "gives other tokens than tokenizing the whole dialogue; this tokenizer cannot be used "
                "for assistant-only labels."
            )


def _split_exchanges(messages: Dialogue) -> tuple[Dialogue, list[Dialogue]]:
    """The system message (if any) and the exchanges: user message(s) followed by the assistant's reply(s)."""
    head = messages[:1] if messages[0]["role"] == "system" else []
    exchanges: list[Dialogue] = []
    for message in messages[len(head) :]:
        if message["role"] == "user" and (not exchanges or exchanges[-1][-1]["role"] != "user"):
            exchanges.append([])
        exchanges[-1].append(message)
    return head, exchanges


def _fit(
    messages: Dialogue, tokenizer, max_length: int, overlong_policy: str, where: str
) -> tuple[_Rendered | None, int]:
    """The rendering to train on and how many oldest exchanges were dropped; None if the example is out."""
    rendered = _render_and_tokenize(tokenizer, messages, where)
    if len(rendered.input_ids) <= max_length:
        return rendered, 0
    if overlong_policy == "drop_example":
        return None, 0
    head, exchanges = _split_exchanges(messages)
    # The kept tail must still hold an assistant reply, so at most up to the last exchange that has one.
    most = max(i for i, exchange in enumerate(exchanges) if any(m["role"] == "assistant" for m in exchange))
    cache: dict[int, _Rendered] = {}

    def render_without(dropped: int) -> _Rendered:
        if dropped not in cache:
            kept = head + [m for exchange in exchanges[dropped:] for m in exchange]
            cache[dropped] = _render_and_tokenize(tokenizer, kept, where)
        return cache[dropped]

    # Length shrinks as exchanges are dropped, so binary-search the fewest drops that fit: log2(turns)
    # renders instead of one per exchange.
    low, high = 1, most
    if high < 1 or len(render_without(high).input_ids) > max_length:
        return None, 0
    while low < high:
        middle = (low + high) // 2
        if len(render_without(middle).input_ids) <= max_length:
            high = middle
        else:
            low = middle + 1
    return render_without(low), low


def tokenize_dialogue(
    messages: list[dict],
    tokenizer,
    max_length: int,
    overlong_policy: str = "drop_oldest_turns",
    *,
    where: str = "dialogue",
    exact_check: bool = False,
) -> dict | None:
    """``{"input_ids", "labels"}`` for one dialogue, or None if it is too long and dropped.

    Labels are -100 except on each assistant reply: its content tokens and the template's end-of-turn
    marker (``<|im_end|>`` for ChatML), not the newline the template writes after the marker.
    ``exact_check`` also re-tokenizes every prompt prefix alone and compares (slower; see build_dataset).
    """
    encoded, _ = _tokenize(messages, tokenizer, max_length, overlong_policy, where, exact_check)
    return None if encoded is None else {"input_ids": encoded["input_ids"], "labels": encoded["labels"]}


def _tokenize(
    messages: list[dict], tokenizer, max_length: int, overlong_policy: str, where: str, exact_check: bool
) -> tuple[dict | None, int]:
    check_choice("overlong_policy", overlong_policy, OVERLONG_POLICIES, DataError)
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("the tokenizer has no chat template; use a chat model's tokenizer or set one.")
    validate_dialogue(messages, where)
    # Only role and content reach the template, so stray keys cannot change how a turn renders.
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    rendered, dropped = _fit(messages, tokenizer, max_length, overlong_policy, where)
    if rendered is None:
        return None, 0
    spans = _assistant_spans(rendered, tokenizer, where)
    labels, first_tokens = _label_tokens(rendered, spans, where)
    check_turns_end(labels, end_of_turn_ids(tokenizer), where)
    if exact_check:
        _check_prefix_tokens(rendered, tokenizer, first_tokens, spans, where)
    if all(label == IGNORE_INDEX for label in labels):
        raise DataError(
            f"{where}: no trained token: no assistant reply survives rendering and tokenization; "
            "check the chat template renders assistant messages."
        )
    return {"input_ids": rendered.input_ids, "labels": labels, "messages": rendered.messages}, dropped
