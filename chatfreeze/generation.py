"""Generating replies with a chat model: one home for the defaults and the call, shared by training's sample
replies, evaluation and the terminal chat."""

from __future__ import annotations

import logging
import threading
import time

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from .progress import Progress

logger = logging.getLogger(__name__)

# Support answers should be factual and stable: low temperature, nucleus sampling, a mild repetition penalty
# (SmolLM2-135M loops on long replies without one). 256 new tokens ~ 190 English words.
DEFAULT_GENERATION = dict(max_new_tokens=256, do_sample=True, temperature=0.3, top_p=0.9, repetition_penalty=1.1)


def support_generation_config(base: GenerationConfig | None, tokenizer) -> GenerationConfig:
    """The generation config saved with a fine-tuned model: the base model's, with chat-friendly defaults."""
    config = GenerationConfig.from_dict(base.to_dict()) if base is not None else GenerationConfig()
    for key, value in DEFAULT_GENERATION.items():
        setattr(config, key, value)
    config.eos_token_id = tokenizer.eos_token_id if config.eos_token_id is None else config.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    return config


class NucleusSampler(LogitsProcessor):
    """Nucleus (top-p) sampling as a logits processor, for ``generate(do_sample=False)``: it draws each row's next
    token from its nucleus and returns scores that are ``-inf`` everywhere but there, so greedy decoding takes the
    draw. The nucleus is transformers' ``TopPLogitsWarper``'s (a token stays when the tokens more likely than it
    hold less than ``top_p`` of the mass; the most likely always stays), read from each row's ``candidates`` most
    likely tokens when they hold at least ``top_p`` of its mass (most rows), from a sort of the row otherwise; the
    draw is one uniform number per row against the nucleus' cumulative mass (``torch.rand``: seed it with
    ``torch.manual_seed``), the distribution ``torch.multinomial`` samples after the warper.

    Why: on a CPU the warper's sort of every row of [batch, 49,152] scores and ``torch.multinomial`` over the whole
    vocabulary cost more than a small model's forward step (docs/performance.md: 7.8 s and 3.5 s of a 26.5 s batch
    of SmolLM2-135M passages)."""

    def __init__(self, top_p: float, temperature: float = 1.0, candidates: int = 1024):
        if not 0.0 < top_p <= 1.0 or temperature <= 0:
            raise ValueError(f"NucleusSampler: top_p must be in (0, 1] and temperature > 0, not {top_p}, {temperature}")
        self.top_p, self.temperature, self.candidates = float(top_p), float(temperature), int(candidates)
        self.rows = self.sorted_rows = 0  # rows drawn, and those that needed a sort of the whole vocabulary

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = (scores.float() / self.temperature).softmax(dim=-1)
        top, index = probs.topk(min(self.candidates, probs.shape[-1]), dim=-1)
        inside = top.sum(dim=-1) >= self.top_p
        choice = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
        from_candidates, from_sort = torch.nonzero(inside).flatten(), torch.nonzero(~inside).flatten()
        if from_candidates.numel():
            choice[from_candidates] = self._draw(top[from_candidates], index[from_candidates])
        if from_sort.numel():
            choice[from_sort] = self._draw(*probs[from_sort].sort(dim=-1, descending=True))
        self.rows += probs.shape[0]
        self.sorted_rows += from_sort.numel()
        drawn = torch.full_like(scores, -float("inf"))
        return drawn.scatter_(-1, choice[:, None], 0.0)

    def _draw(self, ordered: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """One token per row from probabilities in descending order (``order``: their token ids)."""
        kept = torch.where(ordered.cumsum(dim=-1) - ordered < self.top_p, ordered, torch.zeros_like(ordered))
        cumulative = kept.cumsum(dim=-1)
        point = torch.rand(ordered.shape[0], 1, device=ordered.device) * cumulative[:, -1:]
        position = torch.searchsorted(cumulative, point, right=True).clamp_max(ordered.shape[-1] - 1)
        return order.gather(-1, position).squeeze(-1)


def nucleus_sampling(top_p: float, temperature: float = 1.0) -> dict:
    """``model.generate`` keyword arguments that sample at ``temperature`` from the ``top_p`` nucleus through
    ``NucleusSampler`` (greedy decoding of its one-token scores)."""
    return {"do_sample": False, "logits_processor": LogitsProcessorList([NucleusSampler(top_p, temperature)])}


def render_prompt(tokenizer, messages: list[dict]) -> torch.Tensor:
    """Token ids of ``messages`` followed by the assistant's generation prompt."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


@torch.inference_mode()
def generate_reply(
    model,
    tokenizer,
    messages: list[dict],
    generation_config: GenerationConfig | None = None,
    streamer=None,
    **overrides,
) -> str:
    """The assistant's next reply to ``messages`` (a list of role/content dicts), as plain text."""
    input_ids = render_prompt(tokenizer, messages).to(model.device)
    config = generation_config or model.generation_config
    output = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        generation_config=config,
        streamer=streamer,
        **overrides,
    )
    return tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True).strip()


