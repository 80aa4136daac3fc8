"""Interpolation of the trained blocks toward the base: ``θ(α) = base + α · (tuned − base)`` on every tensor the
freeze plan trained (the frozen ones are the base's already). α = 1 is the tuned model, α = 0 the base, bit for
bit (copies of the end points, not ``lerp`` results: those can turn -0.0 into +0.0 and an inf into NaN); values
between trade what was learned for what was kept. The blend is computed in float32 and stored in each tensor's
own dtype, so a bf16 run stays bf16.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..common import share_weights_like_umask
from ..progress import progress

logger = logging.getLogger(__name__)


def interpolate_state(tuned: dict[str, torch.Tensor], base: dict[str, torch.Tensor], alpha: float,
                      names: list[str]) -> dict[str, torch.Tensor]:
    """``names``' tensors moved from ``base`` toward ``tuned`` by ``alpha`` (0..1); other tensors as in ``tuned``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--alpha {alpha}: give a value between 0 (the base) and 1 (the tuned model).")
    missing = [name for name in names if name not in tuned or name not in base]
    if missing:
        raise ValueError(f"interpolation: tensor {missing[0]!r} is not in both models; is this the run's base?")
    out = dict(tuned)
    for name in progress(names, "Interpolation", unit="tensors"):
        target = tuned[name]
        if alpha == 1.0:
            out[name] = target.clone()
        elif alpha == 0.0:
            out[name] = base[name].to(target.dtype, copy=True)
        else:
            out[name] = torch.lerp(base[name].float(), target.float(), alpha).to(target.dtype)
    return out


def apply_interpolation(model: nn.Module, base_state: dict[str, torch.Tensor], tuned_state: dict[str, torch.Tensor],
                        alpha: float, names: list[str]) -> None:
    """Set ``model``'s ``names`` parameters to the interpolation at ``alpha`` (in place, no autograd)."""
    state = interpolate_state(tuned_state, base_state, alpha, names)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            params[name].copy_(state[name])


def trained_state(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``names``' tensors of ``model``. Read from the state dict, which names a tied tensor
    under each of its names: a run that untied its head (``--train_lm_head``) names ``lm_head.weight``, which a
    tied base holds as its embedding."""
    state = model.state_dict()
    missing = [name for name in names if name not in state]
    if missing:
        raise ValueError(f"interpolation: the model has no tensor {missing[0]!r}; is this the run's base?")
    return {name: state[name].detach().to("cpu", copy=True) for name in names}


def interpolate_run(run_dir: str | Path, alpha: float, output_dir: str | Path, base: str | None = None) -> Path:
    """Write the run (or delta) at ``run_dir`` with its trained tensors interpolated toward its base as a model
    directory (weights, tokenizer, the run's plan and info, ``interpolation.json``). At ``alpha`` 1 this is the
    run itself: for a trained-blocks-only save, the standalone model ``from_pretrained`` loads."""
    import json
    import shutil

    from ..freezing import FreezePlan
    from ..modeling import load_model, resolve_model
    from ..modeling.delta import is_delta, read_manifest
    from ..rundir import (
        GENERATION_CONFIG_FILENAME,
        PLAN_FILENAME,
        RUN_INFO_FILENAME,
        SAMPLES_FILENAME,
        read_run_info,
    )

    if not Path(run_dir).is_dir():  # a Hub id: the pushed run or delta, downloaded
        run_dir = resolve_model(str(run_dir)).path
    run_dir, output_dir = Path(run_dir), Path(output_dir)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--alpha {alpha:g}: give a value between 0 (the base) and 1 (the tuned model).")
    info, delta = read_run_info(run_dir), is_delta(run_dir)
    if info is None and not delta:
        raise ValueError(f"{run_dir}: not a chatfreeze run (no {RUN_INFO_FILENAME}) nor a trained-only save.")
    if output_dir.exists() and (output_dir.is_file() or any(output_dir.iterdir())):
        raise ValueError(f"--output_dir {output_dir}: exists and is not empty; choose a new directory.")
    base_info = (info or {}).get("base_model") or (read_manifest(run_dir)["base"] if delta else {})
    base_name = base or base_info.get("name_or_path")
    # In the dtype the run was saved in (the base checkpoint's): a bf16 run stays bf16, half the size of fp32.
    dtype = getattr(torch, str(base_info.get("dtype") or "float32"), None)
    dtype = dtype if isinstance(dtype, torch.dtype) else torch.float32
    logger.info("Merge: loading %s%s.", run_dir, " (a delta: its base is loaded and checked)" if delta else "")
    tuned = load_model(str(run_dir), dtype)  # a delta is rebuilt on its base, every frozen tensor checked
    if alpha < 1.0:
        names = (FreezePlan.load(run_dir).trainable_parameter_names if (run_dir / PLAN_FILENAME).is_file()
                 else read_manifest(run_dir)["trained"])
        logger.info("Merge: loading the base %s to interpolate toward it.", base_name)
        base_model = load_model(resolve_model(base_name, base_info.get("revision")).path, dtype)
        apply_interpolation(tuned, trained_state(base_model, names), trained_state(tuned, names), alpha, names)
        del base_model
    logger.info("Merge: saving the model into %s.", output_dir)
    tuned.save_pretrained(output_dir)
    share_weights_like_umask(output_dir)
    for name in (PLAN_FILENAME, RUN_INFO_FILENAME, GENERATION_CONFIG_FILENAME, SAMPLES_FILENAME, "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, output_dir / name)
    # A run saved by --select_alpha is at its chosen alpha already: this alpha applies on top of it.
    saved_at = ((info or {}).get("alpha_selection") or {}).get("alpha", 1.0)
    (output_dir / "interpolation.json").write_text(json.dumps(
        {"run": str(run_dir), "base": base_name, "alpha": alpha, "run_saved_at_alpha": saved_at,
         "alpha_from_the_trained_weights": alpha * saved_at, "from_delta": delta}, indent=2) + "\n")
    logger.info("Wrote %s at alpha=%g (base %s) into %s", run_dir, alpha, base_name, output_dir)
    return output_dir
