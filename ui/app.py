"""The mianjing chat app: ask your notes, read streamed answers with linked sources, see why passages
were found, practise, browse the notes. Start it with `mianjing ui`; it reads the same MIANJING_* settings
as the CLI.

Reads top to bottom: settings -> searcher and model (loaded once, shared by tabs) -> sidebar (retrieval
choices with the reranker's status, chats, index and model) -> this browser session's chat (kept in
`<index>/chats/<id>.json`, the id in the URL) -> the view chosen at the top: chat (first screen or history,
then `st.chat_input` at the page's top level so it stays pinned), notes browser, retrieval explorer,
practice. Without a language model the chat shows the passages found instead.

Does not: retrieve or answer in any way of its own (it calls `assistant`, as the CLI does), or send
anything anywhere (`mianjing ui` binds to localhost and turns Streamlit's usage statistics off).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from dataclasses import replace  # noqa: E402

import streamlit as st  # noqa: E402

from assistant.settings import from_env  # noqa: E402
from ingest.chunk import Chunk  # noqa: E402
from ingest.load import CorpusError  # noqa: E402
from retriever.search import MODES  # noqa: E402
from ui import browser, chat, explorer, feedback, history, notes, practice_tab, render, resources  # noqa: E402
from ui import sidebar as side  # noqa: E402

st.set_page_config(page_title="mianjing 面经", page_icon="📒", layout="wide")
settings = from_env()
VIEWS = ("💬 Chat", "📚 Notes", "🔎 Explorer", "🎯 Practice")
CHAT, NOTES, EXPLORER, PRACTICE = VIEWS

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
overview = notes.overview(searcher.index.chunks)


def ask(question: str) -> None:
    """Ask `question` in the chat as if typed (a button callback)."""
    st.session_state["ask"] = question
    st.session_state["view"] = CHAT


def open_note(chunk: Chunk) -> None:
    browser.open_at(chunk, searcher.index.chunks)
    st.session_state["view"] = NOTES


shelf = render.Shelf(lambda source: resources.read_note(settings.corpus, source), overview.titles, open_note)

# Sidebar: retrieval mode (with the reranker's status beside it), k, model
with st.sidebar:
    st.title("📒 mianjing 面经")
    mode, k, llm_name = side.choices(searcher, settings, MODES)
settings = replace(settings, mode=mode, k=k, llm=llm_name)
model, no_model = resources.load_model(settings)

# This browser session's chat: its id in the URL, its turns on disk, so a reload keeps it
chat_id = side.chat_id(settings)
turns: list[render.Turn] = st.session_state["history"]
conversation = st.session_state["conversation"]


def vote(turn: render.Turn) -> None:
    choice = st.session_state.get(render.vote_key(turn))
    if choice is not None and turn.answer is not None:
        comment = st.session_state.get(render.comment_key(turn), "")
        line = feedback.record(turn.answer, feedback.VOTES[choice], settings, comment=comment)
        feedback.append(feedback.path(settings), line)


if chat.finish_stopped(turns):
    history.save(settings.index_dir, chat_id, turns)

chats_box = st.sidebar.container()  # filled last: the export includes this run's answer
with st.sidebar:
    side.status(searcher, settings, model, no_model, llm_name)

view = st.radio("View", VIEWS, key="view", horizontal=True, label_visibility="collapsed")
if view == CHAT:
    if model is None:
        st.warning(f"**Retrieval-only mode:** {no_model}.  \nTo get answers, {resources.INSTALL}.", icon="ℹ️")
    if said := st.session_state.get("chat_warning"):
        st.warning(said, icon="⚠️")
    typed = st.chat_input("Ask your notes… 问你的笔记")
    question = typed or st.session_state.pop("ask", None)
    if not turns and not question:
        chat.welcome(overview, ask)
    for turn in turns:
        render.turn(turn, shelf, vote)
    if question:
        turn_id = max((t.id for t in turns), default=0) + 1
        answered = chat.respond(
            question,
            turn_id=turn_id,
            conversation=conversation,
            searcher=searcher,
            model=model,
            settings=settings,
            shelf=shelf,
            on_vote=vote,
        )
        if answered is not None:
            turns.append(answered)
            history.save(settings.index_dir, chat_id, turns)
elif view == NOTES:
    browser.show(searcher.index.chunks, shelf, ask)
elif view == EXPLORER:
    explorer.show(searcher, mode, k, shelf)
else:
    practice_tab.show(searcher, settings, chat.Staged(model, lambda _: None) if model else None)

with chats_box:
    side.chats(settings.index_dir, chat_id, turns, overview.titles)