class Reply(str):
    """A generated reply's text, and whether the model ended it (``finished``: it produced an end-of-sequence
    token) rather than running into ``max_new_tokens``. A ``str`` everywhere else."""

    finished: bool

    def __new__(cls, text: str, finished: bool = True) -> Reply:
        reply = super().__new__(cls, text)
        reply.finished = finished
        return reply


def _stop_ids(generation_config: GenerationConfig, tokenizer) -> set[int]:
    eos = generation_config.eos_token_id if generation_config.eos_token_id is not None else tokenizer.eos_token_id
    return {int(token) for token in (eos if isinstance(eos, (list, tuple)) else [eos]) if token is not None}


# Below this many shared leading tokens a separate prefill of them costs more than it saves.
MIN_SHARED_TOKENS = 16


def shared_prefix_length(prompts: list[torch.Tensor]) -> int:
    """How many leading tokens all prompts share, leaving every prompt at least one token of its own."""
    limit = min(len(ids) for ids in prompts) - 1
    for position in range(max(0, limit)):
        if any(int(ids[position]) != int(prompts[0][position]) for ids in prompts[1:]):
            return position
    return max(0, limit)


def _prefill(model, prefix: torch.Tensor):
    """The model's own KV cache of ``prefix`` (batch 1), or None when it is not a plain per-layer cache."""
    from .modeling.compat import unsupported_cache

    output = model(input_ids=prefix[None].to(model.device), use_cache=True)
    cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
    layers = len(getattr(cache, "layers", []))
    return None if cache is None or unsupported_cache(cache, layers) else cache


def _batch(prompts: list[torch.Tensor], rows: list[int], pad: int, shared: int):
    """``(input_ids, attention_mask, width)``: each row is the shared prefix, padding, then its own tokens (left
    padding when ``shared`` is 0), so every row's reply starts right after its own prompt. Position ids follow
    the attention mask, so the padding in the middle changes no real token's position."""
    width = max(len(prompts[i]) for i in rows) - shared
    input_ids = torch.full((len(rows), shared + width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), shared + width), dtype=torch.long)
    for row, index in enumerate(rows):
        ids = prompts[index]
        input_ids[row, :shared], attention_mask[row, :shared] = ids[:shared], 1
        own = ids[shared:]
        input_ids[row, shared + width - len(own) :] = own
        attention_mask[row, shared + width - len(own) :] = 1
    return input_ids, attention_mask, shared + width


