"""The persistent index: chunks, their BM25 tokens and vectors, and a manifest, in one folder.

Layout of the index folder:
- `index.npz`: the whole index in one file (vectors, the chunks' windows and their vectors, and a JSON blob
  of manifest, chunks and tokens), written under a temporary name and renamed, so an interrupted ingest
  leaves the previous index whole;
- `manifest.json`: a readable copy of the manifest (settings, a sha256 per note file, counts, build time).

`ingest` re-chunks and re-embeds only new or changed files and drops deleted ones; an index built with other
settings (embedding model, chunk sizes, tokenizer version), or with another model behind the same name
(`dense.model_identity`), is rebuilt from scratch, never mixed.

Two ingests of one index folder take turns (a lock file beside it, `.<folder>.ingest.lock`): the second
waits, says so, then updates from what the first saved, so no change is lost. An index built from another
notes folder is never served or overwritten; an unreadable one is kept aside (`index.npz.bad-<time>`) and
rebuilt; temporary files left by a killed save are removed by the next ingest.

Each chunk is embedded whole and, cut into windows of whole sentences, list items or tables of up to
`WINDOW` characters (`ingest.chunk.windows`; a chunk without an answer is one window), window by window
under its heading path: a question about one item of a long passage is as close to that item as to a short
passage about it, where the whole passage's vector dilutes it (`Index.closest_windows`, the default
reranker).

Does not: watch the notes (`stale` says when they changed since the last ingest).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from ingest.chunk import VERSION as CHUNKER
from ingest.chunk import WINDOW, Chunk, chunk_note, windows
from ingest.load import CorpusError, Note, load_notes, note_paths
from retriever.bm25 import BM25
from retriever.dense import Embedder, VectorIndex, model_identity
from retriever.tokenize import cjk_count, tokenize

FORMAT = 1
TOKENIZER = "jieba-terms-2"  # bump when tokenize() changes: stored tokens are then stale
INDEX_FILE = "index.npz"
# Passages embedded between two progress reports: 16 of 800 characters take ~5 s on 2 CPU cores (64 took
# 20-30 s between two lines). A multiple of the model's batch (4), so the batches are the same as in one call.
EMBED_GROUP = 16
Progress = Callable[[int, int], None]  # (passages embedded, passages to embed)


class IndexUnusable(Exception):
    """The index folder holds no usable index (missing, corrupted, half-written)."""


@dataclass(frozen=True)
class IndexSettings:
    """What an index is built with; a change of any field rebuilds it (assistant.settings builds this)."""

    embed_model: str
    max_chars: int
    overlap: int
    min_chars: int
    tokenizer: str = TOKENIZER
    chunker: str = CHUNKER
    window_chars: int = WINDOW  # an index built before windows has no such field: rebuilt


@dataclass(frozen=True)
class Windows:
    """The chunks' windows, in chunk order: row r is the span `spans[r]` (in the chunk's text) of the chunk
    at position `owner[r]`, embedded as `vectors[r]`."""

    owner: np.ndarray  # int, (n,)
    spans: np.ndarray  # int, (n, 2)
    vectors: np.ndarray  # float32, (n, dim)

    @classmethod
    def of(cls, per_chunk: list[tuple[np.ndarray, np.ndarray]], dim: int) -> Windows:
        """From (spans, vectors) per chunk, in chunk order."""
        if not per_chunk:
            return cls(np.zeros(0, np.int32), np.zeros((0, 2), np.int32), np.zeros((0, dim), np.float32))
        owner = np.concatenate([np.full(len(sp), i, np.int32) for i, (sp, _) in enumerate(per_chunk)])
        spans = np.concatenate([sp for sp, _ in per_chunk]).astype(np.int32).reshape(-1, 2)
        return cls(owner, spans, np.concatenate([v for _, v in per_chunk]).astype(np.float32))

    def of_chunk(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """(spans, vectors) of the chunk at `position` (rows are in chunk order: a slice)."""
        start, end = np.searchsorted(self.owner, [position, position + 1])
        return self.spans[start:end], self.vectors[start:end]


@dataclass
class Index:
    """Chunks with their tokens and vectors, aligned by position."""

    chunks: list[Chunk]
    tokens: list[list[str]]
    vectors: np.ndarray
    manifest: dict = field(default_factory=dict)
    windows: Windows | None = None  # None: an index built without them (rebuilt before it is searched)

    @cached_property
    def bm25(self) -> BM25:
        return BM25(self.tokens)

    @cached_property
    def vector_index(self) -> VectorIndex:
        return VectorIndex(self.vectors)

    @cached_property
    def vocabulary(self) -> set[str]:
        """Every BM25 token in the index: what the notes mention at all."""
        return {t for tokens in self.tokens for t in tokens}

    @cached_property
    def cjk_share(self) -> float:
        """Share of CJK characters among the letters of the notes (0 for none): their main language."""
        letters = cjk = 0
        for chunk in self.chunks:
            letters += sum(c.isalpha() for c in chunk.text)
            cjk += cjk_count(chunk.text)
        return cjk / letters if letters else 0.0

    @cached_property
    def positions(self) -> dict[str, int]:
        """Chunk id -> its position."""
        return {c.id: i for i, c in enumerate(self.chunks)}

    def _held_windows(self) -> Windows:
        if self.windows is None or (self.chunks and not len(self.windows.owner)):
            raise ValueError("this index holds no windows: run `mianjing ingest` to rebuild it")
        return self.windows

    def windows_of(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
        """(spans, vectors) of the windows of `chunk`, one of this index's chunks."""
        return self._held_windows().of_chunk(self.positions[chunk.id])

    def closest_windows(self, query: np.ndarray, positions: list[int]) -> np.ndarray:
        """For each chunk position, the best cosine of the query vector and one of that chunk's windows."""
        windows = self._held_windows()
        if query.size != windows.vectors.shape[1]:
            raise ValueError(
                "the index's window vectors are of another embedding model: run `mianjing ingest`"
            )
        wanted = np.asarray(positions, dtype=np.int64)
        rows = np.flatnonzero(np.isin(windows.owner, wanted))  # only the candidates' windows: a small
        # product stays on one thread (over all windows, BLAS's threads kept spinning and slowed the next
        # query's embedding by ~20 ms on 2 cores)
        best = np.full(len(self.chunks), -np.inf, dtype=np.float32)
        np.maximum.at(best, windows.owner[rows], windows.vectors[rows] @ query.astype(np.float32))
        return best[wanted]

    def mentions(self, term: str) -> bool:
        """Do the notes mention `term`, as BM25 sees it: its whole token, or every one of its parts
        (`ZeRO-3` -> `zero3`, or both `zero` and `3`). A term that tokenizes to nothing counts as mentioned.
        """
        return mentioned(term, self.vocabulary)


