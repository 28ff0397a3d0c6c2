"""Spaced repetition with FSRS (`fsrs` 6.x): one review state per notes folder, saved safely.

The state is `<index folder>/practice.json`: `{"version", "cards": {card id: fsrs Card.to_dict()},
"logs": [{"card", **ReviewLog.to_dict()}]}`; every review keeps its log (for FSRS's optimizer later). It is
written to a temporary file and renamed, so an interrupted save leaves the previous state whole. A state
file that cannot be read is moved aside (`practice.json.bad-<time>`) and reported in one line: never
silently reset. Cards are named by `Card.id`; the fsrs card id is derived from it. A card whose question
left the notes keeps its state (retired) but is never due.

New cards (never reviewed) enter at most `new_per_day` per UTC day, after the due ones.

Two front-ends practising one notes folder at once (a quiz in a terminal, the app, a script) each hold the
state they loaded; `record` saves a review under a lock (`.practice.json.lock` beside the state), applied to
the state as it is on disk then, so neither overwrites the other's reviews.

Does not: grade (see `grade`), or decide which cards the notes answer (see `answerable`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock
from fsrs import Card as FsrsCard
from fsrs import Rating, ReviewLog, Scheduler

from practice.pool import Card
from retriever.index import aside_name

STATE = "practice.json"
VERSION = 1
RATING = {"again": Rating.Again, "hard": Rating.Hard, "good": Rating.Good, "easy": Rating.Easy}


@dataclass
class Deck:
    """The review state of one notes folder (owns what is saved). `problem`: what `load` could not read of
    it (a card or review log of a bad shape, set aside with a copy of the file kept), "" when nothing."""

    path: Path
    cards: dict[str, FsrsCard] = field(default_factory=dict)
    logs: list[dict] = field(default_factory=list)
    problem: str = ""


def now() -> datetime:
    return datetime.now(UTC)


BAD = (ValueError, KeyError, TypeError, AttributeError)  # what fsrs's from_dict raises for a bad shape


def load(path: Path) -> Deck:
    """The saved state, or an empty one when there is none.

    A file that is no state at all (not JSON, no cards or logs) is moved aside and ValueError says so in one
    line. A state written by a newer mianjing is refused as it is, never moved. A state with some cards or
    logs of a bad shape (edited by hand, a field lost) keeps the rest, saved as the state: a copy of the file
    as it was is kept aside and `Deck.problem` says what was left out, so months of reviews are not set
    aside for one bad card."""
    if not path.exists():
        return Deck(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("version"), int):
            raise ValueError("not a practice state")
        if data["version"] > VERSION:
            raise OSError(
                f"practice state {path} was written by a newer mianjing (version {data['version']}, this one "
                f"reads {VERSION}): left as it is; upgrade mianjing to use it"
            )
        if (
            data["version"] != VERSION
            or not isinstance(data["cards"], dict)
            or not isinstance(data["logs"], list)
        ):
            raise ValueError(f"not a version {VERSION} practice state")
    except (*BAD, UnicodeDecodeError) as e:
        aside = aside_name(path)
        os.replace(path, aside)
        raise ValueError(
            f"practice state {path} is unreadable ({type(e).__name__}: {str(e).splitlines()[0][:80]}); "
            f"kept aside as {aside.name}, the next review starts a new state"
        ) from None
    cards, logs = _cards(data["cards"]), _logs(data["logs"])
    bad_cards, bad_logs = len(data["cards"]) - len(cards), len(data["logs"]) - len(logs)
    if not bad_cards and not bad_logs:
        return Deck(path, cards, logs)
    aside = aside_name(path)
    shutil.copy2(path, aside)
    left = [f"{bad_cards} of {len(data['cards'])} cards"] * bool(bad_cards)
    left += [f"{bad_logs} of {len(data['logs'])} review logs"] * bool(bad_logs)
    save(Deck(path, cards, logs))  # the rest, so the next load neither says it again nor copies again
    problem = (
        f"practice state {path}: {' and '.join(left)} unreadable, left out (the rest is used); "
        f"the file as it was is kept as {aside.name}"
    )
    return Deck(path, cards, logs, problem)


def _cards(found: dict) -> dict[str, FsrsCard]:
    cards = {}
    for cid, card in found.items():
        try:
            cards[cid] = FsrsCard.from_dict(card)
        except BAD:
            continue
    return cards


def _logs(found: list) -> list[dict]:
    logs = []
    for log in found:
        try:
            if not isinstance(log.get("card"), str):
                raise ValueError("a review log names no card")
            shape: Any = {k: v for k, v in log.items() if k != "card"}
            ReviewLog.from_dict(shape)  # checks the log's shape
            datetime.fromisoformat(log["review_datetime"])  # stats and the daily allowance read it
        except BAD:
            continue
        logs.append(dict(log))
    return logs


def save(deck: Deck) -> None:
    """Write the state atomically: a temporary file in the same folder, then a rename."""
    data = {
        "version": VERSION,
        "cards": {cid: card.to_dict() for cid, card in deck.cards.items()},
        "logs": deck.logs,
    }
    try:
        deck.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=deck.path.parent, prefix=f".{deck.path.name}.", suffix=".tmp")
    except OSError as e:  # a read-only or missing folder: said with the folder, not a temporary name
        raise OSError(f"cannot save the practice state in {deck.path.parent}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False, indent=1)
        os.replace(tmp, deck.path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsrs_id(card_id: str) -> int:
    """A stable integer id for the fsrs card of `card_id`."""
    return int(hashlib.sha256(card_id.encode()).hexdigest()[:12], 16)


def review(
    deck: Deck, card_id: str, rating: str, *, at: datetime | None = None, scheduler: Scheduler | None = None
) -> FsrsCard:
    """Apply one review (again / hard / good / easy) at `at` (aware UTC; default now); keeps its log."""
    if rating not in RATING:
        raise ValueError(f"unknown rating {rating!r}: use {', '.join(RATING)}")
    at = at or now()
    if at.tzinfo is None:
        raise ValueError("review times must be timezone-aware (UTC)")
    card = deck.cards.get(card_id) or FsrsCard(card_id=fsrs_id(card_id), due=at)
    updated, log = (scheduler or Scheduler()).review_card(card, RATING[rating], review_datetime=at)
    deck.cards[card_id] = updated
    deck.logs.append({"card": card_id, **log.to_dict()})
    return updated


def record(
    deck: Deck, card_id: str, rating: str, *, at: datetime | None = None, scheduler: Scheduler | None = None
) -> FsrsCard:
    """`review`, then saved: under the state's lock, `deck` is first brought up to the state on disk (the
    reviews another front-end saved since `deck` was loaded), so the save keeps them; what `load` raises
    when the state on disk became unreadable meanwhile (ValueError, the file moved aside) or newer
    (OSError)."""
    with FileLock(deck.path.with_name(f".{deck.path.name}.lock")):
        current = load(deck.path)
        deck.cards, deck.logs = current.cards, current.logs
        updated = review(deck, card_id, rating, at=at, scheduler=scheduler)
        save(deck)
    return updated


def introduced_on(deck: Deck, day: datetime) -> int:
    """Cards reviewed for the first time on `day` (UTC date)."""
    first: dict[str, str] = {}
    for log in deck.logs:
        first.setdefault(log["card"], log["review_datetime"])
    return sum(datetime.fromisoformat(t).astimezone(UTC).date() == day.date() for t in first.values())


def queue(deck: Deck, cards: Sequence[Card], *, new_per_day: int, at: datetime | None = None) -> list[Card]:
    """The cards to practise now: due ones (earliest first), then new ones up to today's allowance."""
    at = at or now()
    due = sorted((deck.cards[c.id].due, n) for n, c in enumerate(cards) if c.id in deck.cards)
    due_cards = [cards[n] for when, n in due if when <= at]
    allowance = max(0, new_per_day - introduced_on(deck, at))
    fresh = [c for c in cards if c.id not in deck.cards][:allowance]
    return due_cards + fresh


