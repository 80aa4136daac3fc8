"""Reply quality on held-out prompts: greedy replies scored against the reference replies with ROUGE-L and chrF,
two ``evaluate`` modules kept in ``chatfreeze/evaluation/metrics`` and loaded by path (offline, no Hub)."""

from __future__ import annotations

from pathlib import Path

from ..generation import DEFAULT_GENERATION, Reply, generate_replies
from .perplexity import _EvalMode

METRICS_DIR = Path(__file__).resolve().parent / "metrics"


def load_metric(name: str):
    """``evaluate.load`` of ``chatfreeze/evaluation/metrics/<name>/<name>.py``: from disk, no Hub, no network."""
    import evaluate as hf_evaluate  # the library (absolute import), not chatfreeze.evaluate, the CLI

    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(f"metric {name!r}: no module {path}/{name}.py (have: "
                         f"{', '.join(sorted(p.name for p in METRICS_DIR.iterdir() if p.is_dir()))}).")
    return hf_evaluate.load(str(path), keep_in_memory=True)


def greedy_config(model, tokenizer, max_new_tokens: int):
    """Deterministic decoding for comparable replies: greedy, the chat's repetition penalty, capped length.

    Built fresh rather than from ``model.generation_config``, whose sampling settings differ before and
    after a run (training saves the chat's defaults) and would make the two measurements incomparable.
    """
    from transformers import GenerationConfig

    own = model.generation_config
    return GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        repetition_penalty=DEFAULT_GENERATION["repetition_penalty"],
        eos_token_id=own.eos_token_id if own.eos_token_id is not None else tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=own.bos_token_id,
    )


def greedy_replies(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int,
                   batch_size: int = 64, what: str | None = None) -> list[Reply]:
    """Greedy replies (``greedy_config``) to ``conversations``, batched with left padding; each says whether the
    model ended it (``Reply.finished``) or ran into ``max_new_tokens``. ``what`` names the phase in the progress
    shown."""
    config = greedy_config(model, tokenizer, max_new_tokens)
    with _EvalMode(model):
        return generate_replies(model, tokenizer, conversations, config, batch_size, what)


def generation_metrics(model, tokenizer, prompts: list[dict], max_new_tokens: int = 96,
                       what: str | None = "Generation metrics") -> tuple[dict, list[str]]:
    """Greedy replies to ``prompts`` and their ROUGE-L (0..1) and chrF (0..100) against the references."""
    replies = greedy_replies(model, tokenizer, [p["messages"] for p in prompts], max_new_tokens, what=what)
    references = [p["reference"] for p in prompts]
    rouge = load_metric("rouge_l").compute(predictions=replies, references=references)
    chrf = load_metric("chrf").compute(predictions=replies, references=references)
    return {"rougeL": rouge["rougeL"], "chrf": chrf["chrf"]}, replies
