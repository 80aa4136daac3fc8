"""A finished training run as the card and the upload read it: ``load_run(OUTPUT_DIR)`` checks the folder (a
finished run whose model loads with plain transformers and chats) and gathers its plan, run info, metrics,
evaluation, samples and base model (Hub id, revision, licence, where the weights came from)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..freezing.plan import FreezePlan
from ..rundir import (
    CARD_FILENAME,
    CONFIG_FILENAME,
    DELTA_MANIFEST_FILENAME,
    EVALUATION_FILENAME,
    PLAN_FILENAME,
    PROVENANCE_FILENAME,
    RESULTS_FILENAME,
    RUN_INFO_FILENAME,
    SAMPLES_FILENAME,
    TOKENIZER_CONFIG_FILENAME,
    TRAINER_STATE_FILENAME,
    RunDirError,
    read_json,
)

# Licences of base models whose Hub README we may not have locally (snapshots skip *.md).
KNOWN_LICENSES = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0",
    "HuggingFaceTB/SmolLM2-360M-Instruct": "apache-2.0",
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": "apache-2.0",
}




@dataclass
class BaseModel:
    """The pretrained model a run started from, as the card describes it."""

    hub_id: str | None  # None when the run used a local directory of unknown origin
    revision: str | None
    source: str  # chatfreeze.modeling.ResolvedModel.source: local, hub, hub-cache or pypi
    path: str
    dtype: str | None
    license: str  # a Hub licence identifier, or "other"
    license_note: str = ""
    provenance_note: str = ""

    @property
    def display(self) -> str:
        return self.hub_id or Path(self.path).name or self.path


@dataclass
class Run:
    """Everything in OUTPUT_DIR that the card and the upload use."""

    output_dir: Path
    run_info: dict
    plan: FreezePlan
    results: dict
    samples: list[dict]
    evaluation: dict | None
    trainer_state: dict
    plots: list[str]
    base: BaseModel
    delta: dict | None = None  # the manifest of a trained-blocks-only save (chatfreeze.modeling.delta)


def check_run_dir(output_dir: Path) -> None:
    """Refuse anything that is not a finished chatfreeze run whose model loads with plain transformers."""
    if not output_dir.is_dir():
        raise RunDirError(f"{output_dir}: no such output directory.")
    missing = [name for name in (CONFIG_FILENAME, TOKENIZER_CONFIG_FILENAME, PLAN_FILENAME, RUN_INFO_FILENAME)
               if not (output_dir / name).is_file()]
    if missing:
        raise RunDirError(
            f"{output_dir}: not a finished chatfreeze run (missing {', '.join(missing)}); "
            "point at the --output_dir of a completed training run."
        )
    if not any(output_dir.glob("*.safetensors")):
        raise RunDirError(f"{output_dir}: no *.safetensors weights; chatfreeze publishes safetensors only.")
    tokenizer_config = read_json(output_dir / TOKENIZER_CONFIG_FILENAME, {}, strict=True)
    if not (output_dir / "chat_template.jinja").is_file() and not tokenizer_config.get("chat_template"):
        raise RunDirError(f"{output_dir}: the tokenizer has no chat template; the pushed model would not chat.")


def load_run(output_dir: str | Path, base_model: str | None = None) -> Run:
    out = Path(output_dir)
    check_run_dir(out)
    run_info = read_json(out / RUN_INFO_FILENAME, {}, strict=True)
    return Run(
        output_dir=out,
        run_info=run_info,
        plan=FreezePlan.load(out),
        results=read_json(out / RESULTS_FILENAME, {}, strict=True) or run_info.get("metrics") or {},
        samples=read_json(out / SAMPLES_FILENAME, [], strict=True) or [],
        evaluation=read_json(out / EVALUATION_FILENAME, strict=True),
        trainer_state=read_json(out / TRAINER_STATE_FILENAME, {}, strict=True) or {},
        plots=sorted(p.name for p in out.glob("*.png")),
        base=describe_base_model(run_info.get("base_model") or {}, base_model),
        delta=read_json(out / DELTA_MANIFEST_FILENAME, strict=True),
    )


_SNAPSHOT = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\]([0-9a-f]{40})")


def describe_base_model(info: dict, override: str | None = None) -> BaseModel:
    """Hub id, revision and licence of the base model from run_info's ``base_model`` section."""
    name, path = str(info.get("name_or_path") or ""), str(info.get("path") or "")
    source, revision = str(info.get("source") or "local"), info.get("revision")
    hub_id = override
    if hub_id is None and source in ("hub", "hub-cache", "pypi"):
        hub_id = name
    snapshot = _SNAPSHOT.search(path) or _SNAPSHOT.search(name)
    if snapshot:  # a copy in the Hugging Face cache names its repo and commit in its path
        hub_id = hub_id or f"{snapshot.group(1)}/{snapshot.group(2)}"
        revision = revision or snapshot.group(3)
    provenance = ""
    # The run records it (run_info base_model.provenance); older runs only point at the training machine's cache.
    converted = info.get("provenance")
    if converted is None and path:
        converted = read_json(Path(path) / PROVENANCE_FILENAME, strict=True)
    if isinstance(converted, dict):
        hub_id = hub_id or converted.get("model_id")
        provenance = (
            f"The base weights came from {converted.get('source', 'an offline copy')} "
            f"({converted.get('gguf_file', 'GGUF')}"
            + (f", SHA-256 {converted['gguf_sha256']}" if converted.get("gguf_sha256") else "")
            + f"): {converted.get('note', '')}"
        ).strip()
    license_id, note = _base_license(hub_id, path)
    return BaseModel(hub_id, revision, source, path, info.get("dtype"), license_id, note, provenance)


def _front_matter(text: str) -> dict:
    match = re.match(r"---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _base_license(hub_id: str | None, path: str) -> tuple[str, str]:
    readme = Path(path) / CARD_FILENAME if path else None
    if readme is not None and readme.is_file():
        declared = _front_matter(readme.read_text(encoding="utf-8", errors="replace")).get("license")
        if isinstance(declared, str) and declared:
            return declared, ""
    if hub_id in KNOWN_LICENSES:
        return KNOWN_LICENSES[hub_id], ""
    where = f"[{hub_id}](https://huggingface.co/{hub_id})" if hub_id else "the base model"
    return "other", f"The base model's licence could not be determined here; this model inherits it: see {where}."
