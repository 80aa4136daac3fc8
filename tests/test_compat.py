"""The assumptions each ``compat.py`` makes about another library's internals, checked against the installed
versions: a release that changes one of them fails here, by name, instead of silently mis-training."""

from __future__ import annotations

import functools
import inspect

import pytest
import torch
from conftest import build_tiny_model, tiny_config
from datasets import Dataset

from chatfreeze.modeling import compat as model_compat
from chatfreeze.training import compat as train_compat

# ---------------------------------------------------------------------------------------------- modeling.compat


def tiny_extra_config(model_type: str):
    from transformers import AutoConfig

    sizes = dict(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                 eos_token_id=2)
    extra = {"gemma2": dict(final_logit_softcapping=2.0), "cohere": dict(logit_scale=0.25),
             "granite": dict(logits_scaling=4.0)}.get(model_type, {})
    return AutoConfig.for_model(model_type, **sizes, **extra)


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gpt_neox", "opt", "gemma2", "cohere", "granite"])
def test_logit_processing_reproduces_the_models_own_logits(model_type):
    """What ``*ForCausalLM.forward`` does between the LM head and the loss, per verified architecture."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type) if model_type in ("llama", "gpt2", "gpt_neox", "opt") else \
        tiny_extra_config(model_type)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    head = model.get_output_embeddings()
    seen = []
    handle = head.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    input_ids = torch.randint(3, 90, (2, 9))
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
        handle.remove()
        expected = model_compat.LOGIT_PROCESSING[config.model_type](head(seen[0]), config)
    torch.testing.assert_close(expected, logits, rtol=0, atol=1e-5)
    if model_type in ("gemma2", "cohere", "granite"):
        assert not torch.allclose(head(seen[0]), logits), "the post-processing must matter for this check to bite"


def test_dynamic_cache_layers_can_be_stubbed_to_a_length():
    model = build_tiny_model("llama")
    input_ids = torch.randint(3, 200, (1, 6))
    with torch.no_grad():
        cache = model(input_ids=input_ids, use_cache=True).past_key_values
    assert model_compat.unsupported_cache(cache, 4) is None
    model_compat.stub_cache_layers(cache, 2, 11, like=torch.zeros(1))
    assert [layer.get_seq_length() for layer in cache.layers] == [11, 11, 6, 6]
    assert model_compat.unsupported_cache(object(), 4) is not None


# ---------------------------------------------------------------------------------------------- training.compat


def test_training_arguments_cache_their_device_setup(tmp_path):
    from transformers import TrainingArguments

    assert isinstance(inspect.getattr_static(TrainingArguments, "_setup_devices"), functools.cached_property)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    _ = args.device
    assert "_setup_devices" in args.__dict__
    train_compat.reset_device_setup(args)
    assert "_setup_devices" not in args.__dict__
    assert args.device.type == "cpu"


def test_accelerator_state_can_be_reset():
    from accelerate import PartialState
    from accelerate.state import AcceleratorState

    PartialState()
    assert PartialState._shared_state
    train_compat.reset_accelerator_state()
    assert not PartialState._shared_state and not AcceleratorState._shared_state


def make_trainer(tmp_path):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", remove_unused_columns=True)
    return Trainer(model=build_tiny_model("llama"), args=args)


def test_signature_columns_decide_what_remove_unused_columns_keeps(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer._set_signature_columns_if_needed()
    assert isinstance(trainer._signature_columns, list) and "input_ids" in trainer._signature_columns
    train_compat.keep_signature_column(trainer, "my_index")
    train_compat.keep_signature_column(trainer, "my_index")
    assert trainer._signature_columns.count("my_index") == 1
    data = Dataset.from_dict({"input_ids": [[5, 6]], "labels": [[5, 6]], "my_index": [0], "junk": ["x"]})
    kept, collator = train_compat.training_loader_parts(trainer, data, "the collator")
    assert set(kept.column_names) == {"input_ids", "labels", "my_index"} and collator == "the collator"


def test_trainer_compute_loss_scales_as_copied(tmp_path):
    """Trainer.compute_loss multiplies the model's loss by the number of processes when tokens are averaged
    across devices; FreezeTrainer's fast path copies that factor (``scale_loss_like_trainer``)."""
    from transformers import Trainer

    source = inspect.getsource(Trainer.compute_loss)
    assert "average_tokens_across_devices" in source and "num_processes" in source and "n_gpu" in source
    trainer = make_trainer(tmp_path)
    trainer.args.average_tokens_across_devices = True
    trainer.model_accepts_loss_kwargs = True
    batch = {"input_ids": torch.randint(3, 200, (2, 8)), "labels": torch.randint(3, 200, (2, 8))}
    num_items = torch.tensor(14)
    theirs = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items)
    own = trainer.model(**batch, num_items_in_batch=num_items).loss
    torch.testing.assert_close(train_compat.scale_loss_like_trainer(trainer, own, num_items), theirs)
