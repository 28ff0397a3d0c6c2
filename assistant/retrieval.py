"""`Searcher`: owns the loaded index, embedder and reranker; the one way CLI, app and eval search.

Opens the index (building it first, with progress, when there is none or it is unreadable), loads the
embedding model only when a query or new notes need vectors, and the reranker only for rerank mode; a
reranker that cannot load is reported once, and rerank mode then returns the fused order.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from assistant.settings import Settings, index_settings, search_args
from ingest.load import note_paths
from retriever import index as index_
from retriever.dense import Embedder, SentenceEmbedder
from retriever.rerank import BUNDLED_RERANKER, CONFIG, WINDOWS, Reranker, WindowReranker, load_reranker
from retriever.search import Result, search

TUNED = "reranker"  # in the index folder: the reranker `mianjing tune` trained for these notes


def reranker_for(settings: Settings) -> str:
    """The reranker to load: the one tuned for this notes folder when the setting is a built-in one (the
    default window reranker, or the bundled adapter) and `mianjing tune` activated one, else the setting
    itself."""
    tuned = settings.index_dir / TUNED
    if settings.reranker in (WINDOWS, BUNDLED_RERANKER) and (tuned / CONFIG).is_file():
        return str(tuned)
    return settings.reranker


def progress_lines(warn: Callable[[str], None], every: float = 5.0) -> index_.Progress:
    """Embedding progress as a line through `warn` at most every `every` seconds, and at the end, with the
    time left at the pace so far (texts are embedded longest first, so the estimate errs long)."""
    began, last = time.monotonic(), [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every or done >= total:
            last[0] = now
            left = (now - began) / max(done, 1) * (total - done)
            eta = f", about {_duration(left)} left" if 0 < done < total and left >= 1 else ""
            warn(f"mianjing: embedded {done}/{total} passages{eta}")

    return report


def _duration(seconds: float) -> str:
    """3 s, 2 min, 1 h 5 min."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:.0f} min"


class Searcher:
    def __init__(
        self,
        settings: Settings,
        *,
        warn: Callable[[str], None] | None = None,
        embedder: Embedder | None = None,
        build: bool = True,
    ) -> None:
        """Open the index; with `build`, an absent or unreadable index is built first (progress said
        through `warn`)."""
        self.settings = settings
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self._embedder = embedder  # loaded on first need unless given
        self._reranker: tuple[Reranker | WindowReranker | None, str] | None = None
        self.index = self._open() if build else index_.Index([], [], np.zeros((0, 1), np.float32))

    def _open(self) -> index_.Index:
        """The index of these notes with these settings: built first when there is none or it is unreadable,
        rebuilt when it was made with another embedding model or chunking; stale notes are pointed out."""
        s = self.settings
        try:
            index = index_.load(s.index_dir)
        except index_.IndexUnusable as e:
            note_paths(s.corpus)  # a missing notes folder is the error to report, not the index
            # an unreadable one is said by ingest, which keeps it aside; only a missing one is said here
            if not (s.index_dir / index_.INDEX_FILE).exists():
                self.warn(f"mianjing: {e}; building it from {s.corpus}")
            return self.ingest()[0]
        index_.check_corpus(index, s.index_dir, s.corpus)
        if index_.settings_changed(index, index_settings(s)):
            self.warn(f"mianjing: the index in {s.index_dir} was built with other settings; rebuilding it")
            return self.ingest()[0]
        if changed := index_.stale(index, s.corpus):
            self.warn(f"mianjing: notes changed since the last ingest ({changed}): run `mianjing ingest`")
        return index

    def ingest(self, progress: index_.Progress | None = None) -> tuple[index_.Index, index_.IngestReport]:
        """Update the index from the corpus; afterwards searches see the new notes. Embedding progress goes
        to `progress`, by default a line through `warn` every few seconds."""
        self.index, report = index_.ingest(
            self.settings.corpus,
            self.settings.index_dir,
            index_settings(self.settings),
            embedder=lambda: self.embedder,
            warn=self.warn,
            progress=progress or progress_lines(self.warn),
        )
        return self.index, report

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings
            self._embedder = SentenceEmbedder(
                s.embed_model, cache_dir=s.cache, threads=s.threads, batch_size=s.embed_batch
            )
        return self._embedder

    @property
    def reranker(self) -> tuple[Reranker | WindowReranker | None, str]:
        """(reranker, "") or (None, why not); the reason is said once, when first asked."""
        if self._reranker is None:
            s = self.settings
            self._reranker = load_reranker(reranker_for(s), max_length=s.rerank_max_length, cache_dir=s.cache)
            if self._reranker[0] is None:
                self.warn(f"mianjing: reranker off: {self._reranker[1]}; using the fused order")
        return self._reranker

    def search(self, query: str, *, mode: str | None = None, k: int | None = None) -> Result:
        """Search with the settings' values; `mode` and `k` override them for this query."""
        s = replace(self.settings, mode=mode or self.settings.mode, k=k or self.settings.k)
        reranker, reason = self.reranker if s.mode == "rerank" else (None, "")
        embedder = self.embedder if s.mode != "bm25" else None
        return search(
            self.index, query, **search_args(s), embedder=embedder, reranker=reranker, reranker_reason=reason
        )