@torch.inference_mode()
def generate_replies(model, tokenizer, conversations: list[list[dict]], generation_config: GenerationConfig,
                     batch_size: int = 64, what: str | None = None) -> list[Reply]:
    """Replies (``Reply``: text + whether the model ended it) to many conversations, ``batch_size`` at a time
    (decoding a batch costs little more than one row on a CPU). Leading tokens every prompt shares (the system
    prompt) run once: their KV cache, the model's own, is copied to every row. Conversations are batched by length and returned in input order.

    Checked once per call: the most padded row of the first batch must get the reply it gets alone. A model whose
    generation does not derive positions from the attention mask (e.g. learned absolute positions) fails that
    check with the shared prefix, then with left padding; each failure falls back (with a log line) to the next
    layout, the last being one conversation at a time. ``what`` names the phase in the progress shown (none
    without it).
    """
    prompts = [render_prompt(tokenizer, messages)[0] for messages in conversations]
    if not prompts:
        return []
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    # Equal batches: 130 prompts in batches of 64 decode as 65 + 65, not 64 + 64 + 2 (a batch costs nearly the same
    # per step whatever its size, so a nearly empty last batch would cost a whole batch's steps).
    batch_size = -(-len(prompts) // -(-len(prompts) // max(1, batch_size)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = _stop_ids(generation_config, tokenizer)

    def run(rows: list[int], shared: int, cache) -> list[Reply]:
        input_ids, attention_mask, width = _batch(prompts, rows, pad, shared)
        extra = {"cache": _copies(cache, len(rows))} if cache is not None else {}
        output = model.generate(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device),
                                generation_config=generation_config, **extra)
        return [Reply(tokenizer.decode(output[row, width:], skip_special_tokens=True).strip(),
                      finished=bool(stops & set(output[row, width:].tolist()))) for row in range(len(rows))]

    shared = shared_prefix_length(prompts)
    layouts = [(shared, _prefill(model, prompts[0][:shared]))] if shared >= MIN_SHARED_TOKENS else []
    layouts = [(n, cache) for n, cache in layouts if cache is not None] + [(0, None)]
    first = order[:batch_size]
    replies: dict[int, Reply] = {}
    with Progress(what, len(prompts), "replies") as shown:
        alone = run([first[0]], 0, None)[0] if len(first) > 1 else None
        for shared, cache in layouts:
            batch = run(first, shared, cache)
            if alone is None or batch[0] == alone:
                break
            logger.info("Batched generation: %s gives another reply than one row alone for this model; trying the "
                        "next layout.", "a shared prefix" if shared else "left padding")
        else:
            for index in range(len(prompts)):
                replies[index] = run([index], 0, None)[0]
                shown.update()
            return [replies[index] for index in range(len(prompts))]
        replies.update(zip(first, batch, strict=True))
        shown.update(len(first))
        for start in range(batch_size, len(order), batch_size):
            rows = order[start : start + batch_size]
            replies.update(zip(rows, run(rows, shared, cache), strict=True))
            shown.update(len(rows))
    return [replies[index] for index in range(len(prompts))]


def _copies(cache, rows: int):
    import copy

    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(rows)
    return cache


class StopFlag(StoppingCriteria):
    """A stopping criterion another thread can raise (the chat's Ctrl-C): generation ends after the current token."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool, device=input_ids.device)


class ReplyStream:
    """One reply generated in a background thread; iterating it yields the text as tokens arrive.

    ``stop()`` ends generation after the current token. ``result()`` waits for the thread and returns the whole
    reply (decoded from the token ids, so it matches ``generate_reply``); afterwards ``new_tokens`` and
    ``seconds`` describe the generation. An error raised by ``generate`` is raised again by ``result()``.
    """

    def __init__(self, model, tokenizer, input_ids: torch.Tensor, generation_config: GenerationConfig | None = None):
        self.prompt_tokens = int(input_ids.shape[1])
        self.new_tokens = 0
        self.seconds = 0.0
        self._tokenizer = tokenizer
        self._flag = StopFlag()
        self._streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._output: torch.Tensor | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._generate, args=(model, input_ids.to(model.device), generation_config), daemon=True
        )
        self._thread.start()

    def _generate(self, model, input_ids: torch.Tensor, config: GenerationConfig | None) -> None:
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                self._output = model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    generation_config=config or model.generation_config,
                    streamer=self._streamer,
                    stopping_criteria=StoppingCriteriaList([self._flag]),
                )
        except BaseException as err:  # noqa: BLE001 - handed to the reading thread by result()
            self._error = err
            self._streamer.end()  # unblocks the reader; generate() ends the stream itself only on success
        finally:
            self.seconds = time.perf_counter() - started

    def __iter__(self):
        return iter(self._streamer)

    @property
    def stopped(self) -> bool:
        return self._flag.is_set()

    def stop(self) -> None:
        self._flag.set()

    def close(self) -> None:
        """Stop and wait for the generation thread: a process must not exit while it runs."""
        self.stop()
        self._thread.join()

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        new_ids = self._output[0, self.prompt_tokens :]
        self.new_tokens = int(new_ids.shape[0])
        return self._tokenizer.decode(new_ids, skip_special_tokens=True).strip()
