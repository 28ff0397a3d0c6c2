"""What the practice front-ends (CLI, app) call: the pool of the open notes, the next card, a graded and
saved answer, and the JSON shapes they print.

Does not: parse flags or print, or load the index itself (callers pass a `Searcher`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from assistant.retrieval import Searcher
from assistant.settings import Settings
from practice import answerable, grade, pool, schedule
from practice.points import Model, Point, PointCache, key_points


def cards(searcher: Searcher, *, source: str = "", heading: str = "", topic: str = "") -> list[pool.Card]:
    """The notes' questions, filtered by file (name or glob), heading path, and topic (a search query:
    cards in the passages it finds that match it well lexically, or mentioning it)."""
    found = pool.pool(searcher.index.chunks)
    chunks = _topic_chunks(searcher, topic) if topic else None
    return pool.select(found, source=source, heading=heading, chunks=chunks, text=topic)


def _topic_chunks(searcher: Searcher, topic: str) -> set[str]:
    """The passages search finds for a topic; when BM25 ran, those scoring at least half the best BM25
    score (dense neighbours and stray matches of a digit are too loose a topic)."""
    hits = searcher.search(topic).hits
    best = max((h.scores.get("bm25") or 0.0 for h in hits), default=0.0)
    sharing = [h for h in hits if (h.scores.get("bm25") or 0.0) >= best / 2] if best > 0 else hits
    return {h.chunk.id for h in sharing}


def find(found: list[pool.Card], card_id: str) -> pool.Card:
    for card in found:
        if card.id == card_id:
            return card
    raise ValueError(f"no card {card_id} in these notes (mistyped, or its question was edited or deleted)")


def next_card(
    searcher: Searcher,
    deck: schedule.Deck,
    found: list[pool.Card],
    settings: Settings,
    *,
    skip: frozenset[str] = frozenset(),
) -> answerable.Answerability | None:
    """The first card of today's queue that the notes answer (gaps are never quizzed)."""
    for card in schedule.queue(deck, found, new_per_day=settings.new_per_day):
        if card.id in skip:
            continue
        a = answerable.answerability(card, searcher, answered_above=settings.answered_above)
        if a.answered:
            return a
    return None


def load_model(settings: Settings, warn: Callable[[str], None]) -> Model | None:
    """The model that grades, with `grader` "model" only (by default the notes' sentences, word overlap and e5
    grade: on eval/data/grading.jsonl they agree with the expected ratings more than the bundled 1.5B's
    verdicts); None (said through `warn`) when it cannot load."""
    if settings.grader != "model":
        return None
    from assistant.llm import Generator

    try:
        return Generator.of(settings)
    except RuntimeError as e:
        warn(f"mianjing: grading without a language model ({e})")
        return None


def check_answered(a: answerable.Answerability) -> None:
    """ValueError in one line for a gap: there is no answer in the notes to grade against."""
    if not a.answered:
        near = f"; closest passage {a.closest.id} ({a.confidence:.2f})" if a.closest else ""
        raise ValueError(f"your notes hold no answer to {a.card.question!r}{near}: nothing to grade against")


def prepare(a: answerable.Answerability, *, model: Model | None, settings: Settings) -> None:
    """Extract and cache the key points of a card's answering passages (a model call per new passage), so
    that grading the answer then costs one model call: front-ends run this while the person writes."""
    if model is not None and a.answered and settings.grader == "model":
        key_points(a.passages, model=model, cache=_point_cache(model, settings))


def prepare_in_background(
    a: answerable.Answerability, *, model: Model | None, settings: Settings
) -> threading.Thread:
    """`prepare` on a started daemon thread, for a front-end to join before grading; a failure there is
    left to the grader, which meets it again and says so."""

    def quietly() -> None:
        try:
            prepare(a, model=model, settings=settings)
        except (RuntimeError, ValueError, OSError):
            pass

    thread = threading.Thread(target=quietly, daemon=True)
    thread.start()
    return thread


def _point_cache(model: Model, settings: Settings) -> PointCache:
    return PointCache(settings.cache, getattr(model, "name", "model"))


def grade_answer(
    a: answerable.Answerability,
    answer: str,
    *,
    searcher: Searcher,
    model: Model | None,
    settings: Settings,
) -> grade.Grade:
    check_answered(a)
    model = model if settings.grader == "model" else None
    cache = _point_cache(model, settings) if model is not None else None
    return grade.grade(
        answer,
        a.passages,
        model=model,
        cache=cache,
        embedder=searcher.embedder,
        question=a.card.question,
        focus=a.focus,
    )


def citation(point: Point) -> dict:
    return {
        "point": point.text,
        "id": point.chunk,
        "source": point.source,
        "start": point.start,
        "end": point.end,
        "quote": point.quote,
    }


def as_json(result: grade.Grade, a: answerable.Answerability, next_due: datetime | None) -> dict:
    """The JSON of `mianjing practice grade`."""
    return {
        "card": a.card.id or None,
        "question": a.card.question,
        "rating": result.rating,
        "reason": result.reason,
        "covered": [p.text for p in result.covered],
        "missed": [p.text for p in result.missed],
        "contradicted": [p.text for p in result.contradicted],
        "citations": [citation(p) for p in result.missed + result.contradicted],
        "notes_answer": result.notes_answer,
        "passages": [c.id for c in a.passages],
        "method": result.method,
        "failures": result.failures,
        "next_due": next_due.isoformat() if next_due else None,
    }