def mentioned(term: str, vocabulary: Collection[str]) -> bool:
    """Is `term` among these BM25 tokens: its whole token, or each of its parts (see `Index.mentions`)."""
    whole, *parts = tokenize(term) or [""]
    return not whole or whole in vocabulary or bool(parts) and all(t in vocabulary for t in parts)


@dataclass(frozen=True)
class IngestReport:
    files: int
    chunks: int
    added: list[str]
    changed: list[str]
    deleted: list[str]
    unchanged: int
    rebuilt: str  # why everything was rebuilt ("" when incremental)
    seconds: float


def _folder(index_dir: Path) -> None:
    """ValueError when the index folder named is a file (nothing to read, build or rebuild there)."""
    if index_dir.exists() and not index_dir.is_dir():
        raise ValueError(f"index folder {index_dir} is a file: pass a folder (--index)")


def load(index_dir: Path) -> Index:
    """Read the index; IndexUnusable with a one-line reason when there is none or it is broken (ValueError
    when `index_dir` is a file)."""
    _folder(index_dir)
    path = index_dir / INDEX_FILE
    if not path.is_file():
        raise IndexUnusable(f"no index in {index_dir}")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            vectors = np.array(data["vectors"], dtype=np.float32)
            windows = None
            if "window_vectors" in data.files or "window_chars" in meta["manifest"].get("settings", {}):
                windows = Windows(
                    np.array(data["window_owner"], dtype=np.int32),
                    np.array(data["window_spans"], dtype=np.int32),
                    np.array(data["window_vectors"], dtype=np.float32),
                )
        chunks = [Chunk(**{**c, "heading": tuple(c["heading"])}) for c in meta["chunks"]]
        if meta["manifest"]["format"] != FORMAT or not len(chunks) == len(vectors) == len(meta["tokens"]):
            raise ValueError("inconsistent contents")
        if windows is not None and not _windows_fit(windows, len(chunks)):
            raise ValueError("inconsistent windows")
    except Exception as e:  # noqa: BLE001 - any damage means the same: rebuild
        raise IndexUnusable(f"index in {index_dir} is unreadable ({type(e).__name__}: {e})") from e
    return Index(chunks, meta["tokens"], vectors, meta["manifest"], windows)


