"""The app's Practice tab: today's due count and a chart per topic, a card, an answer box, the grade with
covered and missed points (each missed one quoted from the notes with its place), the notes' own answer,
and the rating to save (the grade's, or the one the person chooses instead).

Reads top to bottom: scope (topic) -> deck and cards -> progress -> the current card -> answer form ->
grade -> rating and save. The card being answered and its grade live in `st.session_state` under
`practice_*` keys, so a rerun (any widget) keeps them.

Does not: grade or schedule in any way of its own (it calls `practice.session` and `practice.schedule`,
as `mianjing practice` does).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import streamlit as st

from assistant.retrieval import Searcher
from assistant.settings import Settings
from practice import answerable, schedule, session
from practice.grade import RATINGS, Grade
from practice.points import Model

LABELS = {"again": "Again 重来", "hard": "Hard 困难", "good": "Good 良好", "easy": "Easy 简单"}


def show(searcher: Searcher, settings: Settings, model: Model | None) -> None:
    model = model if settings.grader == "model" else None  # MIANJING_GRADER: overlap grades by default
    topic = st.text_input("Topic (optional)", key="practice_topic", placeholder="e.g. ZeRO, LoRA, 位置编码")
    try:
        deck = schedule.load(settings.index_dir / schedule.STATE)
    except (ValueError, OSError) as e:  # corrupted (moved aside by `load`) or newer: said, never reset
        st.error(f"**Practice state unreadable:** {e}")
        return
    if deck.problem:
        st.warning(deck.problem)
    cards = session.cards(searcher, topic=topic.strip())
    progress(deck, cards)
    if not cards:
        st.info("No questions in this scope. Clear the topic, or write questions as headings in your notes.")
        return
    current = _current(searcher, deck, cards, settings, topic)
    if current is None:
        st.success("Nothing more due today: every due card is reviewed and today's new cards are done. 🎉")
        return
    st.markdown(f"#### 问：{current.card.question}")
    st.caption(f"{current.card.where} · {'new card' if current.card.id not in deck.cards else 'review'}")
    graded: Grade | None = st.session_state.get("practice_grade")
    if graded is None:
        prepared = _prepare(current, model, settings)
        with st.form("practice_answer", clear_on_submit=False):
            answer = st.text_area("Your answer 你的回答", key="practice_answer_text", height=140)
            submitted = st.form_submit_button("Grade 评分", type="primary")
        if submitted:
            with st.spinner("Grading against your notes…"):
                prepared.join()  # the key points made while the answer was written
                st.session_state["practice_grade"] = session.grade_answer(
                    current, answer, searcher=searcher, model=model, settings=settings
                )
            st.rerun()
        if model is None:
            st.caption(
                "Graded by the words and meaning your answer shares with your notes "
                "(MIANJING_GRADER=model lets the language model judge)."
            )
        return
    feedback(graded, current)
    rate(graded, current, deck)


def progress(deck: schedule.Deck, cards: list[Any]) -> None:
    """Due today, reviewed, retention, and a bar chart of reviewed cards per topic."""
    s = schedule.stats(deck, cards)
    retention = "–" if s["retention"] is None else f"{s['retention']:.0%}"
    a, b, c, d = st.columns(4)
    a.metric("Due today", s["due_today"])
    b.metric("New", s["new"])
    c.metric("Reviews", s["reviewed"], delta=s["reviewed_today"] or None)
    d.metric("Retention", retention)
    topics = s["per_topic"]
    if topics and s["reviewed"]:
        with st.expander("Progress per topic", expanded=False):
            rows = {
                "topic": list(topics),
                "reviewed": [t.get("reviewed", 0) for t in topics.values()],
                "not yet": [t["cards"] - t.get("reviewed", 0) for t in topics.values()],
            }
            st.bar_chart(rows, x="topic", y=["reviewed", "not yet"], horizontal=True, stack=True)


def feedback(graded: Grade, current: answerable.Answerability) -> None:
    """The grade, its reason, covered and missed points (missed ones quoted with where they are), and the
    notes' own answer."""
    box: Callable[..., Any] = {"again": st.error, "hard": st.warning}.get(graded.rating, st.success)
    box(f"**{LABELS[graded.rating]}** — {graded.reason}")
    for point in graded.covered:
        st.markdown(f":green[✓ {point.text}]")
    for point in graded.missed + graded.contradicted:
        wrong = "contradicted" if point in graded.contradicted else "missed"
        st.markdown(f":red[✗ {point.text}] · _{wrong}_")
        st.caption(f"「{point.quote}」 — {point.source} {point.start}–{point.end}")
    with st.expander("Your notes' answer 笔记原文", expanded=graded.rating in ("again", "hard")):
        st.markdown(graded.notes_answer)
        st.caption(" · ".join(c.id for c in current.passages))


def rate(graded: Grade, current: answerable.Answerability, deck: schedule.Deck) -> None:
    """The rating to save (the grade's preselected, changeable), then the next card."""
    chosen = st.radio(
        "Save as",
        RATINGS,
        index=RATINGS.index(graded.rating),
        format_func=LABELS.get,
        horizontal=True,
        key="practice_rating",
    )
    if st.button("Save and next 保存并继续", type="primary", key="practice_save"):
        try:  # under the state's lock, onto what other sessions saved meanwhile
            due = schedule.record(deck, current.card.id, chosen).due
        except (ValueError, OSError) as e:  # the state on disk became unreadable, or cannot be written
            st.error(f"**Practice state unreadable:** {e}")
            return
        st.session_state["practice_saved"] = f"Saved {chosen}: next review {due:%Y-%m-%d %H:%M} UTC"
        _clear()
        st.rerun()
    if st.button("Skip this card", key="practice_skip"):
        st.session_state.setdefault("practice_skipped", set()).add(current.card.id)
        _clear()
        st.rerun()


def _current(
    searcher: Searcher, deck: schedule.Deck, cards: list[Any], settings: Settings, topic: str
) -> answerable.Answerability | None:
    """The card being answered: kept across reruns while its topic stays, else the next due one."""
    if said := st.session_state.pop("practice_saved", None):
        st.toast(said)
    kept: answerable.Answerability | None = st.session_state.get("practice_card")
    if kept is not None and st.session_state.get("practice_card_topic") == topic:
        return kept
    _clear()
    skipped = frozenset(st.session_state.get("practice_skipped", set()))
    found = session.next_card(searcher, deck, cards, settings, skip=skipped)
    st.session_state["practice_card"], st.session_state["practice_card_topic"] = found, topic
    return found


def _prepare(current: answerable.Answerability, model: Model | None, settings: Settings) -> threading.Thread:
    """The card's key points, made in the background once per card while the person writes (the model's
    lock keeps it apart from a chat answer); grading waits for it and then needs one model call."""
    kept = st.session_state.get("practice_prepared")
    if kept is not None and kept[0] == current.card.id:
        return kept[1]
    thread = session.prepare_in_background(current, model=model, settings=settings)
    st.session_state["practice_prepared"] = (current.card.id, thread)
    return thread


def _clear() -> None:
    for key in ("practice_card", "practice_grade", "practice_answer_text", "practice_rating"):
        st.session_state.pop(key, None)