def stats(deck: Deck, cards: Sequence[Card], *, at: datetime | None = None) -> dict:
    """Due today, reviewed (all time and today), retention (share of reviews of known cards not forgotten),
    per topic (`topic`: the card's question list, or its file and first heading)."""
    at = at or now()
    end_of_day = datetime.combine(at.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    live = {c.id: c for c in cards}
    due = [cid for cid, card in deck.cards.items() if cid in live and card.due < end_of_day]
    today = [log for log in deck.logs if datetime.fromisoformat(log["review_datetime"]).date() == at.date()]
    seen: set[str] = set()
    recalls = []
    for log in deck.logs:
        if log["card"] in seen:
            recalls.append(log["rating"] > Rating.Again)
        seen.add(log["card"])
    per_topic: dict[str, Counter] = {}
    for card in cards:
        counts = per_topic.setdefault(topic(card), Counter())
        counts["cards"] += 1
        counts["reviewed"] += card.id in deck.cards
        counts["due"] += card.id in due
    return {
        "cards": len(cards),
        "due_today": len(due),
        "reviewed": len(deck.logs),
        "reviewed_today": len(today),
        "new": sum(c.id not in deck.cards for c in cards),
        "retired": sum(cid not in live for cid in deck.cards),
        "retention": round(sum(recalls) / len(recalls), 3) if recalls else None,
        "per_topic": {t: dict(c) for t, c in sorted(per_topic.items())},
    }


def topic(card: Card) -> str:
    """A card's topic: the question list it is in, else its file and the first heading below the file."""
    if card.topic:
        return card.topic
    return " > ".join(card.heading[:2]) if len(card.heading) > 1 else card.source
