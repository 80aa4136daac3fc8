"""``--select_alpha``: after training, move the trained blocks back toward the base (``interpolate``) by the
largest step that still keeps the old skills, chosen on measurements that need no generation.

For each candidate α the run's model is set to ``base + α · (tuned − base)`` in place and measured with
``BeforeAfterEvaluator.measure_teacher_forced``: support perplexity on the held-out dialogues (what was learned),
and what was kept -- the self-agreement ratio on the base's own replies to the skills probe, and the general-text
perplexity when one is measured. A candidate *keeps* when every keep measure is within ``tolerance`` of the base
(relative: ratio ≤ 1 + tolerance, perplexity ≤ base · (1 + tolerance)). The chosen α is the keeping candidate
with the lowest support perplexity; when none keeps, the one that kept most (lowest self-agreement ratio, then
general perplexity), with a warning. The choice never looks at the graded probes (facts and short-answer
accuracy): those stay held-out measurements of the chosen model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from torch import nn

from .interpolate import apply_interpolation, trained_state

logger = logging.getLogger(__name__)

KEEP_MEASURES = ("self_agreement_ratio", "general_perplexity")
RULE = ("lowest support perplexity among the candidates whose self-agreement ratio and general-text perplexity are "
        "within the tolerance of the base (relative); none within it: the candidate that kept most")


def parse_alphas(text: str) -> list[float]:
    """``"0.5,0.75,1"`` -> ``[0.5, 0.75, 1.0]`` (sorted, unique); each in (0, 1]."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"--select_alpha {text}: {part!r} is not a number; give e.g. 0.5,0.75,1.") from None
        if not 0.0 < value <= 1.0 or math.isnan(value):
            raise ValueError(f"--select_alpha {text}: {part} is outside (0, 1]; 1 is the trained model, values "
                             "toward 0 move the trained blocks back to the base.")
        values.append(value)
    if not values:
        raise ValueError(f"--select_alpha {text!r}: give at least one alpha, e.g. 0.5,0.75,1.")
    return sorted(set(values))


def keep_violations(measures: dict, base: dict, tolerance: float) -> list[str]:
    """The keep measures of ``measures`` that are further than ``tolerance`` (relative) from the base's."""
    out = []
    ratio = measures.get("self_agreement_ratio")
    if ratio is not None and ratio > 1.0 + tolerance:
        out.append(f"self-agreement ratio {ratio:.3f} > {1 + tolerance:.3f}")
    general, base_general = measures.get("general_perplexity"), base.get("general_perplexity")
    if general is not None and base_general and general > base_general * (1.0 + tolerance):
        out.append(f"general perplexity {general:.3f} > {base_general * (1 + tolerance):.3f}")
    return out


@dataclass
class AlphaSelection:
    alpha: float
    tolerance: float
    candidates: list[dict] = field(default_factory=list)  # {"alpha", measures..., "keeps", "violations"}
    kept: bool = True  # whether the chosen alpha met the tolerance
    rule: str = RULE

    def to_dict(self) -> dict:
        return asdict(self)


def choose(candidates: list[dict], tolerance: float) -> AlphaSelection:
    """The selection rule (module docstring) over measured ``candidates``."""
    keeping = [c for c in candidates if c["keeps"]]
    if keeping:
        best = min(keeping, key=lambda c: (c.get("support_perplexity", math.inf), -c["alpha"]))
        return AlphaSelection(best["alpha"], tolerance, candidates, kept=True)
    best = min(candidates, key=lambda c: tuple(c.get(m, math.inf) for m in KEEP_MEASURES) + (-c["alpha"],))
    return AlphaSelection(best["alpha"], tolerance, candidates, kept=False)


def select_alpha(model: nn.Module, names: list[str], base_state: dict, alphas: list[float],
                 measure: Callable[[nn.Module], dict], base_measures: dict, tolerance: float) -> AlphaSelection:
    """Measure ``model`` at each α of ``alphas`` (its ``names`` tensors interpolated from ``base_state`` toward
    their trained values), choose one, and leave the model at the chosen α."""
    if not any(m in base_measures for m in KEEP_MEASURES):
        raise ValueError("--select_alpha: the base has no keep measurement (self-agreement needs --skills_probe, "
                         "general perplexity --general_text); nothing to hold the choice to.")
    tuned_state = trained_state(model, names)
    candidates = []
    for alpha in alphas:
        apply_interpolation(model, base_state, tuned_state, alpha, names)
        measures = measure(model)
        if "support_perplexity" not in measures:
            raise ValueError("--select_alpha: needs held-out dialogues (--eval_dataset or --validation_split_ratio) "
                             "to compare what each alpha learned.")
        violations = keep_violations(measures, base_measures, tolerance)
        candidates.append({"alpha": alpha, **measures, "keeps": not violations, "violations": violations})
        logger.info("--select_alpha: alpha %g: %s%s", alpha, ", ".join(f"{k} {v:.4g}" for k, v in measures.items()),
                    "" if not violations else " (does not keep: " + "; ".join(violations) + ")")
    selection = choose(candidates, tolerance)
    apply_interpolation(model, base_state, tuned_state, selection.alpha, names)
    if selection.kept:
        logger.info("--select_alpha: chose alpha %g (tolerance %g).", selection.alpha, tolerance)
    else:
        logger.warning("--select_alpha: no candidate kept the base's skills within %g; chose alpha %g, the one "
                       "that kept most. Try smaller alphas, or more retention (--replay_ratio, --kl_to_base).",
                       tolerance, selection.alpha)
    return selection
