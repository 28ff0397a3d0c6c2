"""`Searcher`: owns the loaded index, embedder and reranker; the one way CLI, app and eval search.

Opens the index (building it first, with progress, when there is none or it is unreadable), loads the
embedding model only when a query or new notes need vectors, and the reranker only for rerank mode; a
reranker that cannot load is reported once, and rerank mode then returns the fused order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

from assistant.settings import Settings
from ingest.load import note_paths
from retriever import index as index_
from retriever.dense import Embedder
from retriever.rerank import Reranker, load_reranker
from retriever.search import Result, search


def index_settings(settings: Settings) -> index_.IndexSettings:
    return index_.IndexSettings(
        embed_model=settings.embed_model,
        max_chars=settings.max_chars,
        overlap=settings.overlap,
        min_chars=settings.min_chars,
    )


class Searcher:
    def __init__(
        self,
        settings: Settings,
        *,
        warn: Callable[[str], None] | None = None,
        embedder: Embedder | None = None,
        build: bool = True,
    ) -> None:
        """Open the index; with `build`, an absent or unreadable index is built first."""
        self.settings = settings
        self.warn = warn or (lambda line: print(line, file=sys.stderr))
        self._embedder = embedder  # loaded on first need unless given
        self._reranker: tuple[Reranker | None, str] | None = None
        self.index = self._open() if build else index_.Index([], [], np.zeros((0, 1), np.float32))

    def _open(self) -> index_.Index:
        try:
            return index_.load(self.settings.index_dir)
        except index_.IndexUnusable as e:
            note_paths(self.settings.corpus)  # a missing notes folder is the error to report, not the index
            self.warn(f"mianjing: {e}; building it from {self.settings.corpus}")
        return self.ingest()[0]

    def ingest(self) -> tuple[index_.Index, index_.IngestReport]:
        """Update the index from the corpus; afterwards searches see the new notes."""
        self.index, report = index_.ingest(
            self.settings.corpus,
            self.settings.index_dir,
            index_settings(self.settings),
            embedder=lambda: self.embedder,
            warn=self.warn,
            progress=sys.stderr.isatty(),
        )
        return self.index, report

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(
                self.settings.embed_model, cache_dir=self.settings.cache, threads=self.settings.threads
            )
        return self._embedder

    @property
    def reranker(self) -> tuple[Reranker | None, str]:
        """(reranker, "") or (None, why not); the reason is said once, when first asked."""
        if self._reranker is None:
            self._reranker = load_reranker(self.settings.reranker)
            if self._reranker[0] is None:
                self.warn(f"mianjing: reranker off: {self._reranker[1]}; using the fused order")
        return self._reranker

    def search(self, query: str, *, mode: str | None = None, k: int | None = None) -> Result:
        mode = mode or self.settings.mode
        s = self.settings
        reranker, reason = self.reranker if mode == "rerank" else (None, "")
        return search(
            self.index,
            query,
            mode=mode,
            k=k or s.k,
            embedder=self.embedder if mode != "bm25" else None,
            reranker=reranker,
            reranker_reason=reason,
            candidates=s.candidates,
            rerank_candidates=s.rerank_candidates,
            rrf_k=s.rrf_k,
            unanswered_weight=s.unanswered_weight,
        )
