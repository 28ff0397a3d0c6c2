"""Labeled (question, passage) pairs for the reranker: each question's passage, plus hard negatives.

The negatives come from mianjing's own hybrid retrieval: the best-ranked hits of the question that are not
its passage and do not answer it too. A hit is dropped when it overlaps the positive's span in the same
note (split chunks repeat ~100 characters), shares its heading path (the other half of a split answer),
is a near-duplicate of its text (character-bigram Jaccard >= `near`, e.g. the same answer copied into two
notes) or has no answer at all (a bare question or a question list: search demotes those already). Both
sides are what the cross-encoder sees at search time, `Chunk.indexed` (heading path + text); labels are
1.0 / 0.0 for `BinaryCrossEntropyLoss`. The same rows and index give the same pairs, in the same order.

Does not: write questions (tune/questions.py), judge whether a kept negative really fails to answer the
question (a false negative is possible), or shuffle.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ingest.chunk import Chunk
from retriever.tokenize import bigrams

DEPTH = 30  # hybrid hits looked at per question
PER_QUESTION = 7  # negatives kept per question
NEAR = 0.6  # bigram Jaccard from which a hit counts as a copy of the positive


@dataclass(frozen=True)
class Pair:
    question: str
    passage: str  # Chunk.indexed
    label: float  # 1.0 = the question's passage, 0.0 = a hard negative


class _Hit(Protocol):
    @property
    def chunk(self) -> Chunk: ...


class _Result(Protocol):
    @property
    def hits(self) -> Sequence[_Hit]: ...


class _Index(Protocol):
    @property
    def chunks(self) -> Sequence[Chunk]: ...


class SearcherLike(Protocol):
    """What mining needs of `assistant.retrieval.Searcher`."""

    @property
    def index(self) -> _Index: ...

    def search(self, query: str, *, mode: str | None = ..., k: int | None = ...) -> _Result: ...


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def answers_too(hit: Chunk, positive: Chunk, *, near: float = NEAR) -> bool:
    """Whether `hit` may answer the positive's question: the same span, heading path or text."""
    if hit.id == positive.id or hit.heading == positive.heading:
        return True
    if hit.source == positive.source and hit.start < positive.end and positive.start < hit.end:
        return True
    return jaccard(bigrams(hit.text), bigrams(positive.text)) >= near


def negatives(
    positive: Chunk, ranked: Iterable[Chunk], *, k: int = PER_QUESTION, near: float = NEAR
) -> list[Chunk]:
    """The first `k` of `ranked` that have an answer and do not answer the positive's question too."""
    kept: list[Chunk] = []
    for hit in ranked:
        if len(kept) == k:
            break
        if hit.has_answer and not answers_too(hit, positive, near=near):
            kept.append(hit)
    return kept


def easy(positive: Chunk, pool: Sequence[Chunk], question: str, *, k: int, near: float = NEAR) -> list[Chunk]:
    """`k` answering passages drawn at random (seeded by the question) that do not answer it too: easy
    negatives, without which a fresh head learned nothing from hard ones alone."""
    draw = random.Random(hashlib.sha256(question.encode()).digest())
    kept: list[Chunk] = []
    for hit in draw.sample(list(pool), min(len(pool), 4 * k + 4)):
        if len(kept) == k:
            break
        if not answers_too(hit, positive, near=near):
            kept.append(hit)
    return kept


def mine(
    rows: Iterable[dict[str, Any]],
    searcher: SearcherLike,
    *,
    depth: int = DEPTH,
    k: int = PER_QUESTION,
    near: float = NEAR,
    random_k: int = 0,
) -> tuple[list[Pair], int]:
    """Pairs for every row whose passage is in the index: (question, positive, 1.0), then its `k` hard
    negatives and `random_k` easy ones.

    Returns the pairs and how many rows were skipped because their passage id is not in the index."""
    by_id = {c.id: c for c in searcher.index.chunks}
    answering = [c for c in searcher.index.chunks if c.has_answer]
    pairs: list[Pair] = []
    skipped = 0
    for row in rows:
        positive = by_id.get(row["passage"])
        if positive is None:
            skipped += 1
            continue
        question = row["question"]
        hits = searcher.search(question, mode="hybrid", k=depth).hits
        pairs.append(Pair(question, positive.indexed, 1.0))
        hard = negatives(positive, (h.chunk for h in hits), k=k, near=near)
        drawn = [
            c for c in easy(positive, answering, question, k=random_k + len(hard), near=near) if c not in hard
        ]
        for hit in hard + drawn[:random_k]:
            pairs.append(Pair(question, hit.indexed, 0.0))
    return pairs, skipped
