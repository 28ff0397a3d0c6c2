"""The mianjing chat app: ask your notes, read streamed answers with linked sources, see why passages
were found. Start it with `mianjing ui`; it reads the same MIANJING_* settings as the CLI.

Reads top to bottom: settings -> sidebar choices -> searcher and model (loaded once, shared by tabs) ->
sidebar status and index management -> chat (history, chat_input, `Conversation.ask`, answer + sources,
feedback) -> practice (ui/practice_tab.py) -> retrieval explorer. Without a language model the chat
shows the passages found instead.

Does not: retrieve or answer in any way of its own (it calls `assistant`, as the CLI does), or send
anything anywhere (`mianjing ui` binds to localhost and turns Streamlit's usage statistics off).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from collections.abc import Callable  # noqa: E402
from dataclasses import replace  # noqa: E402

import streamlit as st  # noqa: E402

from assistant.answer import Conversation  # noqa: E402
from assistant.settings import from_env  # noqa: E402
from ingest.load import CorpusError  # noqa: E402
from retriever.search import MODES  # noqa: E402
from ui import feedback, practice_tab, render, resources  # noqa: E402

st.set_page_config(page_title="mianjing 面经", page_icon="📒", layout="wide")
settings = from_env()

# Sidebar choices: retrieval mode, k, model
with st.sidebar:
    st.title("📒 mianjing 面经")
    mode = st.selectbox("Retrieval mode", MODES, index=MODES.index(settings.mode), key="mode")
    k = st.slider("Passages retrieved (k)", 1, 30, min(settings.k, 30), key="k")
    llm_name = st.selectbox("Model", resources.model_choices(settings), key="llm")

# The index and the model, loaded once per process (the sidebar's choices do not reload the index)
try:
    searcher = resources.open_searcher(settings)
except (CorpusError, RuntimeError, ValueError, OSError) as e:
    st.error(
        f"**Cannot open your notes:** {e}\n\nStart the app on a notes folder: "
        "`mianjing ui --corpus /path/to/notes` (or set MIANJING_CORPUS), then reload this page.",
        icon="📂",
    )
    st.stop()
settings = replace(settings, mode=mode, k=k, llm=llm_name)
model, no_model = resources.load_model(settings)


def read_note(source: str) -> str | None:
    return resources.read_note(settings.corpus, source)


# Sidebar status: reranker, model, index; re-index; clear the conversation
with st.sidebar:
    usable, said = resources.reranker_status(searcher, mode)
    st.caption(f"**Reranker:** {'✅' if usable else '⚪'} {said}")
    st.caption(
        f"**Model:** ✅ {resources.describe(model)}" if model else f"**Model:** ⚪ not loaded: {no_model}"
    )
    if model is None and llm_name != resources.NO_LLM:
        st.button("Retry loading the model", icon="🔁", on_click=resources.retry_model, key="retry")
    status = resources.index_status(searcher)
    st.caption(
        f"**Notes:** `{settings.corpus}`  \n**Index:** {status['files']} files · {status['chunks']} passages "
        f"· last ingest {status['built_at']}"
    )
    if st.button("Re-index changed notes", icon="🔄", key="reindex"):
        bar = st.progress(0.0, text="reading the notes…")

        def embedded(done: int, total: int) -> None:
            bar.progress(done / total, text=f"embedding {done}/{total}")

        try:
            report = resources.reindex(searcher, embedded)
        except (CorpusError, RuntimeError, ValueError, OSError) as e:
            report = None
            st.error(f"Re-index failed: {e}")
        else:
            bar.progress(1.0, text="done")
            if report is None:
                st.warning("Another tab is re-indexing; try again in a moment.")
            else:
                st.success(
                    f"{report.files} files, {report.chunks} passages: +{len(report.added)} new, "
                    f"{len(report.changed)} changed, -{len(report.deleted)} deleted in {report.seconds:.1f} s"
                )
    if st.button("Clear conversation", icon="🧹", key="clear"):
        st.session_state.pop("conversation", None)
        st.session_state.pop("history", None)
    st.caption(f"Index folder `{status['folder']}`; 👍/👎 go to `{feedback.path(settings)}`")

conversation: Conversation = st.session_state.setdefault(
    "conversation", Conversation(keep=settings.history_turns)
)
history: list[render.Turn] = st.session_state.setdefault("history", [])


def vote(turn: render.Turn) -> None:
    choice = st.session_state.get(render.vote_key(turn))
    if choice is not None and turn.answer is not None:
        line = feedback.record(turn.answer, feedback.VOTES[choice], settings)
        feedback.append(feedback.path(settings), line)


def reply_to(question: str, turn_id: int, on_text: Callable[[str], None]) -> render.Turn:
    """The same call as `mianjing chat`; without a model, the passages found."""
    if model is None:
        return render.Turn(turn_id, question, None, searcher.search(question, mode=mode, k=k).hits)
    result = conversation.ask(question, searcher=searcher, model=model, settings=settings, on_text=on_text)
    return render.Turn(turn_id, question, result, result.pointers)


chat, practising, explorer = st.tabs(["💬 Chat", "🎯 Practice", "🔎 Retrieval explorer"])

# Chat: the history, then a new question answered from the notes, streamed
with chat:
    if model is None:
        st.warning(f"**Retrieval-only mode:** {no_model}.  \nTo get answers, {resources.INSTALL}.", icon="ℹ️")
    shown = st.container()
    question = st.chat_input("Ask your notes… 问你的笔记")
    with shown:
        for turn in history:
            render.turn(turn, read_note, vote)
        if question:
            turn_id = st.session_state["turns"] = st.session_state.get("turns", 0) + 1
            with st.chat_message("user"):
                st.markdown(question)
                rewritten = st.empty()
            with st.chat_message("assistant"):
                streamed = st.empty()
                pieces: list[str] = []

                def show(piece: str) -> None:
                    pieces.append(piece)
                    streamed.markdown("".join(pieces) + " ▌")

                try:
                    with st.spinner("Searching your notes…"):
                        turn = reply_to(question, turn_id, show)
                except (RuntimeError, ValueError, OSError) as e:
                    streamed.empty()
                    st.error(
                        f"**Could not answer:** {e}  \nTry again, or choose another model in the sidebar."
                    )
                else:
                    streamed.empty()
                    history.append(turn)
                    with rewritten.container():
                        render.rewritten(turn)
                    render.reply(turn, read_note)
                    render.votes(turn, vote)

# Practice: a due card from the notes, the answer graded against them, the review saved (FSRS)
with practising:
    practice_tab.show(searcher, settings, model)

# Retrieval explorer: ranked passages with every retriever's score and rank; needs no language model
with explorer:
    query = st.text_input("Question to search for", key="explore", placeholder="e.g. ZeRO-3 和 ZeRO-2 的区别")
    if query:
        try:
            result = searcher.search(query, mode=mode, k=k)
        except (RuntimeError, ValueError, OSError) as e:
            st.error(f"Search failed: {e}")
        else:
            if result.reranker:
                st.info(f"Reranker off: {result.reranker}; showing the fused order.")
            st.caption(f"{result.mode} · {len(result.hits)} passages · {result.timings_ms['total']:.0f} ms")
            st.dataframe(render.score_rows(result.hits), hide_index=True)
            render.hits(result.hits, read_note, scores=True)
