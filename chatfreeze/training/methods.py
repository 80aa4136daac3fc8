"""Baselines a freeze is compared with, built from the same model, data and arguments as the recipe's trainer:
full fine-tuning (a ``FreezePlan`` that freezes nothing, ``recipe.plan(run, allow_no_freeze=True)``) and LoRA
(peft adapters on some blocks, everything else frozen, trained by a plain ``transformers.Trainer``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import Trainer

from ..data import DialogueCollator
from ..freezing import find_blocks

# Every linear map of a Llama-style block: attention and MLP.
LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraOptions:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_LINEARS))
    top_layers: int | None = None  # adapters on the top N blocks only; None: on every block

    def describe(self, num_layers: int) -> str:
        where = "every block" if not self.top_layers else \
            f"blocks {num_layers - self.top_layers}-{num_layers - 1}"
        short = ", ".join(name.split("_")[0] for name in self.target_modules)
        return f"LoRA r={self.r}, alpha={self.alpha} on {short} of {where}; everything else frozen"


def apply_lora(model, options: LoraOptions):
    """``model`` wrapped by peft with LoRA adapters as ``options`` say (the base weights frozen)."""
    from peft import LoraConfig, get_peft_model

    num_layers = len(find_blocks(model)[1])
    layers = None if not options.top_layers else list(range(num_layers - options.top_layers, num_layers))
    config = LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                        target_modules=list(options.target_modules), layers_to_transform=layers,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def build_lora_trainer(run, options: LoraOptions, trainer_class: type[Trainer] = Trainer, **kwargs):
    """A ``RecipeRun``'s trainer for LoRA instead of a freeze: ``run.model`` becomes the peft model."""
    run.model = apply_lora(run.model, options)
    run.trainer = trainer_class(
        model=run.model, args=run.training_args, train_dataset=run.train_dataset, eval_dataset=run.eval_dataset,
        data_collator=DialogueCollator(run.tokenizer), processing_class=run.tokenizer, **kwargs,
    )
    return run
