"""Generating replies with a chat model: one home for the defaults and the call, shared by training's sample
replies, evaluation and the terminal chat."""

from __future__ import annotations

import threading
import time

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

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
