"""Retrieval metrics as pure functions of a ranked list of relevance flags.

`flags[i]` is True when the hit at rank i+1 is relevant (eval.dataset.relevant). Duplicated relevant hits
are the caller's to flag only once; here every metric stays within [0, 1] whatever the input.
"""

from __future__ import annotations


def hit_at(flags: list[bool], k: int) -> float:
    """1.0 when a relevant hit is within the first k."""
    return 1.0 if any(flags[:k]) else 0.0


def mrr_at(flags: list[bool], k: int) -> float:
    """Reciprocal rank of the first relevant hit within k, else 0."""
    for rank, flag in enumerate(flags[:k], start=1):
        if flag:
            return 1.0 / rank
    return 0.0


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
