"""The app's sidebar: retrieval choices (with the reranker's status and how to enable it beside the mode),
this browser session's chat (new chat, export to markdown, past chats to reopen), and the notes, index and
model status with re-indexing; folder paths are folded away.

`chat_id` ties a browser session to its saved chat: the id lives in the URL (`?chat=…`), so a reload
reopens the same chat from `<index>/chats/`.
Does not: answer or search (the chat view does), or delete chats.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from assistant.answer import ChatModel
from assistant.retrieval import Searcher
from assistant.settings import Settings
from ingest.load import CorpusError
from ui import chat, feedback, history, render, resources

ENABLE = (
    "To enable it: unset `MIANJING_RERANKER` (the built-in window reranker), set it to a CrossEncoder "
    "folder, or let `mianjing tune` train one on your notes."
)


def choices(searcher: Searcher, settings: Settings, modes: Sequence[str]) -> tuple[str, int, str]:
    """(retrieval mode, k, model name) as chosen; under the mode, whether the reranker can run."""
    usable, _ = resources.reranker_status(searcher, "hybrid")  # on disk only: loads nothing

    def named(mode: str) -> str:
        return f"{mode} (unavailable)" if mode == "rerank" and not usable else mode

    # a reranker that cannot load would give the fused order: start from hybrid, which says so plainly
    default = "hybrid" if settings.mode == "rerank" and not usable else settings.mode
    mode = st.selectbox(
        "Retrieval mode", modes, index=list(modes).index(default), key="mode", format_func=named
    )
    usable, said = resources.reranker_status(searcher, mode)
    if usable:
        st.caption(f"✅ Reranker: {said}")
    else:
        st.caption(f"⚪ **Rerank unavailable:** {said}. {ENABLE}")
    k = st.slider("Passages retrieved (k)", 1, 30, min(settings.k, 30), key="k")
    llm_name = st.selectbox("Model", resources.model_choices(settings), key="llm")
    return mode, k, llm_name


def chat_id(settings: Settings) -> str:
    """This session's chat id (from the URL, or a new one put there); on the first run with an id, its
    turns are loaded into `st.session_state` (`history`, `conversation`)."""
    wanted = st.query_params.get("chat", "")
    if not history.ID.fullmatch(wanted):
        wanted = history.new_id()
        st.query_params["chat"] = wanted
    if st.session_state.get("chat_id") != wanted:
        st.session_state["chat_id"] = wanted
        st.session_state.pop("chat_warning", None)
        try:
            turns = history.load(settings.index_dir, wanted)
        except history.ChatUnreadable as e:
            st.session_state["chat_warning"] = str(e)
            turns = []
        st.session_state["history"] = turns
        st.session_state["conversation"] = chat.conversation_of(turns, settings.history_turns)
    return wanted


def reopen(chat: str) -> None:
    st.query_params["chat"] = chat
    st.session_state.pop("pending", None)


def chats(index_dir: Path, current: str, turns: list[render.Turn], titles: dict[str, str]) -> None:
    """New chat, export, and the saved chats to reopen."""
    st.subheader("Chats", divider="gray")
    left, right = st.columns(2)
    left.button("New chat", icon="🧹", key="clear", on_click=reopen, args=(history.new_id(),))
    right.download_button(
        "Export",
        history.markdown(turns, titles),
        file_name=f"mianjing-chat-{current}.md",
        mime="text/markdown",
        icon="⬇️",
        key="export",
        disabled=not turns,
        on_click="ignore",
        help="this chat as markdown: each answer with its sources (file, heading, characters)",
    )
    for saved in history.saved(index_dir, k=8):
        if saved.id == current or not saved.turns:
            continue
        when = time.strftime("%m-%d %H:%M", time.localtime(saved.modified))
        st.button(
            f"{saved.first_question[:28]} · {when}",
            key=f"chat-{saved.id}",
            on_click=reopen,
            args=(saved.id,),
            type="tertiary",
            help=f"{saved.turns} questions",
        )


def status(
    searcher: Searcher, settings: Settings, model: ChatModel | None, no_model: str, llm_name: str
) -> None:
    """Model and notes status, re-index, and (folded) where things are kept."""
    st.subheader("Notes and model", divider="gray")
    st.caption(
        f"**Model:** ✅ {resources.describe(model)}" if model else f"**Model:** ⚪ not loaded: {no_model}"
    )
    if model is None and llm_name != resources.NO_LLM:
        st.button("Retry loading the model", icon="🔁", key="retry", on_click=resources.retry_model)
    found = resources.index_status(searcher)
    st.caption(
        f"**Notes:** {found['files']} files · {found['chunks']} passages · last ingest {found['built_at']}"
    )
    if st.button("Re-index changed notes", icon="🔄", key="reindex"):
        reindex(searcher)
    with st.expander("Folders", icon="📁"):
        st.caption(
            f"Notes `{settings.corpus}`  \nIndex `{found['folder']}`  \n"
            f"Chats `{Path(str(found['folder'])) / history.FOLDER}`  \n👍/👎 `{feedback.path(settings)}`"
        )


def reindex(searcher: Searcher) -> None:
    bar = st.progress(0.0, text="reading the notes…")

    def embedded(done: int, total: int) -> None:
        bar.progress(done / total, text=f"embedding {done}/{total}")

    try:
        report = resources.reindex(searcher, embedded)
    except (CorpusError, RuntimeError, ValueError, OSError) as e:
        st.error(f"Re-index failed: {e}")
        return
    bar.progress(1.0, text="done")
    if report is None:
        st.warning("Another tab is re-indexing; try again in a moment.")
    else:
        st.success(
            f"{report.files} files, {report.chunks} passages: +{len(report.added)} new, "
            f"{len(report.changed)} changed, -{len(report.deleted)} deleted in {report.seconds:.1f} s"
        )
