"""The notes browser: a file (by its title) -> a section of it -> its passages, each rendered as the note
renders it (markdown made safe by `ui.markup`), with "ask about this" (asks the passage's own question, or
what its heading covers) and, reached from a cited source's "open in the note", that passage open and
marked.

The choices live in `st.session_state` (`browse_file`, `browse_section`, `browse_target`), so `open_at`
can set them from any view before the browser is drawn.
Does not: read note files (it shows the indexed passages, which are the notes' text verbatim).
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from ingest.chunk import Chunk
from ui import notes, render

START = "(before the first section)"


def open_at(chunk: Chunk, chunks: list[Chunk]) -> None:
    """Choose `chunk`'s file and section and mark it (a button callback: runs before the next run)."""
    own = notes.by_source(c for c in chunks if c.source == chunk.source).get(chunk.source, [chunk])
    st.session_state["browse_file"] = chunk.source
    st.session_state["browse_section"] = notes.section_of(chunk, own) or START
    st.session_state["browse_target"] = chunk.id


def show(chunks: list[Chunk], shelf: render.Shelf, ask: Callable[[str], None]) -> None:
    files = notes.by_source(chunks)
    if not files:
        st.info("No passages indexed yet: add notes to the folder and re-index (sidebar).")
        return
    if st.session_state.get("browse_file") not in files:
        st.session_state["browse_file"] = next(iter(files))
    source = st.selectbox("Note", list(files), key="browse_file", format_func=shelf.name)
    grouped = {name or START: part for name, part in notes.sections(files[source]).items()}
    if st.session_state.get("browse_section") not in grouped:
        st.session_state["browse_section"] = next(iter(grouped))
    section = st.selectbox(
        "Section", list(grouped), key="browse_section", format_func=lambda s: f"{s} ({len(grouped[s])})"
    )
    st.caption(f"`{source}` · {len(files[source])} passages in {len(grouped)} sections")
    target = st.session_state.get("browse_target")
    for chunk in grouped[section]:
        opened = chunk.id == target
        with st.expander(_label(chunk, section), expanded=opened, icon="📌" if opened else None):
            if opened:
                st.caption("📌 the passage you opened from a source")
            st.markdown(render.flat(chunk.text))
            st.caption(f"characters {chunk.start}–{chunk.end} · id `{chunk.id}`")
            question = notes.question_of(chunk)
            st.button(
                "Ask about this",
                icon="💬",
                key=f"ask-{chunk.id}",
                help=question,
                on_click=ask,
                args=(question,),
            )


def _label(chunk: Chunk, section: str) -> str:
    """The passage's headings below its section, else its first line."""
    at = chunk.heading.index(section) + 1 if section in chunk.heading else 1
    return " › ".join(chunk.heading[at:]) or notes.title(chunk.text) or section
