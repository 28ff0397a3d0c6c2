"""Retrieval metrics as pure functions of a ranked list of matches.

`matches[i]` is the set of evidence spans (numbered 0..n-1) that the hit at rank i+1 overlaps, by the
relevance rule of eval.dataset.relevant; an empty set is an irrelevant hit. Several hits may overlap the
same evidence (near-duplicate chunks after fusion): a hit counts as relevant for hit@k, MRR and context
precision, but each evidence span is credited once for recall and nDCG, so no metric exceeds 1.

    >>> recall_at([{0}, set(), {0, 1}], 2, k=2)
    0.5

Does not: decide relevance, or average over questions (see `mean`).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence, Set

Matches = Sequence[Set[int]]
# The answer scores of a generation row (eval/generation.py): the LLM-judged ones, then those without a judge.
SCORES = (
    "faithfulness",
    "answer_relevancy",
    "answer_correctness",
    "answer_similarity",
    "citation_validity",
    "citation_precision",
    "key_point_recall",
)


def hit_at(matches: Matches, k: int) -> float:
    """1.0 when a relevant hit is within the first k."""
    return 1.0 if any(matches[:k]) else 0.0


def mrr_at(matches: Matches, k: int) -> float:
    """Reciprocal rank of the first relevant hit within k, else 0."""
    for rank, found in enumerate(matches[:k], start=1):
        if found:
            return 1.0 / rank
    return 0.0


def recall_at(matches: Matches, n_evidence: int, k: int) -> float:
    """Share of the distinct evidence spans overlapped by the first k hits (RAGAS non-LLM context recall)."""
    if n_evidence <= 0:
        return 0.0
    covered = set().union(*matches[:k]) if matches[:k] else set()
    return len(covered & set(range(n_evidence))) / n_evidence


def ndcg_at(matches: Matches, n_evidence: int, k: int) -> float:
    """Binary nDCG: a hit gains 1 when it overlaps evidence no earlier hit did; ideal = n_evidence gains."""
    seen: set[int] = set()
    dcg = 0.0
    for rank, found in enumerate(matches[:k], start=1):
        new = set(found) - seen
        if new:
            dcg += 1.0 / math.log2(rank + 1)
            seen |= new
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(n_evidence, k) + 1))
    return dcg / ideal if ideal else 0.0


def context_precision_at(matches: Matches, k: int) -> float:
    """RAGAS context precision: mean of precision@i over the ranks i <= k that hold a relevant hit."""
    relevant, total = 0, 0.0
    for rank, found in enumerate(matches[:k], start=1):
        if found:
            relevant += 1
            total += relevant / rank
    return total / relevant if relevant else 0.0


def key_point_recall(answer: str, key_points: Sequence[Sequence[str]]) -> float:
    """Share of the key points stated by `answer`: a point counts when any of its alternatives is a
    substring of the answer, case, whitespace and inline LaTeX markup ignored (`扩大 $N$ 倍` states
    `扩大 N 倍`, `$3 \\times 10^{-4}$` states `3 × 10^-4`).

    >>> key_point_recall("LR 扩大 N 倍 [1]", [["扩大N倍", "linear scaling"], ["√N"]])
    0.5
    """
    flat = _squash(answer)
    found = [any(_squash(alternative) in flat for alternative in point) for point in key_points]
    return sum(found) / len(found) if found else 0.0


def _squash(text: str) -> str:
    return "".join(_unlatex(text).lower().split())


# inline LaTeX read as plain text: a command as its character ("" for sizing), the argument of a text wrapper
_LATEX = {r"\times": "×", r"\cdot": "·", r"\approx": "≈", r"\le": "≤", r"\ge": "≥", r"\sqrt": "√"}
_LATEX |= dict.fromkeys((r"\left", r"\right", r"\big", r"\Big", r"\quad"), "")
_LATEX_WRAPPER = re.compile(r"\\(?:text|mathrm|mathbf|mathit|operatorname|boldsymbol)\{([^{}]*)\}")
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+|\\[,;!]")


def _unlatex(text: str) -> str:
    r"""`扩大 $N$ 倍` as 扩大 N 倍, `$3 \times 10^{-4}$` as 3 × 10^-4, `\text{Adam}` as Adam."""
    text = _LATEX_WRAPPER.sub(r"\1", text.replace("$", ""))
    text = _LATEX_COMMAND.sub(lambda m: _LATEX.get(m.group(), _spacing(m.group())), text)
    return re.sub(r"([\^_])\{([^{}]*)\}", r"\1\2", text)


def _spacing(command: str) -> str:
    r"""`\,` `\;` `\!` (spacing) as nothing; any other command unknown to `_LATEX` as itself."""
    return "" if command[1] in ",;!" else command


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def percentiles(values: list[float]) -> dict[str, float]:
    """{"p50", "p95"} (inclusive quantiles); 0.0 for no values."""
    if len(values) < 2:
        only = round(values[0], 2) if values else 0.0
        return {"p50": only, "p95": only}
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return {"p50": round(statistics.median(values), 2), "p95": round(cuts[18], 2)}
