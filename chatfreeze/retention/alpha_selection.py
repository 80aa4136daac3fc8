"""``--select_alpha``: after training, move the trained blocks back toward the base (``interpolate``) to the
candidate α that learned most among those that still keep the old skills, chosen on measurements that need no
generation.

For each candidate α the run's model is set to ``base + α · (tuned − base)`` in place and measured with
``BeforeAfterEvaluator.measure_teacher_forced``: support perplexity on the held-out dialogues (what was learned),
and what was kept -- the self-agreement ratio on the base's own replies to the skills probe, and the general-text
perplexity when one is measured. A candidate *keeps* when every keep measure is within ``tolerance`` of the base
(relative: ratio ≤ 1 + tolerance, perplexity ≤ base · (1 + tolerance)); a measure that is not finite (a
diverged candidate) never keeps. The chosen α is the keeping candidate with the lowest support perplexity (ties:
the larger α); when none keeps, the one whose worst keep measure is least over its bound (relative excess), with
a warning.

What the choice looks at: the held-out support dialogues' perplexity and the base's own replies to the skills
probe's prompts (self-agreement), the same data the run's "after" numbers report on; with a few candidates the
chosen α's support perplexity and self-agreement are therefore slightly optimistic. It never looks at the graded
probes (facts and short-answer accuracy): those stay held-out measurements of the chosen model.
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
        "within the tolerance of the base (relative); none within it: the candidate whose worst keep measure is "
        "least over its bound")


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


def keep_excess(measures: dict, base: dict, tolerance: float) -> dict[str, float]:
    """Each keep measure's relative excess over its bound (> 0: it does not keep; inf: not finite)."""
    out = {}
    ratio = measures.get("self_agreement_ratio")
    if ratio is not None:
        out["self_agreement_ratio"] = ratio / (1.0 + tolerance) - 1.0 if math.isfinite(ratio) else math.inf
    general, base_general = measures.get("general_perplexity"), base.get("general_perplexity")
    if general is not None and base_general:
        bound = base_general * (1.0 + tolerance)
        out["general_perplexity"] = general / bound - 1.0 if math.isfinite(general) else math.inf
    return out


def keep_violations(measures: dict, base: dict, tolerance: float) -> list[str]:
    """The keep measures of ``measures`` that are further than ``tolerance`` (relative) from the base's."""
    out = []
    excess = keep_excess(measures, base, tolerance)
    if excess.get("self_agreement_ratio", 0.0) > 0:
        out.append(f"self-agreement ratio {measures['self_agreement_ratio']:.3f} > {1 + tolerance:.3f}")
    if excess.get("general_perplexity", 0.0) > 0:
        out.append(f"general perplexity {measures['general_perplexity']:.3f} > "
                   f"{base['general_perplexity'] * (1 + tolerance):.3f}")
    support = measures.get("support_perplexity")
    if support is not None and not math.isfinite(support):
        out.append(f"support perplexity {support}")
    return out


def check_keep_measures(base_measures: dict, option: str = "--select_alpha") -> None:
    """``option`` (``--select_alpha``, ``--metric_for_best_model facts_dev_accuracy_if_kept``) holds its candidates to the base's
    keep measures: refuse (before training) a base without one (a --general_text that was not found, a skills probe
    the base answered with nothing)."""
    if not any(m in base_measures for m in KEEP_MEASURES):
        raise ValueError(f"{option}: the base has no keep measurement (self-agreement needs --skills_probe, "
                         "general perplexity --general_text); nothing to hold the choice to.")


@dataclass
class AlphaSelection:
    alpha: float
    tolerance: float
    candidates: list[dict] = field(default_factory=list)  # {"alpha", measures..., "keeps", "violations"}
    kept: bool = True  # whether the chosen alpha met the tolerance
    rule: str = RULE

    def to_dict(self) -> dict:
        return asdict(self)


def choose(candidates: list[dict], tolerance: float, base_measures: dict | None = None) -> AlphaSelection:
    """The selection rule (module docstring) over measured ``candidates``."""
    keeping = [c for c in candidates if c["keeps"]]
    if keeping:
        best = min(keeping, key=lambda c: (c.get("support_perplexity", math.inf), -c["alpha"]))
        return AlphaSelection(best["alpha"], tolerance, candidates, kept=True)

    def worst_excess(c: dict) -> float:
        return max(keep_excess(c, base_measures or {}, tolerance).values(), default=math.inf)

    best = min(candidates, key=lambda c: (worst_excess(c), -c["alpha"]))
    return AlphaSelection(best["alpha"], tolerance, candidates, kept=False)


def select_alpha(model: nn.Module, names: list[str], base_state: dict, alphas: list[float],
                 measure: Callable[[nn.Module], dict], base_measures: dict, tolerance: float) -> AlphaSelection:
    """Measure ``model`` at each α of ``alphas`` (its ``names`` tensors interpolated from ``base_state`` toward
    their trained values), choose one, and leave the model at the chosen α."""
    check_keep_measures(base_measures)
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
    selection = choose(candidates, tolerance, base_measures)
    apply_interpolation(model, base_state, tuned_state, selection.alpha, names)
    if selection.kept:
        logger.info("--select_alpha: chose alpha %g (tolerance %g).", selection.alpha, tolerance)
    else:
        logger.warning("--select_alpha: no candidate kept the base's skills within %g; chose alpha %g, the one "
                       "that kept most. Try smaller alphas, or more retention (--replay_ratio, --kl_to_base).",
                       tolerance, selection.alpha)
    return selection
