"""BM25 (Okapi) over jieba tokens, via `rank-bm25`.

Does not: tokenize (see tokenize.py) or keep its own copy of the chunks; scores are per chunk position.
"""

from __future__ import annotations

import numpy as np


class BM25:
    """Scores every chunk for a tokenized query; built from the tokens stored in the index."""

    def __init__(self, tokens: list[list[str]], *, k1: float = 1.5, b: float = 0.75) -> None:
        from rank_bm25 import BM25Okapi

        # rank-bm25 divides by the mean document length: an all-empty corpus needs one dummy token.
        self.okapi = BM25Okapi([t or ["\x00"] for t in tokens] or [["\x00"]], k1=k1, b=b)
        self.n = len(tokens)

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        if not query_tokens or not self.n:
            return np.zeros(self.n, dtype=np.float32)
        return np.asarray(self.okapi.get_scores(query_tokens), dtype=np.float32)[: self.n]


def top(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(position, score) of the k best positive scores, best first."""
    if not len(scores):
        return []
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best if scores[i] > 0]
