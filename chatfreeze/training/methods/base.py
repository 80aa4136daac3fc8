"""What every training method decides for a run, in one object: which tensors may change (its freeze spec), how
its trainer is built, which retention terms and fast paths apply, how the base is measured for the before/after
evaluation, and what is saved. The recipe calls these and never compares method names."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Trainer module is heavy, and --help reads the method names from the registry
    from transformers import Trainer

from ...freezing import FreezeArguments

logger = logging.getLogger(__name__)


class TrainingMethod:
    """The freeze method's behaviour; the other methods override what differs."""

    name = "freeze"
    # KL to the base runs the base's frozen copy of what trains on the frozen prefix's boundary states: it needs
    # a frozen prefix and the fast path, so only a freeze has it.
    supports_kl_to_base = True
    # --select_alpha moves the trained tensors toward the base: they must be the model's own tensors.
    interpolates = True

    # How the model card says this method trained the model (``publish.card._intro`` fills the fields from the plan,
    # the run's results and this spec); recorded in freeze_plan.json, so a card made anywhere later says it.
    card_how = ("freeze-tuned from {base} with chatfreeze: {frozen} were kept frozen, bit-identical to the base "
                "weights training started from, and only {trainable} of {total} parameters ({pct}) were trained on "
                "support dialogues. Freezing the bottom of the network keeps most of what the base model knows.")

    def describe(self, freeze_args: FreezeArguments, method_args, model) -> str | None:
        """One log line on what this method trains instead of the freeze spec, or None for the freeze itself."""
        return None

    def plan_spec(self, freeze_args: FreezeArguments, method_args) -> tuple[FreezeArguments, bool]:
        """``(spec, allow_no_freeze)``: the freeze spec of the tensors this method may change, and whether a spec
        that freezes nothing is allowed."""
        return freeze_args, False

    def spec_record(self, method_args) -> dict:
        """What ``freeze_plan.json``'s ``spec`` records about the method (the card reads it): its name, its own
        options (``options``) and how the card says it trained."""
        options = self.options(method_args)
        return {"method": self.name, **options, "method_options": list(options), "card_how": self.card_how}

    def options(self, method_args) -> dict:
        """This method's own options, as the plan records them (none for a freeze)."""
        return {}

    def drop_unsupported(self, training_args) -> None:
        """Decide, once, the training arguments this method cannot honour (before anything is built)."""
        if not self.supports_kl_to_base and training_args.kl_to_base:
            logger.warning("--kl_to_base %g ignored for --method %s (it needs a frozen prefix: --method freeze).",
                           training_args.kl_to_base, self.name)
            training_args.kl_to_base = 0.0

    def build_trainer(self, run, trainer_class: type[Trainer], common: dict) -> Trainer:
        """The trainer for ``run`` (a ``RecipeRun``): ``common`` holds the model, arguments, data and collator."""
        from ..trainer import FreezeTrainer

        if issubclass(trainer_class, FreezeTrainer):
            return trainer_class(freeze_plan=run.plan, **common)
        from ...freezing import apply_plan

        # A plain Trainer is the "freeze by hand" baseline: the plan as requires_grad only, no fast path, no KL.
        if common["args"].kl_to_base:
            logger.warning("--kl_to_base %g ignored: %s is not a FreezeTrainer (the KL term is the fast path's).",
                           common["args"].kl_to_base, trainer_class.__name__)
            common["args"].kl_to_base = 0.0
        apply_plan(common["model"], run.plan)
        return trainer_class(**common)

    def base_model(self, model) -> contextlib.AbstractContextManager:
        """A context in which ``model`` computes as the base model (for the "before" measurement)."""
        return contextlib.nullcontext()

    def trained_metrics(self, model) -> dict:
        """Counts of what trained that the plan does not show: ``trained_parameters`` where the method counts them
        its own way (LoRA: its adapters); none where the plan's trainable count is it."""
        return {}

    def model_to_save(self, model):
        """The model a run saves (LoRA merges its adapters into a plain model here)."""
        return model

    def save_model(self, trainer: Trainer, model, output_dir: str, is_main_process: bool) -> None:
        """Save the full weights of ``model`` (``model_to_save``'s result) to ``output_dir``."""
        trainer.save_model(output_dir)
