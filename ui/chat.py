"""The chat view: the first screen while the chat is empty, the history, and one question answered with
its progress said honestly and a Stop button.

First screen: what the app does, what is loaded (each file by its own title, its passages and topics) and
example questions from the notes' own questions; clicking one asks it as if typed.
Progress stages, in order: rewriting the follow-up -> searching -> waiting for another answer to finish
(one model serves every tab and generates one answer at a time) -> writing. `Staged` wraps the model to
see them: the pipeline itself reports no stages.
Stop: any click during a run interrupts the script at its next Streamlit call (the streaming callback);
what was written is kept in `st.session_state["pending"]` as it arrives, and the next run adds it to the
history marked stopped (`finish_stopped`).

Does not: answer in any way of its own (it calls `Conversation.ask`, as `mianjing chat` does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import streamlit as st

from assistant.answer import ChatModel, Conversation
from assistant.retrieval import Searcher
from assistant.settings import Settings
from ui import notes, render

GENERATING = threading.Lock()  # held by whichever tab's answer the model is writing
WAIT_POLL = 0.5  # seconds between checks while another answer is being written


class Staged:
    """A chat model that says which stage an answer is in through `say`, and can be closed mid-answer."""

    def __init__(self, model: ChatModel, say: Callable[[str], None]) -> None:
        self.model = model
        self.say = say
        self.active: Iterator[str] | None = None

    def complete(self, messages: list[tuple[str, str]]) -> str:
        self._take()
        try:
            self.say("✍️ rewriting the follow-up as a question of its own…")
            return self.model.complete(messages)
        finally:
            GENERATING.release()
            self.say("🔎 searching your notes…")

    def stream(self, messages: list[tuple[str, str]]) -> Iterator[str]:
        self.active = self._stream(messages)
        return self.active

    def _stream(self, messages: list[tuple[str, str]]) -> Iterator[str]:
        self._take()
        try:
            self.say("✍️ writing the answer…")
            pieces = self.model.stream(messages)
            try:
                yield from pieces
            finally:
                getattr(pieces, "close", lambda: None)()
        finally:
            GENERATING.release()

    def _take(self) -> None:
        """Wait for the model, saying so (each `say` is a point where Stop can interrupt)."""
        while not GENERATING.acquire(timeout=WAIT_POLL):
            self.say("⏳ waiting for another answer to finish (one answer is written at a time)…")

    def close(self) -> None:
        """End a generation that was interrupted: the model's lock is released now, not at garbage
        collection."""
        if self.active is not None:
            getattr(self.active, "close", lambda: None)()
            self.active = None


def welcome(overview: notes.Overview, ask: Callable[[str], None]) -> None:
    """The first screen: what the app does, what is loaded, example questions that ask themselves."""
    st.markdown(
        "#### Ask your interview notes\n"
        "**Ask** a question and get an answer with its sources · **explore** how passages are found · "
        "**practise** with your notes' own questions · **browse** the notes — the views above."
    )
    if overview.examples:
        st.caption("Try one of your notes' own questions:")
        row = st.container(horizontal=True)
        for n, question in enumerate(overview.examples):
            row.button(question, key=f"example-{n}", on_click=ask, args=(question,))
    st.caption(f"**Loaded:** {len(overview.files)} files · {overview.passages} passages")
    for f in overview.files:
        topics = f" — {', '.join(f.topics)}" if f.topics else ""
        st.markdown(f"- **{f.title}** · {f.passages} passages{topics}", help=f"file `{f.source}`")


def finish_stopped(history: list[render.Turn]) -> bool:
    """A question interrupted by Stop (or any click) in the last run joins the history, marked stopped."""
    pending = st.session_state.pop("pending", None)
    if pending is None:
        return False
    history.append(
        render.Turn(
            pending["id"],
            pending["question"],
            None,
            [],
            waited_s=round(time.monotonic() - pending["began"], 3),
            stopped="".join(pending["pieces"]),
        )
    )
    return True


def respond(
    question: str,
    *,
    turn_id: int,
    conversation: Conversation,
    searcher: Searcher,
    model: ChatModel | None,
    settings: Settings,
    shelf: render.Shelf,
    on_vote: Callable[[render.Turn], None],
) -> render.Turn | None:
    """Ask `question`, showing stages, the streamed text and a Stop button; the finished turn, or None
    after an error (said on the page)."""
    with st.chat_message("user"):
        st.markdown(question)
        rewritten = st.empty()
    with st.chat_message("assistant"):
        stage, streamed = st.empty(), st.empty()
        pending: dict[str, Any] = {
            "id": turn_id,
            "question": question,
            "pieces": [],
            "began": time.monotonic(),
        }
        st.session_state["pending"] = pending
        stop = st.empty()
        if model is not None:
            stop.button("Stop", icon="⏹", key="stop", help="end the answer here and keep what was written")
        staged = Staged(model, lambda said: _say(stage, said)) if model is not None else None
        if conversation.messages and staged is not None:
            stage.caption("✍️ rewriting the follow-up as a question of its own…")
        else:
            stage.caption("🔎 searching your notes…")

        def show(piece: str) -> None:
            pending["pieces"].append(piece)
            streamed.markdown("".join(pending["pieces"]) + " ▌")

        try:
            if staged is None:
                hits = searcher.search(question, mode=settings.mode, k=settings.k).hits
                turn = render.Turn(turn_id, question, None, hits)
            else:
                result = conversation.ask(
                    question, searcher=searcher, model=staged, settings=settings, on_text=show
                )
                turn = render.Turn(turn_id, question, result, result.pointers)
        except (RuntimeError, ValueError, OSError) as e:
            st.session_state.pop("pending", None)
            stop.empty()
            stage.empty()
            streamed.empty()
            st.error(f"**Could not answer:** {e}  \nTry again, or choose another model in the sidebar.")
            return None
        finally:
            if staged is not None:
                staged.close()
        st.session_state.pop("pending", None)
        stop.empty()
        turn = render.Turn(
            turn.id, question, turn.answer, turn.hits, round(time.monotonic() - pending["began"], 3)
        )
        stage.empty()
        streamed.empty()
        with rewritten.container():
            render.rewritten(turn)
        render.reply(turn, shelf)
        render.votes(turn, on_vote)
    return turn


def _say(place: Any, said: str) -> None:
    place.caption(said)


def conversation_of(history: list[render.Turn], keep: int) -> Conversation:
    """A conversation that continues a reopened chat: its answers' messages, as `Conversation.ask` keeps
    them."""
    conversation = Conversation(keep=keep)
    for turn in history:
        if turn.answer is not None:
            shown = turn.answer.passages if turn.answer.diagnostics.generated else []
            conversation.turns.append((Conversation.turn_of(turn.answer), shown))
    return conversation
