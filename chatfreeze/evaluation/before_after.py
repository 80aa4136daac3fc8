"""Before vs after training on fixed inputs: ``BeforeAfterEvaluator`` measures the base model and the tuned one
the same way, and writes ``evaluation.json`` (with the learn-vs-keep report), the log summary and the metrics
for ``all_results.json``.

What it measures, each only when its input is there (what is not is logged at WARNING and listed under
``not_measured``, never skipped silently):

* learn: **facts accuracy** (the facts probe, greedy replies with the run's system prompt), with ``--facts`` the
  **drilled-questions accuracy** (questions the drills asked, verbatim: fitted or not), **support perplexity**
  (held-out dialogues), ROUGE-L / chrF of held-out replies;
* keep: **short-answer accuracy** (the skills probe's scored half), the **self-agreement ratio** (the tuned
  model's NLL on the base model's own greedy replies to the skills probe, over the base's), **general-text
  perplexity** (a file, or the Hub dataset when it can be reached).

The base model's measurements are cached (``measurement_cache``), keyed by its weights and every input and
setting, so a second run on the same base does not recompute them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from .. import timings
from ..common import first_line, looks_like_path
from ..data import opening_prompts
from ..rundir import write_evaluation
from . import lm_eval, probes
from .agreement import reply_examples, reply_nll
from .generation_metrics import generation_metrics, greedy_replies
from .measurement_cache import MeasurementCache, inputs_fingerprint, weights_fingerprint
from .metrics_table import HEADLINE, change
from .options import EvaluationArguments
from .perplexity import (
    GENERAL_TEXT_SUFFIXES,
    dev_windows,
    general_perplexity,
    load_general_text,
    split_general_ids,
    support_perplexity,
    tokenize_general_text,
    window_spans,
)
from .prefix_states import FrozenPrefixStates
from .probe_halves import facts_halves, half_scores
from .report import format_report, learn_keep

logger = logging.getLogger(__name__)

BUILTIN = "builtin"


def _general_source_missing(source: str) -> bool:
    """A path-like general text that is not there (a Hub id is probed, and fails loudly, when loaded)."""
    path = Path(source).expanduser()
    return not path.exists() and looks_like_path(source, GENERAL_TEXT_SUFFIXES)


class BeforeAfterEvaluator:
    """Measures a model before and after training on fixed inputs, so the two results are comparable.

    The inputs (held-out dialogues, general-text tokens, probes) are prepared once in ``__init__``;
    ``measure(model, "before")`` measures the base (and keeps its skills replies for self-agreement),
    ``measure(model, "after")`` the tuned model; ``finish`` writes ``evaluation.json``, logs the learn-vs-keep
    report and returns ``before_*``/``after_*`` metrics for ``all_results.json``.
    """

    def __init__(self, tokenizer, settings: EvaluationArguments, eval_dataset=None,
                 eval_dialogues: list[list[dict]] | None = None, prefix_states=None, *,
                 system_prompt: str | None = None, batch_size: int = 4, drilled: list | None = None,
                 drilled_system_prompt: str | None = None, neighbours: dict[str, tuple[str, ...]] | None = None,
                 fact_patterns: dict[str, tuple[str, ...]] | None = None):
        self.tokenizer, self.settings, self.eval_dataset = tokenizer, settings, eval_dataset
        # The run's system prompt: the facts probe is asked as the chat would ask it. Sequences per forward pass.
        self.system_prompt, self.batch_size = system_prompt, batch_size
        self.prefix_states = prefix_states  # FrozenPrefixStates: the tuned model reuses the base's frozen prefix
        self.prompts = opening_prompts(eval_dialogues or [], settings.generation_eval_samples)
        self.replies: dict[str, list[str]] = {}
        self.probe_results: dict[str, dict] = {}
        self.details: dict = {}
        self.skipped: list[str] = []
        self.base_examples: list[dict] | None = None  # the base's skills replies, tokenized for self-agreement
        self.base_nll: float | None = None
        self.alpha_selection: dict | None = None  # --select_alpha's candidates and choice, for evaluation.json
        if eval_dataset is None:
            self._skip("support perplexity and generation metrics: no held-out dialogues "
                       "(set --eval_dataset or --validation_split_ratio)")
        # The reported general-text windows, and the text after them: a dev split that choices read instead.
        self.general_ids, self.general_dev_ids = self._general_ids(), None
        if self.general_ids is not None:
            self.general_ids, self.general_dev_ids = split_general_ids(
                self.general_ids, settings.general_window, settings.general_stride, settings.max_windows)
        self.facts = self._load_probe("facts", settings.facts_probe)
        self.facts_halves = facts_halves(self.facts)
        # The facts sheet's confusable facts and each fact's value patterns (the recipe's, with --facts): for
        # facts_<half>_neighbour_errors. Without a sheet they are not measured.
        self.neighbours, self.fact_patterns = neighbours, fact_patterns
        if self.facts and (neighbours is None or fact_patterns is None):
            self._skip("facts neighbour errors: no facts sheet (--facts) to name each fact's neighbours")
        # probes.drilled_probe: questions the drills asked, asked again with the system prompt they were trained with
        self.drilled: list[probes.ProbeItem] = drilled or []
        self.drilled_system_prompt = drilled_system_prompt
        self.skills = self._load_probe("skills", settings.skills_probe)
        self.lm_eval_tasks = lm_eval.parse_tasks(settings.lm_eval_tasks)
        lm_eval.check_available(self.lm_eval_tasks)

    def _skip(self, what: str) -> None:
        self.skipped.append(what)
        logger.warning("Not measured: %s.", what)

    def _general_ids(self) -> list[int] | None:
        settings, source = self.settings, self.settings.general_text
        if not source:
            self._skip("forgetting: no --general_text given")
            return None
        if _general_source_missing(source):
            self._skip(f"forgetting: --general_text {source} does not exist")
            return None
        if not Path(source).expanduser().exists():
            from ..modeling import hub_unreachable

            why = hub_unreachable(source, "dataset")
            if why:
                self._skip(f"forgetting: --general_text {source} is neither a file nor reachable on the Hub "
                           f"({why}); pass a plain-text file to measure it offline")
                return None
        try:
            text = load_general_text(source, settings.general_text_config, settings.general_text_split)
        except (ValueError, FileNotFoundError) as err:
            self._skip(f"forgetting: {err}")
            return None
        windows = settings.max_windows and settings.max_windows + dev_windows(settings.max_windows)
        return tokenize_general_text(self.tokenizer, text, settings.general_window, settings.general_stride, windows)

    def _load_probe(self, kind: str, source: str | None) -> list[probes.ProbeItem]:
        if not source:
            self._skip(f"{kind} probe: none given (--{kind}_probe)")
            return []
        if kind == "facts":
            return probes.load_facts_probe(source)
        return probes.load_skills_probe(probes.SKILLS_FILE if source == BUILTIN else source, "probe")

    # ---- measuring --------------------------------------------------------------------------------------

    def measure(self, model, label: str = "") -> dict:
        """Headline metrics of ``model`` now. ``label="before"`` marks the base model (its skills replies become
        the reference for self-agreement, and its measurements are cached when ``cache_base_measurements``)."""
        started = time.perf_counter()
        is_base = label == "before"
        cache = MeasurementCache() if is_base and self.settings.cache_base_measurements else None
        keys = (weights_fingerprint(model), self.inputs_key()) if cache else None
        cached = cache.get(*keys) if cache else None
        if cached is not None:
            result = self._restore(cached, label)
            if self.prefix_states is not None and self.prefix_states.load(cache.path(*keys).with_suffix(".states.pt")):
                self.details["prefix_states_from_cache"] = True
            logger.info("Evaluation (before): the base model's measurements come from the cache (%s).",
                        cache.path(*keys).name)
            timings.note_cached("Base model's measurements")
        else:
            if cache:
                logger.info("Evaluation (before): no cached measurement of this base model (%s); measuring it now.",
                            cache.path(*keys).name)
            result = self._measure(model, label, is_base)
            if cache:
                cache.put(*keys, self._snapshot(result, label))
                if self._states_for(model) is not None and self.prefix_states.states:
                    self.prefix_states.save(cache.path(*keys).with_suffix(".states.pt"))
        logger.info("Evaluation%s took %.0f s: %s", f" ({label})" if label else "", time.perf_counter() - started,
                    ", ".join(f"{k} {v:.4g}" for k, v in result.items()))
        return result

    def _timed(self, label: str, part: str, started: float) -> None:
        seconds = self.details.setdefault("seconds", {}).setdefault(label or "model", {})
        seconds[part] = round(time.perf_counter() - started, 2)

    def _measure(self, model, label: str, is_base: bool) -> dict:
        settings, result, started = self.settings, {}, time.perf_counter()
        if self.eval_dataset is not None:
            result.update(self._support(model, label))
            self._timed(label, "support_perplexity", started)
        if self.general_ids is not None:
            started = time.perf_counter()
            result.update(self._general(model, label))
            self._timed(label, "general_perplexity", started)
        if self.prompts:
            started = time.perf_counter()
            scores, replies = generation_metrics(model, self.tokenizer, self.prompts, settings.generation_max_new_tokens,
                                                 phase("Generation metrics", label))
            result.update(scores)
            self.replies[label or str(len(self.replies))] = replies
            self._timed(label, "generation_metrics", started)
        result.update(self._probes(model, label, is_base))
        started = time.perf_counter()
        result.update(self._lm_eval(model, label))
        if self.lm_eval_tasks:
            self._timed(label, "lm_eval", started)
        return result

    def _support(self, model, label: str = "") -> dict:
        support = support_perplexity(model, self.eval_dataset, self.tokenizer, self.batch_size,
                                     self._states_for(model), phase("Support perplexity", label))
        self.details.update(support_examples=support["support_examples"], support_tokens=support["support_tokens"])
        return {"support_perplexity": support["support_perplexity"]}

    def _general(self, model, label: str = "") -> dict:
        settings = self.settings
        general = general_perplexity(model, self.general_ids, settings.general_window, settings.general_stride,
                                     settings.max_windows, max(1, self.batch_size // 2),
                                     phase("General-text perplexity", label))
        self.details.update(general_windows=general["general_windows"], general_tokens=general["general_tokens"])
        result = {"general_perplexity": general["general_perplexity"]}
        dev_spans = window_spans(len(self.general_dev_ids or []), settings.general_window, settings.general_stride)
        if dev_spans:
            dev = general_perplexity(model, self.general_dev_ids, settings.general_window, settings.general_stride,
                                     dev_windows(settings.max_windows), max(1, self.batch_size // 2),
                                     phase("General-text perplexity (dev split)", label))
            self.details.update(general_dev_windows=dev["general_windows"], general_dev_tokens=dev["general_tokens"])
            result["general_dev_perplexity"] = dev["general_perplexity"]
        return result

    def measure_teacher_forced(self, model) -> dict:
        """What needs no generation, after ``measure(base, "before")``: support perplexity, general-text
        perplexity, and the self-agreement ratio with the base's skills replies (``--select_alpha`` compares
        candidates on these: no generation, so about a third of a full measurement's time)."""
        result = {}
        if self.eval_dataset is not None:
            result.update(self._support(model))
        if self.general_ids is not None:
            result.update(self._general(model))
        if self.base_examples and self.base_nll:
            result["self_agreement_ratio"] = self._agreement(model)["self_agreement_ratio"]
        return result

    def measure_during_training(self, model) -> dict:
        """What a point of the learning curves holds, after ``measure(base, "before")``: the facts accuracy of the
        probe's dev half (never the test half: choices read these numbers), the drilled questions, the skills
        probe's short answers (a keep goal, so the curves tell when one was first lost) and the teacher-forced
        measures (``measure_teacher_forced``: support perplexity, general-text perplexity, self-agreement)."""
        result = self.measure_teacher_forced(model)
        if self.skills:
            replies = self._ask(model, probes.conversations(self.skills, None), "Skills probe (learning curve)")
            result["skills_accuracy"] = probes.score(self.skills, replies)["accuracy"]
        dev_ids = self.facts_halves.get("dev", set())
        dev = [item for item in self.facts if item.id in dev_ids and item.checkable]
        if dev:
            replies = self._ask(model, probes.conversations(dev, self.system_prompt), "Facts probe (dev half)")
            result["facts_dev_accuracy"] = probes.score(dev, replies)["accuracy"]
        if self.drilled:
            result["facts_drilled_accuracy"] = self._drilled(model)["accuracy"]
        return result

    def _ask(self, model, conversations: list, what: str) -> list[str]:
        """Greedy replies to ``conversations`` with the probes' settings (``what`` names the progress phase)."""
        return greedy_replies(model, self.tokenizer, conversations, self.settings.probe_max_new_tokens,
                              self.settings.probe_batch_size, what)

    def _drilled(self, model, label: str = "") -> dict:
        replies = self._ask(model, probes.conversations(self.drilled, self.drilled_system_prompt),
                            phase("Drilled questions", label))
        return probes.score(self.drilled, replies) | {"replies": dict(
            zip([item.id for item in self.drilled], replies, strict=True))}

    def _lm_eval(self, model, label: str) -> dict:
        if not self.lm_eval_tasks:
            return {}
        settings = self.settings
        logger.info("%s: %s (lm-evaluation-harness shows its own progress).", phase("lm-eval", label),
                    ", ".join(self.lm_eval_tasks))
        try:
            return lm_eval.run_tasks(model, self.tokenizer, self.lm_eval_tasks, settings.lm_eval_limit,
                                     settings.lm_eval_include_path, settings.probe_batch_size)
        except Exception as err:  # noqa: BLE001 - network, unknown task, task data: each means "not measured"
            what = f"lm-eval tasks {','.join(self.lm_eval_tasks)} ({label}): {first_line(err, with_type=True)}"
            if what not in self.skipped:
                self._skip(what)
            return {}

    def _probes(self, model, label: str, is_base: bool) -> dict:
        result = {}
        for kind, items, system in (("facts", self.facts, self.system_prompt), ("skills", self.skills, None)):
            if not items:
                continue
            started = time.perf_counter()
            conversations = probes.conversations(items, system)
            replies = self._ask(model, conversations, phase(f"{kind.capitalize()} probe", label))
            scored = probes.score(items, replies)
            result[f"{kind}_accuracy"] = scored["accuracy"]
            if kind == "facts":
                result.update(self._halves(items, replies, scored))
            self.probe_results.setdefault(label, {})[kind] = scored | {"replies": dict(
                zip([item.id for item in items], replies, strict=True))}
            self._timed(label, f"{kind}_probe", started)
            if kind == "skills":
                started = time.perf_counter()
                result.update(self._self_agreement(model, conversations, replies, is_base, label))
                self._timed(label, "self_agreement", started)
        if self.drilled:
            started = time.perf_counter()
            drilled = self._drilled(model, label)
            result["facts_drilled_accuracy"] = drilled["accuracy"]
            self.probe_results.setdefault(label, {})["drilled"] = drilled
            self._timed(label, "drilled_questions", started)
        return result

    def _halves(self, items, replies, scored: dict) -> dict:
        """Accuracy, wrong values and neighbour errors of the dev and the test half (``half_scores``); their ids
        go into the record."""
        scored["halves"] = {half: sorted(ids) for half, ids in self.facts_halves.items()}
        return half_scores(items, replies, self.facts_halves, self.neighbours, self.fact_patterns)

    def _self_agreement(self, model, conversations, replies, is_base: bool, label: str) -> dict:
        if is_base or self.base_examples is None:
            if not is_base:
                logger.warning("Self-agreement of an unlabelled model is measured against its own replies.")
            self.base_examples = reply_examples(self.tokenizer, conversations, replies)
            if not self.base_examples:
                self._skip("self-agreement: every reply of the base model to the skills probe is empty")
                return {}
            self.base_nll = reply_nll(model, self.tokenizer, self.base_examples, self.batch_size,
                                      self._states_for(model), phase("Self-agreement", label))["nll"]
            self.details["self_agreement_replies"] = len(self.base_examples)
            return {"self_agreement_nll": self.base_nll, "self_agreement_ratio": 1.0}
        return self._agreement(model, label) if self.base_examples else {}

    def _agreement(self, model, label: str = "") -> dict:
        nll = reply_nll(model, self.tokenizer, self.base_examples, self.batch_size,
                        self._states_for(model), phase("Self-agreement", label))["nll"]
        return {"self_agreement_nll": nll, "self_agreement_ratio": nll / self.base_nll}

    def _states_for(self, model):
        states = self.prefix_states
        return states if states is not None and model is states.model else None

    # ---- the cache of the base's measurements ---------------------------------------------------------------

    def inputs_key(self) -> str:
        """A fingerprint of everything a measurement depends on besides the weights."""
        support = None if self.eval_dataset is None else [self.eval_dataset["input_ids"], self.eval_dataset["labels"]]
        items = [asdict(item) for item in self.facts + self.skills + self.drilled]
        return inputs_fingerprint(self.measured_settings(), support, self.general_ids, self.general_dev_ids,
                                  self.prompts,
                                  items, self.tokenizer.chat_template)

    def _snapshot(self, result: dict, label: str) -> dict:
        return {"result": result, "replies": self.replies.get(label), "probes": self.probe_results.get(label),
                "details": self.details, "base_examples": self.base_examples, "base_nll": self.base_nll,
                "skipped": [what for what in self.skipped if what.startswith("self-agreement")]}

    def _restore(self, cached: dict, label: str) -> dict:
        if cached.get("replies") is not None:
            self.replies[label] = cached["replies"]
        if cached.get("probes") is not None:
            self.probe_results[label] = cached["probes"]
        self.details.update(cached.get("details") or {})
        self.base_examples, self.base_nll = cached.get("base_examples"), cached.get("base_nll")
        self.details["before_from_cache"] = True
        for what in cached.get("skipped") or []:
            if what not in self.skipped:
                self._skip(what)
        return cached["result"]

    # ---- the record -------------------------------------------------------------------------------------

    def measured_settings(self) -> dict:
        """The settings a measurement depends on (not whether it is cached or asked for)."""
        settings = asdict(self.settings)
        # Where the probes and the general text were read from is not what they hold (their contents are in the
        # key): a clone elsewhere, or a study run from the repository, reuses the base's measurements.
        for key in ("cache_base_measurements", "eval_before_after", "facts_probe", "skills_probe", "general_text"):
            settings.pop(key)
        return settings | {"system_prompt": self.system_prompt, "batch_size": self.batch_size} | (
            {"drilled_system_prompt": self.drilled_system_prompt} if self.drilled else {}) | (
            {"neighbours": self.neighbours, "fact_patterns": self.fact_patterns} if self.neighbours is not None else {})

    def config(self) -> dict:
        return asdict(self.settings) | {"system_prompt": self.system_prompt, "batch_size": self.batch_size} | \
            self.details | {
            "generation_prompts": len(self.prompts),
            "facts_questions": sum(item.checkable for item in self.facts),
            "skills_questions": sum(item.checkable for item in self.skills),
            "drilled_questions": len(self.drilled),
            "decoding": "greedy, repetition_penalty 1.1",
            "support_perplexity": "exp(total NLL / scored tokens) over assistant tokens (training's labels)",
            "general_scoring": "sliding windows; each window scores the tokens it adds beyond the previous one",
            "self_agreement": "tuned NLL / base NLL per token of the base model's greedy replies to the skills probe",
            "not_measured": self.skipped,
        } | ({"neighbours": self.neighbours} if self.neighbours is not None else {})

    def record(self, before: dict, after: dict) -> dict:
        """What ``evaluation.json`` holds: both measurements, the changes, the learn-vs-keep report, the settings,
        what was not measured, the replies and the probe details."""
        record = {"before": before, "after": after, "config": self.config(), "change": changes(before, after),
                  "learn_keep": learn_keep(before, after), "not_measured": self.skipped}
        if self.replies:
            record["replies"] = [
                {"prompt": p["messages"][-1]["content"], "reference": p["reference"]}
                | {label: replies[index] for label, replies in self.replies.items()}
                for index, p in enumerate(self.prompts)
            ]
        if self.probe_results:
            record["probes"] = self.probe_results
        if self.alpha_selection:
            record["alpha_selection"] = self.alpha_selection
        return record

    def finish(self, output_dir: str | Path, before: dict, after: dict) -> dict:
        """Write ``evaluation.json``, log the learn-vs-keep report, return the metrics for all_results.json."""
        record = self.record(before, after)
        write_evaluation(output_dir, record)
        logger.info("Before -> after training:\n%s", format_report(record["learn_keep"], self.skipped))
        return flat_metrics(before, after)


