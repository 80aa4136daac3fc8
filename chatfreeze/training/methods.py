"""Baselines a freeze is compared with, built from the same model, data and arguments as the recipe's trainer
(``--method full|lora``): full fine-tuning (a ``FreezePlan`` that freezes nothing) and LoRA (peft adapters on
some blocks, everything else frozen, trained by a plain ``transformers.Trainer`` and merged into the saved
model, so a LoRA run's output directory loads, chats and pushes like any other)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import Trainer

from ..data import DialogueCollator
from ..freezing import FreezeArguments, find_blocks

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
    if getattr(run.training_args, "kl_to_base", 0):
        raise ValueError("--kl_to_base: works with --method freeze (it runs the base's frozen copy of the trained "
                         "blocks); drop it for --method lora.")
    run.model = apply_lora(run.model, options)
    run.trainer = trainer_class(
        model=run.model, args=run.training_args, train_dataset=run.train_dataset, eval_dataset=run.eval_dataset,
        data_collator=DialogueCollator(run.tokenizer), processing_class=run.tokenizer, **kwargs,
    )
    return run


def lora_options(freeze_args: FreezeArguments) -> LoraOptions:
    """The ``LoraOptions`` of ``--lora_r/--lora_alpha/--lora_layers``."""
    return LoraOptions(r=freeze_args.lora_r, alpha=freeze_args.lora_alpha, top_layers=freeze_args.lora_layers or None)


def lora_plan_spec(freeze_args: FreezeArguments) -> FreezeArguments:
    """The freeze spec of what a merged LoRA model may change: the adapted blocks (every block, or the top
    ``--lora_layers``); the embeddings, the head, the final norm and the blocks below stay the base's."""
    layers = freeze_args.lora_layers
    return FreezeArguments(method="lora", num_frozen_layers=str(-layers) if layers else "0", freeze_embeddings=True,
                           freeze_final_norm=True, lora_r=freeze_args.lora_r, lora_alpha=freeze_args.lora_alpha,
                           lora_layers=layers)


def merge_lora(model):
    """The plain model with the trained adapters merged into its weights (a no-op for a model without them)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