def _windows_fit(windows: Windows, n_chunks: int) -> bool:
    """Every chunk has a window, each window one chunk, rows aligned and in chunk order."""
    n = len(windows.owner)
    aligned = (
        windows.spans.shape == (n, 2)
        and len(windows.vectors) == n
        and bool(np.all(np.diff(windows.owner) >= 0))
    )
    return aligned and (n_chunks == 0 or np.array_equal(np.unique(windows.owner), np.arange(n_chunks)))


def save(index: Index, index_dir: Path) -> None:
    """Write index.npz and manifest.json, each to a temporary name first, then rename."""
    index_dir.mkdir(parents=True, exist_ok=True)
    meta = {"manifest": index.manifest, "chunks": [asdict(c) for c in index.chunks], "tokens": index.tokens}
    blob = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    w = index.windows or Windows.of([], index.vectors.shape[1] if index.vectors.ndim == 2 else 1)
    _atomic_write(
        index_dir / INDEX_FILE,
        lambda f: np.savez(
            f,
            vectors=index.vectors,
            meta=blob,
            window_owner=w.owner,
            window_spans=w.spans,
            window_vectors=w.vectors,
        ),
    )
    text = json.dumps(index.manifest, ensure_ascii=False, indent=1).encode("utf-8")
    _atomic_write(index_dir / "manifest.json", lambda f: f.write(text))


