"""``--method lora``: peft LoRA adapters on some blocks, everything else frozen, trained by a plain
``transformers.Trainer`` and merged into the saved model, so a LoRA run's output directory loads, chats and pushes
like any other."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Trainer module is heavy, and --help reads the method names from the registry
    from transformers import Trainer

from ...freezing import FreezeArguments, find_blocks
from .base import TrainingMethod

# Every linear map of a Llama-style block: attention and MLP.
LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraOptions:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_LINEARS))
    top_layers: int | None = None  # adapters on the top N blocks only; None: on every block

    @classmethod
    def from_args(cls, method_args) -> LoraOptions:
        """The options of ``--lora_r/--lora_alpha/--lora_layers``."""
        return cls(r=method_args.lora_r, alpha=method_args.lora_alpha, top_layers=method_args.lora_layers or None)

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


def merge_lora(model):
    """The plain model with the trained adapters merged into its weights (a no-op for a model without them)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


class Lora(TrainingMethod):
    name = "lora"
    supports_kl_to_base = False
    interpolates = False  # --select_alpha moves trained tensors, not adapters
    card_how = ("fine-tuned from {base} with LoRA adapters (r={lora_r}) on blocks {trainable_layers} through "
                "chatfreeze ({trained} adapter parameters), trained on support dialogues and merged into the weights: "
                "{frozen} are bit-identical to the base, and the merge changed {trainable} of {total} parameters.")

    def describe(self, freeze_args, method_args, model) -> str:
        options = LoraOptions.from_args(method_args)
        return f"--method lora: {options.describe(len(find_blocks(model)[1]))}; freeze options ignored."

    def plan_spec(self, freeze_args, method_args) -> tuple[FreezeArguments, bool]:
        # The plan says which tensors the merged LoRA model may differ in: the adapted blocks' weights. Below
        # them, and the embeddings, head and final norm, stay bit-identical to the base.
        layers = method_args.lora_layers
        spec = FreezeArguments(num_frozen_layers=str(-layers) if layers else "0", freeze_embeddings=True,
                               freeze_final_norm=True)
        return spec, True

    def options(self, method_args) -> dict:
        return {"lora_r": method_args.lora_r, "lora_alpha": method_args.lora_alpha,
                "lora_layers": method_args.lora_layers}

    def build_trainer(self, run, trainer_class: type[Trainer], common: dict) -> Trainer:
        from ..trainer import FreezeTrainer

        if issubclass(trainer_class, FreezeTrainer):
            from transformers import Trainer

            trainer_class = Trainer  # peft freezes the base itself; the freeze trainer's plan does not apply
        run.model = common["model"] = apply_lora(run.model, LoraOptions.from_args(run.training_args))
        return trainer_class(**common)

    def base_model(self, model) -> contextlib.AbstractContextManager:
        # Measured with its adapters off, as the base model it wraps (the base's cached measurements serve it).
        return model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()

    def trained_metrics(self, model) -> dict:
        if hasattr(model, "get_nb_trainable_parameters"):  # what trained are the adapters, not the blocks
            adapters = model.get_nb_trainable_parameters()[0]
            return {"adapter_parameters": adapters, "trained_parameters": adapters}
        return {}

    def model_to_save(self, model):
        return merge_lora(model)

    def save_model(self, trainer: Trainer, model, output_dir: str, is_main_process: bool) -> None:
        # The trainer holds the peft wrapper; the merged plain model is what is saved.
        if is_main_process:
            model.save_pretrained(output_dir)
