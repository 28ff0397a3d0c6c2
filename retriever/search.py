"""One query -> ranked `Hit`s, in one of four modes: bm25, dense, hybrid (RRF of both), rerank.

Each stage keeps its score and rank in `Hit.scores` / `Hit.ranks`, so a result can show why it was found.
In rerank mode the reranker (a cross-encoder, or the built-in `WindowReranker`: each passage's closest
window) scores the top `rerank_candidates` fused hits; with `rerank_fusion="rrf"`
their order is the RRF of its ranking and the fused ranking (the cross-encoder corrects the first stage
without overruling it alone), with `"pure"` its ranking alone.
Passages marked `has_answer=False` (bare questions, question lists) keep their place in the candidate lists
but their final score is multiplied by `unanswered_weight`, so an answering passage outranks them.

Does not: load models (the caller passes a loaded embedder and reranker), or rewrite the query.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ingest.chunk import Chunk
from retriever import bm25 as bm25_
from retriever.dense import Embedder
from retriever.fuse import rrf
from retriever.index import Index
from retriever.rerank import Reranker, WindowReranker
from retriever.tokenize import tokenize

MODES = ("bm25", "dense", "hybrid", "rerank")
STAGES = ("bm25", "dense", "fused", "rerank")
FUSIONS = ("rrf", "pure")  # rerank order: RRF of cross-encoder and first-stage ranks, or cross-encoder alone


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # the score the list is ordered by
    scores: dict[str, float | None]  # per stage: bm25, dense, fused, rerank (None = not run / not found)
    ranks: dict[str, int | None] = field(default_factory=dict)  # 1-based rank in each stage's list


@dataclass(frozen=True)
class Result:
    query: str
    mode: str
    hits: list[Hit]
    timings_ms: dict[str, float]
    reranker: str = ""  # why the rerank stage did not run, when asked for and unavailable


def search(
    index: Index,
    query: str,
    *,
    mode: str = "hybrid",
    k: int = 10,
    embedder: Embedder | None = None,
    reranker: Reranker | WindowReranker | None = None,
    reranker_reason: str = "",
    candidates: int = 50,
    rerank_candidates: int = 20,
    rrf_k: int = 60,
    unanswered_weight: float = 0.5,
    rerank_fusion: str = "pure",
) -> Result:
    """Rank the index's chunks for `query` (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if rerank_fusion not in FUSIONS:
        raise ValueError(f"unknown rerank fusion {rerank_fusion!r}; choose one of {', '.join(FUSIONS)}")
    timings: dict[str, float] = {}
    lists: dict[str, list[tuple[int, float]]] = {}
    # Step 1: the retrievers, each its own ranked list of (position, score)
    if mode != "dense":
        t = time.perf_counter()
        words = index.bm25.scores(tokenize(query))  # every passage's, kept for the reranker
        lists["bm25"] = bm25_.top(words, candidates)
        timings["bm25"] = _ms(t)
    if mode != "bm25":
        if embedder is None:
            raise ValueError(f"mode {mode!r} needs an embedding model")
        t = time.perf_counter()
        query_vector = embedder.query(query)
        lists["dense"] = index.vector_index.top(query_vector, candidates)
        timings["dense"] = _ms(t)
    # Step 2: fuse (hybrid, rerank) or take the single list
    if mode in ("hybrid", "rerank"):
        t = time.perf_counter()
        fused = rrf([[i for i, _ in lists["bm25"]], [i for i, _ in lists["dense"]]], k=rrf_k)
        lists["fused"] = sorted(fused.items(), key=lambda item: -item[1])
        timings["fuse"] = _ms(t)
    order = lists["fused" if "fused" in lists else mode]
    order = _prefer_answers(index, order, unanswered_weight)
    # Step 3: rerank the top fused candidates with the cross-encoder
    if mode == "rerank" and reranker is not None:
        t = time.perf_counter()
        head = order[:rerank_candidates]
        scores = reranker.rank(index, query, query_vector, words, [i for i, _ in head])
        lists["rerank"] = sorted(zip([i for i, _ in head], scores.tolist(), strict=True), key=lambda x: -x[1])
        reordered = _prefer_answers(index, lists["rerank"], unanswered_weight, shift=True)
        if rerank_fusion == "rrf":  # the cross-encoder's rank and the first stage's rank, fused
            both = rrf([[i for i, _ in reordered], [i for i, _ in head]], k=rrf_k)
            reordered = sorted(both.items(), key=lambda item: -item[1])
        order = reordered + order[rerank_candidates:]
        timings["rerank"] = _ms(t)
    hits = [_hit(index, i, score, lists) for i, score in order[:k]]
    reason = reranker_reason if mode == "rerank" and reranker is None else ""
    return Result(query, mode, hits, {**timings, "total": sum(timings.values())}, reason)


def _prefer_answers(
    index: Index, order: list[tuple[int, float]], weight: float, *, shift: bool = False
) -> list[tuple[int, float]]:
    """Scale the scores of unanswered passages by `weight` and re-sort (stable).

    Cross-encoder scores can be negative: with `shift`, they are first shifted to start at 0.
    """
    if weight == 1.0 or not order:
        return order
    low = min(s for _, s in order) if shift else 0.0
    scaled = [(i, (s - low) * (1.0 if index.chunks[i].has_answer else weight) + low) for i, s in order]
    return sorted(scaled, key=lambda item: -item[1])


def _hit(index: Index, position: int, score: float, lists: dict[str, list[tuple[int, float]]]) -> Hit:
    scores: dict[str, float | None] = dict.fromkeys(STAGES)
    ranks: dict[str, int | None] = dict.fromkeys(STAGES)
    for stage, ranked in lists.items():
        for rank, (i, s) in enumerate(ranked, start=1):
            if i == position:
                scores[stage], ranks[stage] = round(float(s), 6), rank
                break
    return Hit(index.chunks[position], round(float(score), 6), scores, ranks)


def _ms(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 2)


def as_json(result: Result) -> dict:
    """The JSON shape printed by `mianjing search --json`."""
    return {
        "query": result.query,
        "mode": result.mode,
        "hits": [
            {
                "rank": n,
                "id": h.chunk.id,
                "source": h.chunk.source,
                "start": h.chunk.start,
                "end": h.chunk.end,
                "heading": " > ".join(h.chunk.heading),
                "text": h.chunk.text,
                "has_answer": h.chunk.has_answer,
                "score": h.score,
                "scores": h.scores,
                "ranks": h.ranks,
            }
            for n, h in enumerate(result.hits, start=1)
        ],
        "timings_ms": result.timings_ms,
        **({"reranker": result.reranker} if result.reranker else {}),
    }


__all__ = ["MODES", "Hit", "Result", "search", "as_json"]
