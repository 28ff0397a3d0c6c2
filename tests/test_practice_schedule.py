"""FSRS state: reviews and logs survive a save, a corrupted file is kept aside and reported, new cards
enter at the daily limit, and stats count what was done."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from practice import schedule
from practice.pool import Card

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def card(n: int, section: str = "注意力") -> Card:
    return Card(
        f"a.md#{n:012x}", f"问题 {n}？", "a.md", ("a.md", section), n * 10, n * 10 + 5, "a.md#x", True, False
    )


def test_reviews_and_logs_survive_a_save(tmp_path: Path) -> None:
    deck = schedule.load(tmp_path / "practice.json")
    assert deck.cards == {} and deck.logs == []
    schedule.review(deck, "a.md#1", "good", at=T0)
    schedule.review(deck, "a.md#2", "again", at=T0)
    schedule.review(deck, "a.md#1", "easy", at=T0 + timedelta(minutes=20))
    schedule.save(deck)
    back = schedule.load(tmp_path / "practice.json")
    assert {k: c.to_dict() for k, c in back.cards.items()} == {k: c.to_dict() for k, c in deck.cards.items()}
    assert [(log["card"], log["rating"]) for log in back.logs] == [
        ("a.md#1", 3),
        ("a.md#2", 1),
        ("a.md#1", 4),
    ]
    assert back.cards["a.md#1"].due > T0 + timedelta(days=1) > back.cards["a.md#2"].due
    assert back.cards["a.md#1"].card_id == schedule.fsrs_id("a.md#1")
    assert [p.name for p in tmp_path.iterdir()] == ["practice.json"]  # no temporary file left


@pytest.mark.parametrize(
    "content", ["{not json", json.dumps({"version": 1}), json.dumps({"version": 1, "cards": [], "logs": []})]
)
def test_a_corrupted_state_is_kept_aside_and_reported(tmp_path: Path, content: str) -> None:
    path = tmp_path / "practice.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        schedule.load(path)
    message = str(caught.value)
    assert (
        "\n" not in message and "practice state" in message and "kept aside as practice.json.bad-" in message
    )
    aside = list(tmp_path.glob("practice.json.bad-*"))
    assert len(aside) == 1 and aside[0].read_text(encoding="utf-8") == content and not path.exists()


def test_bad_ratings_and_naive_times_are_refused(tmp_path: Path) -> None:
    deck = schedule.load(tmp_path / "practice.json")
    with pytest.raises(ValueError, match="unknown rating"):
        schedule.review(deck, "a.md#1", "perfect", at=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.review(deck, "a.md#1", "good", at=datetime(2026, 12, 1, 9, 0))
    assert deck.logs == []


def test_new_cards_enter_at_the_daily_limit_after_due_ones(tmp_path: Path) -> None:
    cards = [card(n) for n in range(1, 6)]
    deck = schedule.load(tmp_path / "practice.json")
    assert [c.id for c in schedule.queue(deck, cards, new_per_day=2, at=T0)] == [cards[0].id, cards[1].id]
    schedule.review(deck, cards[0].id, "again", at=T0)
    schedule.review(deck, cards[1].id, "easy", at=T0)
    later = T0 + timedelta(hours=1)
    # card 1 (again) is due again within the hour; today's two new cards are used up
    assert [c.id for c in schedule.queue(deck, cards, new_per_day=2, at=later)] == [cards[0].id]
    assert [c.id for c in schedule.queue(deck, cards, new_per_day=3, at=later)] == [cards[0].id, cards[2].id]
    tomorrow = T0 + timedelta(days=1, hours=1)
    assert [c.id for c in schedule.queue(deck, cards, new_per_day=2, at=tomorrow)][-2:] == [
        cards[2].id,
        cards[3].id,
    ]
    assert schedule.queue(deck, cards, new_per_day=0, at=later) == [cards[0]]


def test_stats_count_due_reviews_retention_and_topics(tmp_path: Path) -> None:
    cards = [card(1), card(2), card(3, "并行")]
    deck = schedule.load(tmp_path / "practice.json")
    schedule.review(deck, cards[0].id, "good", at=T0)
    schedule.review(deck, cards[0].id, "good", at=T0 + timedelta(minutes=15))
    schedule.review(deck, cards[1].id, "good", at=T0)
    schedule.review(deck, cards[1].id, "again", at=T0 + timedelta(minutes=15))
    schedule.review(deck, "gone.md#1", "good", at=T0)  # a card whose question left the notes
    s = schedule.stats(deck, cards, at=T0 + timedelta(hours=1))
    assert (s["cards"], s["reviewed"], s["reviewed_today"], s["new"], s["retired"]) == (3, 5, 5, 1, 1)
    assert s["retention"] == 0.5  # of the two second reviews, one was forgotten
    assert s["due_today"] == 1  # card 2 (again) is due today; card 1 (good twice) is not
    assert s["per_topic"] == {
        "a.md > 注意力": {"cards": 2, "reviewed": 2, "due": 1},
        "a.md > 并行": {"cards": 1, "reviewed": 0, "due": 0},
    }


def test_two_corrupted_states_in_one_second_are_both_kept(tmp_path: Path) -> None:
    path = tmp_path / "practice.json"
    for content in ("{first", "{second"):
        path.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError):
            schedule.load(path)
    kept = sorted(p.read_text(encoding="utf-8") for p in tmp_path.glob("practice.json.bad-*"))
    assert kept == ["{first", "{second"]


def test_a_state_from_a_newer_mianjing_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "practice.json"
    content = json.dumps({"version": 99, "cards": {}, "logs": [], "new": "field"})
    path.write_text(content, encoding="utf-8")
    with pytest.raises(OSError, match="newer mianjing"):
        schedule.load(path)
    assert path.read_text(encoding="utf-8") == content and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_one_bad_card_or_log_loses_only_itself_and_the_file_is_copied_aside(tmp_path: Path) -> None:
    path = tmp_path / "practice.json"
    deck = schedule.load(path)
    for n in (1, 2, 3):
        schedule.review(deck, f"a.md#{n}", "good", at=T0)
    schedule.save(deck)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["cards"]["a.md#2"]["due"] = "not a date"
    del data["logs"][2]["card"]
    original = json.dumps(data)
    path.write_text(original, encoding="utf-8")
    back = schedule.load(path)
    assert sorted(back.cards) == ["a.md#1", "a.md#3"] and [log["card"] for log in back.logs] == [
        "a.md#1",
        "a.md#2",
    ]
    assert "1 of 3 cards and 1 of 3 review logs unreadable" in back.problem and "\n" not in back.problem
    (aside,) = tmp_path.glob("practice.json.bad-*")
    assert aside.read_text(encoding="utf-8") == original and aside.name in back.problem
    again = schedule.load(path)  # the rest was saved as the state: nothing more to say or copy
    assert not again.problem and sorted(again.cards) == ["a.md#1", "a.md#3"]
    assert len(list(tmp_path.glob("practice.json.bad-*"))) == 1


def test_record_keeps_the_reviews_another_session_saved_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "practice.json"
    mine, theirs = schedule.load(path), schedule.load(path)  # two front-ends, each loaded before either saved
    schedule.record(theirs, "a.md#1", "good", at=T0)
    schedule.record(mine, "a.md#2", "again", at=T0 + timedelta(minutes=1))
    schedule.record(theirs, "a.md#3", "easy", at=T0 + timedelta(minutes=2))
    back = schedule.load(path)
    assert [(log["card"], log["rating"]) for log in back.logs] == [
        ("a.md#1", 3),
        ("a.md#2", 1),
        ("a.md#3", 4),
    ]
    assert sorted(back.cards) == ["a.md#1", "a.md#2", "a.md#3"] and sorted(theirs.cards) == sorted(back.cards)