def phase(part: str, label: str) -> str:
    """The name a part of a measurement shows its progress under: ``Facts probe (before)``."""
    return f"{part} ({label})" if label else part


def changes(before: dict, after: dict) -> dict:
    """``<metric>_change_pct`` / ``_change_points`` / ``_change`` of each headline metric both sides have, as
    ``metrics_table`` measures it (a ratio has none)."""
    out = {}
    for metric in HEADLINE:
        if metric.key in before and metric.key in after:
            out |= {f"{metric.key}_{field}": value
                    for field, value in change(metric.key, before[metric.key], after[metric.key]).items()}
    return out


def flat_metrics(before: dict, after: dict) -> dict:
    """``before_<metric>``, ``after_<metric>`` and the changes, for the Trainer's metrics files."""
    flat = {f"before_{k}": v for k, v in before.items()} | {f"after_{k}": v for k, v in after.items()}
    return flat | changes(before, after)


def summarize(before: dict, after: dict) -> str:
    """The learn-vs-keep report as indented lines (the log's and the CLI's)."""
    return format_report(learn_keep(before, after))


def evaluator_for_run(settings: EvaluationArguments, tokenizer, model, plan, *, eval_dataset=None,
                      eval_dialogues: list | None = None, system_prompt: str | None = None, batch_size: int = 4,
                      is_main_process: bool = True, sharded: bool = False, facts_data=None,
                      neighbours: dict[str, tuple[str, ...]] | None = None) -> BeforeAfterEvaluator | None:
    """The before/after evaluator a training run asked for, or None (not asked, not the main process, or a
    sharded model that one process cannot run alone). ``plan`` (a ``FreezePlan``) says which prefix of ``model``
    stays frozen, so the tuned model can reuse the base's states there. ``facts_data`` (``facts.TrainingDrills``, with
    ``--facts``) adds the drilled-questions check; with ``neighbours`` (``facts.neighbours_of`` of its sheet, the
    recipe's) the neighbour errors, read with the sheet's value patterns."""
    if not settings.eval_before_after or not is_main_process:
        return None
    if sharded:
        logger.warning("Before/after evaluation skipped: the model is sharded (FSDP/DeepSpeed); run "
                       "`python -m chatfreeze.evaluate` on the saved model instead.")
        return None
    return BeforeAfterEvaluator(tokenizer, settings, eval_dataset, eval_dialogues, frozen_prefix_states(model, plan),
                                system_prompt=system_prompt, batch_size=batch_size,
                                drilled=probes.drilled_probe(facts_data),
                                drilled_system_prompt=facts_data.system_prompt if facts_data else None,
                                neighbours=neighbours, fact_patterns=fact_patterns(facts_data))


def fact_patterns(facts_data) -> dict[str, tuple[str, ...]] | None:
    """Each sheet fact's value patterns (a text states the value when all match), or None without a sheet."""
    return None if facts_data is None else {fact.id: tuple(fact.patterns) for fact in facts_data.sheet.facts}


def frozen_prefix_states(model, plan) -> FrozenPrefixStates | None:
    """States of ``model`` to reuse when the run's ``plan`` freezes the embeddings and a bottom run of whole blocks
    (so that prefix is bit-identical before and after training), for a fast-path architecture; None otherwise."""
    if plan is None or not plan.embeddings_frozen:
        return None
    num_prefix = plan.first_trainable_layer
    if not set(range(num_prefix)) <= set(plan.frozen_layers) or not FrozenPrefixStates.supported(model, num_prefix):
        return None
    return FrozenPrefixStates(model, plan.blocks_prefix, num_prefix)


__all__ = ["BeforeAfterEvaluator", "changes", "evaluator_for_run", "flat_metrics", "frozen_prefix_states",
           "summarize"]
