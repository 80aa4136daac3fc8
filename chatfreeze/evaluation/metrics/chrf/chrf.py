"""chrF (Popović, 2015): character n-gram F-score, written for chatfreeze.

Whitespace is removed before counting, so n-grams run across word boundaries (as in the original chrF and
sacrebleu's default). For each order n = 1..char_order the matching n-grams (clipped counts) are summed
over the whole corpus, then

    P_n = matches_n / prediction_ngrams_n        R_n = matches_n / reference_ngrams_n
    chrP = mean_n P_n    chrR = mean_n R_n       chrF = (1 + beta^2) chrP chrR / (beta^2 chrP + chrR)

The means run over the orders that both the predictions and the references have n-grams of (a text of
3 characters has no 4-grams), sacrebleu's "effective order". beta = 2 weighs recall twice as much as
precision. The score is reported on a 0..100 scale; no common n-gram (or an empty side) gives 0.
"""

from collections import Counter

import datasets
import evaluate

_CITATION = """\
@inproceedings{popovic-2015-chrf,
  title = {chr{F}: character n-gram {F}-score for automatic {MT} evaluation},
  author = {Popovi{\\'c}, Maja},
  booktitle = {Proceedings of the Tenth Workshop on Statistical Machine Translation},
  year = {2015},
  pages = {392--395},
}
"""

_DESCRIPTION = "chrF: character n-gram F-score (n = 1..6, beta = 2) over the corpus, 0..100."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts, one per prediction.
    char_order: highest character n-gram order (default 6).
    beta: recall weight (default 2).
Returns:
    chrf: the F-score, 0..100.
    chrf_precision, chrf_recall: the averaged character n-gram precision and recall, 0..100.
Example:
    >>> metric = evaluate.load("chatfreeze/evaluation/metrics/chrf")
    >>> metric.compute(predictions=["ab"], references=["abc"])["chrf"]
    63.636...
"""


def ngram_counts(text: str, n: int) -> Counter:
    chars = "".join(text.split())
    return Counter(chars[i : i + n] for i in range(len(chars) - n + 1))


def corpus_statistics(predictions, references, char_order: int) -> list[list[int]]:
    """Per order n: [matches, prediction n-grams, reference n-grams], summed over the examples."""
    totals = [[0, 0, 0] for _ in range(char_order)]
    for prediction, reference in zip(predictions, references, strict=True):
        for n in range(1, char_order + 1):
            pred, ref = ngram_counts(prediction, n), ngram_counts(reference, n)
            totals[n - 1][0] += sum((pred & ref).values())
            totals[n - 1][1] += sum(pred.values())
            totals[n - 1][2] += sum(ref.values())
    return totals


def chrf_from_statistics(totals: list[list[int]], beta: float) -> tuple[float, float, float]:
    """(chrF, chrP, chrR) on 0..100 from per-order [matches, prediction, reference] counts."""
    orders = [(m, p, r) for m, p, r in totals if p > 0 and r > 0]
    if not orders:
        return 0.0, 0.0, 0.0
    precision = sum(m / p for m, p, _ in orders) / len(orders)
    recall = sum(m / r for m, _, r in orders) / len(orders)
    if precision == 0.0 and recall == 0.0:
        return 0.0, 0.0, 0.0
    f_score = (1 + beta**2) * precision * recall / (beta**2 * precision + recall)
    return 100 * f_score, 100 * precision, 100 * recall


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ChrF(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://aclanthology.org/W15-3049/"],
        )

    def _compute(self, predictions, references, char_order: int = 6, beta: float = 2.0):
        if char_order < 1:
            raise ValueError(f"char_order={char_order}: must be at least 1.")
        totals = corpus_statistics(predictions, references, char_order)
        f_score, precision, recall = chrf_from_statistics(totals, beta)
        return {"chrf": f_score, "chrf_precision": precision, "chrf_recall": recall}
