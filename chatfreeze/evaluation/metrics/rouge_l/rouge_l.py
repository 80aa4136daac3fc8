"""ROUGE-L F-measure (Lin, 2004): longest common subsequence of word tokens, written for chatfreeze.

Tokens: the text is lowercased and split into runs of letters/digits (any script); punctuation,
underscores and whitespace only separate tokens. Per example, with LCS the length of the longest common
subsequence of the two token lists:

    precision = LCS / len(prediction)    recall = LCS / len(reference)    F = 2PR / (P + R)

An example whose prediction or reference has no token scores 0. The returned scores are means over the
examples (like rouge_score's aggregate mean), in [0, 1].
"""

import re

import datasets
import evaluate

_CITATION = """\
@inproceedings{lin-2004-rouge,
  title = {{ROUGE}: A Package for Automatic Evaluation of Summaries},
  author = {Lin, Chin-Yew},
  booktitle = {Text Summarization Branches Out},
  year = {2004},
  pages = {74--81},
}
"""

_DESCRIPTION = "ROUGE-L: F-measure of the longest common subsequence of lowercased word tokens."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts, one per prediction.
Returns:
    rougeL: mean F-measure over the examples, in [0, 1].
    rougeL_precision: mean LCS / prediction length.
    rougeL_recall: mean LCS / reference length.
Example:
    >>> metric = evaluate.load("chatfreeze/evaluation/metrics/rouge_l")
    >>> metric.compute(predictions=["the cat sat"], references=["the cat sat down"])["rougeL"]
    0.857142...
"""

_TOKEN = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, O(len(a) * len(b)) time, O(len(b)) memory."""
    if len(b) > len(a):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def score(prediction: str, reference: str) -> tuple[float, float, float]:
    """(precision, recall, F) of one example."""
    pred, ref = tokenize(prediction), tokenize(reference)
    if not pred or not ref:
        return 0.0, 0.0, 0.0
    common = lcs_length(pred, ref)
    if common == 0:
        return 0.0, 0.0, 0.0
    precision, recall = common / len(pred), common / len(ref)
    return precision, recall, 2 * precision * recall / (precision + recall)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://aclanthology.org/W04-1013/"],
        )

    def _compute(self, predictions, references):
        if not predictions:
            return {"rougeL": 0.0, "rougeL_precision": 0.0, "rougeL_recall": 0.0}
        scores = [score(p, r) for p, r in zip(predictions, references, strict=True)]
        n = len(scores)
        return {
            "rougeL": sum(s[2] for s in scores) / n,
            "rougeL_precision": sum(s[0] for s in scores) / n,
            "rougeL_recall": sum(s[1] for s in scores) / n,
        }