def _atomic_write(path: Path, write: Callable) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ingest(
    corpus: Path,
    index_dir: Path,
    settings: IndexSettings,
    *,
    embedder: Callable[[], Embedder],
    warn: Callable[[str], None] = print,
    progress: Progress | None = None,
) -> tuple[Index, IngestReport]:
    """Bring the index in `index_dir` up to date with the notes in `corpus`.

    `embedder` is called only when something must be embedded, so an unchanged corpus loads no model;
    `progress(done, total)` is called after each group of passages embedded.
    """
    _folder(index_dir)
    made = not index_dir.exists()
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(index_dir.parent / f".{index_dir.name}.ingest.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        warn(f"mianjing: another ingest of {index_dir} is running; waiting for it to finish")
        lock.acquire()
    try:
        for name in (INDEX_FILE, "manifest.json"):  # a killed save's; not practice.json's, saved meanwhile
            for leftover in index_dir.glob(f".{name}.*.tmp"):
                leftover.unlink(missing_ok=True)
        return _ingest(corpus, index_dir, settings, embedder=embedder, warn=warn, progress=progress)
    except BaseException:
        if made and not any(index_dir.iterdir()):  # a failed first ingest (no notes) leaves no empty folder
            index_dir.rmdir()
        raise
    finally:
        lock.release()


def _ingest(
    corpus: Path,
    index_dir: Path,
    settings: IndexSettings,
    *,
    embedder: Callable[[], Embedder],
    warn: Callable[[str], None],
    progress: Progress | None,
) -> tuple[Index, IngestReport]:
    began = time.perf_counter()
    notes = load_notes(corpus, warn=warn)
    if not notes:
        raise CorpusError(f"no readable .md or .txt notes in {corpus}")
    old, rebuilt = _reusable(index_dir, corpus, settings, warn)
    old_files = old.manifest["files"] if old else {}
    keep = {n.source for n in notes if old_files.get(n.source, {}).get("sha256") == n.sha256}
    fresh = [n for n in notes if n.source not in keep]
    chunks, tokens, vectors, per_chunk = _kept(old, keep) if old else ([], [], [], [])
    new_chunks = [c for note in fresh for c in chunk_note(note, **_chunk_args(settings))]
    if new_chunks:
        # a passage without an answer (a question list) is one window, itself: nothing in it answers
        spans = [
            windows(c.text, settings.window_chars) if c.has_answer else [(0, len(c.text))] for c in new_chunks
        ]
        # a window that is its whole chunk (a short passage, a question list) has the chunk's vector already
        others = [
            c.indexed_part(a, b)
            for c, of_c in zip(new_chunks, spans, strict=True)
            for a, b in of_c
            if (a, b) != (0, len(c.text))
        ]
        embedded = embed(embedder(), [c.indexed for c in new_chunks] + others, progress)
        new_vectors, rest = embedded[: len(new_chunks)], iter(embedded[len(new_chunks) :])
        chunks, tokens = chunks + new_chunks, tokens + [tokenize(c.indexed) for c in new_chunks]
        vectors = vectors + [new_vectors]
        per_chunk += [  # windows() gives every chunk at least one
            (np.array(of_c, np.int32), np.stack([v if sp == (0, len(c.text)) else next(rest) for sp in of_c]))
            for c, v, of_c in zip(new_chunks, new_vectors, spans, strict=True)
        ]
    deleted = sorted(set(old_files) - {n.source for n in notes})
    report = IngestReport(
        files=len(notes),
        chunks=len(chunks),
        added=sorted(n.source for n in fresh if n.source not in old_files),
        changed=sorted(n.source for n in fresh if n.source in old_files),
        deleted=deleted,
        unchanged=len(keep),
        rebuilt=rebuilt,
        seconds=0.0,
    )
    if old and not fresh and not deleted:
        if stale(old, corpus):  # touched, not changed: note the check, so search stops pointing at them
            old.manifest["built_ts"] = time.time()
            save(old, index_dir)
        return old, _timed(report, began)
    order = sorted(range(len(chunks)), key=lambda i: (chunks[i].source, chunks[i].start))
    all_vectors = np.concatenate(vectors)[order] if vectors else np.zeros((0, 1), np.float32)
    index = Index(
        [chunks[i] for i in order],
        [tokens[i] for i in order],
        all_vectors,
        _manifest(corpus, settings, notes, chunks),
        Windows.of([per_chunk[i] for i in order], all_vectors.shape[1]),
    )
    save(index, index_dir)
    return index, _timed(report, began)


def embed(model: Embedder, texts: list[str], progress: Progress | None = None) -> np.ndarray:
    """Vectors of `texts` in their order, embedded longest first in groups of EMBED_GROUP (so the model's
    own batches pad as little as in one call), reporting progress after each group."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    parts = []
    for start in range(0, len(order), EMBED_GROUP):
        parts.append(model.passages([texts[i] for i in order[start : start + EMBED_GROUP]]))
        if progress:
            progress(min(start + EMBED_GROUP, len(texts)), len(texts))
    vectors = np.concatenate(parts) if parts else model.passages([])
    return vectors[np.argsort(order)] if len(order) else vectors


def aside_name(path: Path) -> Path:
    """A name to keep a bad file aside under, `<name>.bad-<time>`, that no earlier one has (two in one
    second get a number)."""
    stem = f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}"
    aside, n = path.with_name(stem), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{stem}-{n}")
    return aside


def _reusable(
    index_dir: Path, corpus: Path, settings: IndexSettings, warn: Callable[[str], None]
) -> tuple[Index | None, str]:
    """The old index when it can be updated in place, else (None, why it is rebuilt)."""
    if not (index_dir / INDEX_FILE).exists():
        return None, "new index"
    try:
        old = load(index_dir)
    except IndexUnusable as e:
        aside = aside_name(index_dir / INDEX_FILE)
        os.replace(index_dir / INDEX_FILE, aside)
        warn(f"mianjing: {e}; kept it aside as {aside.name} and rebuilding it")
        return None, "unreadable index"
    check_corpus(old, index_dir, corpus)
    if changed := settings_changed(old, settings):
        return None, changed
    return old, ""


def check_corpus(index: Index, index_dir: Path, corpus: Path) -> None:
    """ValueError when the index was built from another notes folder (it is neither served nor rebuilt)."""
    built_from = index.manifest.get("corpus")
    if built_from and built_from != str(corpus.resolve()):
        raise ValueError(
            f"{index_dir} holds the index of {built_from}, not of {corpus}: pass another --index, "
            "or delete that folder to rebuild it"
        )


def settings_changed(index: Index, settings: IndexSettings) -> str:
    """Why the index cannot serve these settings: "settings changed" (embedding model, chunking,
    tokenizer), "embedding model changed" (the same name, other files or version); "" when it can."""
    if index.manifest.get("settings") != asdict(settings):
        return "settings changed"
    built_with = index.manifest.get("embed_identity", "")
    now = model_identity(settings.embed_model)
    return "embedding model changed" if built_with and now and built_with != now else ""


def stale(index: Index, corpus: Path) -> str:
    """What changed in the notes since the index was built, in a few words ("" when nothing did):
    files added or removed, or modified after the build (by time stamp; ingest compares contents)."""
    built = index.manifest.get("built_ts", 0.0)
    on_disk = {p.relative_to(corpus).as_posix(): p for p in note_paths(corpus)}
    indexed = set(index.manifest.get("files", {})) | set(index.manifest.get("skipped", []))
    added, removed = set(on_disk) - indexed, indexed - set(on_disk)
    newer = [s for s in set(on_disk) & indexed if _mtime(on_disk[s]) > built]
    parts = [
        f"{len(x)} {what}" for x, what in ((added, "new"), (newer, "changed"), (removed, "deleted")) if x
    ]
    return ", ".join(parts)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _kept(
    old: Index, keep: set[str]
) -> tuple[list[Chunk], list[list[str]], list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """The chunks of unchanged files, with their tokens, vectors and windows (an old index is only updated
    in place when it has windows: `settings_changed`)."""
    rows = [i for i, c in enumerate(old.chunks) if c.source in keep]
    assert old.windows is not None
    per_chunk = [old.windows.of_chunk(i) for i in rows]
    return [old.chunks[i] for i in rows], [old.tokens[i] for i in rows], [old.vectors[rows]], per_chunk


def _chunk_args(settings: IndexSettings) -> dict[str, int]:
    return {"max_chars": settings.max_chars, "overlap": settings.overlap, "min_chars": settings.min_chars}


def _manifest(corpus: Path, settings: IndexSettings, notes: list[Note], chunks: list[Chunk]) -> dict:
    per_file: dict[str, int] = {}
    for c in chunks:
        per_file[c.source] = per_file.get(c.source, 0) + 1
    return {
        "format": FORMAT,
        "settings": asdict(settings),
        "embed_identity": model_identity(settings.embed_model),  # settings_changed compares it
        "corpus": str(corpus.resolve()),
        "files": {
            n.source: {"sha256": n.sha256, "chars": len(n.text), "chunks": per_file.get(n.source, 0)}
            for n in notes
        },
        "skipped": sorted(
            {p.relative_to(corpus).as_posix() for p in note_paths(corpus)} - {n.source for n in notes}
        ),  # unreadable when built: not "new" to `stale`
        "chunks": len(chunks),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "built_ts": time.time(),  # compared with the notes' modification times (`stale`)
    }


def _timed(report: IngestReport, began: float) -> IngestReport:
    return IngestReport(**{**asdict(report), "seconds": round(time.perf_counter() - began, 3)})
