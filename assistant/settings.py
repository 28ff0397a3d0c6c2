"""One `Settings`: every default in one block, read from `MIANJING_*` variables once, CLI flags on top.

Stage functions never read the environment; the CLI builds a Settings and passes its values down.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from retriever.e5 import E5_NAME

BUNDLED_CORPUS = Path(__file__).resolve().parent.parent / "corpus"


@dataclass(frozen=True)
class Settings:
    corpus: Path = BUNDLED_CORPUS  # the notes folder (.md/.txt, recursive)
    index: Path | None = None  # index folder; None = <cache>/index/<corpus name>-<hash of its path>
    cache: Path = Path("~/.cache/mianjing").expanduser()  # converted models, indexes
    embed_model: str = E5_NAME  # a sentence-transformers name or folder; default: bundled e5-small
    reranker: str = "BAAI/bge-reranker-base"  # CrossEncoder name (HF cache) or folder; "" = none
    mode: str = "hybrid"  # bm25 | dense | hybrid | rerank
    k: int = 10  # hits to return
    candidates: int = 50  # per-retriever list length fed to fusion
    rerank_candidates: int = 20  # fused hits the cross-encoder reorders
    rrf_k: int = 60  # reciprocal rank fusion constant
    unanswered_weight: float = 0.5  # score factor for passages without an answer (question lists)
    max_chars: int = 800  # longest chunk before splitting at sentence ends
    overlap: int = 100  # characters repeated between the parts of a split chunk
    min_chars: int = 60  # shorter units join their neighbour
    threads: int = 0  # torch CPU threads; 0 = torch's default
    llm: str = "qwen2.5-coder-1.5b"  # bundled name, qwen2.5-coder-0.5b, a .gguf path, or openai:<model>
    llm_base_url: str = (
        ""  # OpenAI-compatible server for llm = openai:<model> (llama.cpp server, vLLM, Ollama)
    )
    llm_api_key: str = ""  # for that server, if it wants one
    n_ctx: int = 4096  # llama.cpp context tokens: system + a few turns of passages and answers
    n_batch: int = 512  # llama.cpp prompt batch
    temperature: float = 0.0  # greedy: answers repeatable, closest to the passages
    max_tokens: int = 256  # longest answer
    llm_threads: int = 0  # llama.cpp threads; 0 = the CPUs this process may use
    n_passages: int = 3  # passages in the prompt
    passage_chars: int = 250  # longest passage text in the prompt
    min_support: float = 0.4  # refuse an answer with less of its text found in the passages
    quote_above: float = 0.915  # e5 cosine of the best passage above which an unsupported answer quotes it

    @property
    def index_dir(self) -> Path:
        if self.index is not None:
            return self.index
        where = hashlib.sha256(str(self.corpus.resolve()).encode()).hexdigest()[:8]
        return self.cache / "index" / f"{self.corpus.resolve().name}-{where}"


ENV = {  # variable -> field
    "MIANJING_CORPUS": "corpus",
    "MIANJING_INDEX": "index",
    "MIANJING_CACHE": "cache",
    "MIANJING_EMBED_MODEL": "embed_model",
    "MIANJING_RERANKER": "reranker",
    "MIANJING_MODE": "mode",
    "MIANJING_K": "k",
    "MIANJING_THREADS": "threads",
    "MIANJING_LLM": "llm",
    "MIANJING_LLM_BASE_URL": "llm_base_url",
    "MIANJING_LLM_API_KEY": "llm_api_key",
    "MIANJING_LLM_THREADS": "llm_threads",
    "MIANJING_N_CTX": "n_ctx",
    "MIANJING_MIN_SUPPORT": "min_support",
    "MIANJING_QUOTE_ABOVE": "quote_above",
}


def from_env(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from MIANJING_* variables, then `overrides` (None values ignored)."""
    environ = dict(os.environ) if environ is None else environ
    types = {f.name: f.type for f in fields(Settings)}
    values: dict[str, object] = {}
    for var, name in ENV.items():
        if environ.get(var):
            values[name] = _convert(environ[var], types[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name in ("corpus", "index", "cache"):
        if isinstance(values.get(name), str | Path):
            values[name] = Path(values[name]).expanduser()  # type: ignore[arg-type]
    return replace(Settings(), **values)  # type: ignore[arg-type]


def _convert(raw: str, kind: object) -> object:
    kind = str(kind)
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    return raw


def generator_args(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for assistant.llm.Generator."""
    return {
        "model": settings.llm,
        "cache_dir": settings.cache,
        "base_url": settings.llm_base_url,
        "api_key": settings.llm_api_key,
        "n_ctx": settings.n_ctx,
        "n_batch": settings.n_batch,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "threads": settings.llm_threads,
    }
