"""Answerability: which passages of the notes answer a card, how sure that is, and which cards are gaps.

Step 1: a question written with its answer right below it (`Card.own_answer`) is answered by that passage
(and the pieces it was split into), confidence 1.0.
Step 2: any other card (a question-bank line, a question without an answer below it) is searched for
through the same `Searcher.search` as `mianjing ask` (the settings' mode: reranked when the reranker is
there); the best answering passage (`has_answer`, not the passage the question itself sits in) is the
candidate, and the confidence is the best e5 cosine of the question and a window of that passage: whole
atoms (`ingest.chunk.atoms`: sentences, list items, tables) of up to `WINDOW` characters, each under the
passage's heading path, the way the index embeds a whole passage. A question that one list item of a long
passage answers is as close to that item as to a short passage about it; against the whole passage its
cosine is diluted by the rest. (On the hand-checked bank cards, `eval/data/coverage.jsonl`, the window
cosine separates answered from gaps better than the passage's: AUC 0.84 / 0.84 / 0.75 against 0.80 / 0.82 /
0.64 on its three samples.) A bank card is never answered by a passage of its own
question list: a list asks each question once, so an answer there (a sibling's outline: "为什么需要
nn.DataParallel?" next to "nn.DataParallel 的缺点是什么?") answers another question.
Step 3: a card is answered when the confidence reaches `answered_above`; otherwise it is a gap: it keeps its
closest passage for the study plan and is never quizzed (there is no answer to grade against). Either way the
closest window is kept as `focus`, the part of the passage a grade holds an answer to.

Does not: grade, schedule, cache results across runs, or embed passages (the index holds every passage's
windows and their vectors: `retriever.index.Windows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assistant.retrieval import Searcher
from ingest.chunk import Chunk
from practice.pool import Card
from retriever.dense import Embedder
from retriever.index import Index

OWN = 1.0  # confidence of a question answered right below it in the notes


@dataclass(frozen=True)
class Answerability:
    card: Card
    answered: bool
    confidence: float  # 1.0 for an own answer, else the best cosine of the question and a window of `closest`
    passages: tuple[Chunk, ...]  # the answering passages, best first; empty for a gap
    closest: Chunk | None  # the best answering passage found, even below the bar (None: none at all)
    # where in the notes (source offsets) the window of `closest` closest to the question lies: the part a
    # grade holds an answer to (one item of a long list); None: the whole passages (an own answer)
    focus: tuple[int, int] | None = None


def answerability(card: Card, searcher: Searcher, *, answered_above: float) -> Answerability:
    """Where the notes answer `card` (see the module docstring)."""
    # Step 1: answered in its own passage
    own = _own_passages(card, searcher.index.chunks)
    if own:
        return Answerability(card, True, OWN, own, own[0])
    # Step 2: the best answering passage retrieval finds, and how close it is
    hits = [
        h for h in searcher.search(card.question).hits if h.chunk.has_answer and not _same_list(card, h.chunk)
    ]
    if not hits:
        return Answerability(card, False, 0.0, (), None)
    best = hits[0].chunk
    confidence, (a, b) = closest_window(card.question, best, searcher.index, searcher.embedder)
    focus = (best.start + a, best.start + b)
    # Step 3: answered, or a gap
    if confidence < answered_above:
        return Answerability(card, False, confidence, (), best, focus)
    return Answerability(card, True, confidence, with_parts(best, searcher.index.chunks), best, focus)


def for_question(question: str, searcher: Searcher, *, answered_above: float) -> Answerability:
    """The answerability of any question (not a card of the notes): search only."""
    card = Card("", question, "", (), 0, 0, "", False, False)
    return answerability(card, searcher, answered_above=answered_above)


def closest_window(
    question: str, chunk: Chunk, index: Index, embedder: Embedder
) -> tuple[float, tuple[int, int]]:
    """The best e5 cosine of `question` and a window of `chunk` (the windows the index embedded, see the
    module docstring), and that window's span in `chunk.text`."""
    spans, vectors = index.windows_of(chunk)
    scores = vectors @ embedder.query(question)
    best = int(np.argmax(scores))
    return round(float(scores[best]), 6), (int(spans[best][0]), int(spans[best][1]))


def _same_list(card: Card, chunk: Chunk) -> bool:
    """Is the passage the card's own, or in the card's question list?"""
    in_list = card.topic and chunk.source == card.source and card.span[0] <= chunk.start < card.span[1]
    return chunk.id == card.chunk or bool(in_list)


def _own_passages(card: Card, chunks: list[Chunk]) -> tuple[Chunk, ...]:
    if not card.own_answer:
        return ()
    found = next((c for c in chunks if c.id == card.chunk), None)
    return with_parts(found, chunks) if found is not None and found.has_answer else ()


def with_parts(chunk: Chunk, chunks: list[Chunk]) -> tuple[Chunk, ...]:
    """The chunk and the pieces a long answer was split into after it (same heading, overlapping)."""
    at = chunks.index(chunk)
    parts = [chunk]
    for nxt in chunks[at + 1 :]:
        if nxt.source != chunk.source or nxt.heading != chunk.heading or nxt.start >= parts[-1].end:
            break
        parts.append(nxt)
    return tuple(parts)
