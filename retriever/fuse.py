"""Fuse ranked lists: reciprocal rank fusion (Cormack et al. 2009), k=60.

`rrf([[3, 1], [1, 2]])` -> `{1: 1/62 + 1/61, 3: 1/61, 2: 1/62}`. Does not look at the retrievers' scores,
only at ranks, so BM25's unbounded scores and cosine similarities need no calibration.
"""

from __future__ import annotations


def rrf(rankings: list[list[int]], *, k: int = 60) -> dict[int, float]:
    """Chunk position -> sum over lists of 1 / (k + rank), rank counted from 1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(dict.fromkeys(ranking), start=1):  # a repeat counts once
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused
