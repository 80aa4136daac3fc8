"""Generating replies with a chat model: one home for the defaults and the call, shared by training's sample
replies, evaluation and the terminal chat."""

from __future__ import annotations

import torch
from transformers import GenerationConfig

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
