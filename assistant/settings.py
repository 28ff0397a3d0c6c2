"""One `Settings`: every default in one block, read from `MIANJING_*` variables once, CLI flags on top.

Every field is a variable: `MIANJING_<FIELD>` (e.g. `max_tokens` -> `MIANJING_MAX_TOKENS`). The views the
stages take (`index_settings`, `search_args`, `generator_args`) are built here and nowhere else; stage
functions keep explicit keyword arguments whose defaults equal these (tests/test_settings.py checks it).

Does not: read the environment anywhere but `from_env`, or load anything.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from retriever.e5 import E5_NAME
from retriever.index import IndexSettings
from retriever.rerank import WINDOWS

BUNDLED_CORPUS = Path(__file__).resolve().parent.parent / "corpus"


# The least value of each numeric setting that has one (a max_chars of 0 would never end a chunk, an rrf_k
# of -1 would divide by zero).
LEAST: dict[str, float] = {
    **dict.fromkeys(
        (
            "k",
            "candidates",
            "rerank_candidates",
            "n_passages",
            "passage_chars",
            "english_passages",
            "part_passages",
        ),
        1,
    ),
    **dict.fromkeys(("embed_batch", "rerank_max_length", "max_chars", "n_ctx", "n_batch", "max_tokens"), 1),
    **dict.fromkeys(("overlap", "min_chars", "rrf_k", "threads", "llm_threads", "history_turns"), 0),
    **dict.fromkeys(("unanswered_weight", "temperature", "evidence_context", "new_per_day", "quote_thin"), 0),
}


@dataclass(frozen=True)
class Settings:
    corpus: Path = BUNDLED_CORPUS  # the notes folder (.md/.txt, recursive)
    index: Path | None = None  # index folder; None = <cache>/index/<corpus name>-<hash of its path>
    cache: Path = Path("~/.cache/mianjing").expanduser()  # converted models, indexes
    embed_model: str = E5_NAME  # a sentence-transformers name or folder; default: bundled e5-small
    embed_batch: int = 4  # passages per embedding batch (4 pads less than 16 on these notes)
    reranker: str = WINDOWS  # built in (each passage's closest window), or a CrossEncoder name or folder
    rerank_max_length: int = 512  # tokens of (question, passage) the cross-encoder reads
    mode: str = "hybrid"  # bm25 | dense | hybrid | rerank (hybrid, then reranked; README: not for answers)
    k: int = 10  # hits to return
    candidates: int = 50  # per-retriever list length fed to fusion
    rerank_candidates: int = 20  # fused hits the reranker reorders
    rerank_fusion: str = "pure"  # pure: the reranker's order; rrf: its rank fused with the first stage's
    rrf_k: int = 60  # reciprocal rank fusion constant
    unanswered_weight: float = 0.5  # score factor for passages without an answer (question lists)
    max_chars: int = 800  # longest chunk before splitting at sentence ends
    overlap: int = 100  # characters repeated between the parts of a split chunk
    min_chars: int = 60  # shorter units join their neighbour
    threads: int = 0  # torch CPU threads; 0 = torch's default
    llm: str = "qwen2.5-coder-1.5b"  # bundled name, qwen2.5-coder-0.5b, a .gguf path, or openai:<model>
    llm_base_url: str = ""  # OpenAI-compatible server for llm = openai:<model> (llama.cpp, vLLM, Ollama)
    llm_api_key: str = ""  # for that server, if it wants one
    llm_timeout: float = 120.0  # seconds to wait for a server's answer (connecting has its own 3 s)
    n_ctx: int = 4096  # llama.cpp context tokens: system + a few turns of passages and answers
    n_batch: int = 512  # llama.cpp prompt batch
    temperature: float = 0.0  # greedy: answers repeatable, closest to the passages
    seed: int = 0  # sampling seed (matters only with temperature > 0)
    max_tokens: int = 256  # longest answer
    llm_threads: int = 0  # llama.cpp threads; 0 = the CPUs this process may use
    n_passages: int = 3  # passages in the prompt
    english_passages: int = 2  # at most this many for an English question over notes in Chinese
    part_passages: int = 4  # passages for a question of several parts ("X 是什么？怎么缓解？")
    answer_style: str = "evidence"  # evidence: restate each passage's best atoms; window: the earlier prompt
    evidence_context: int = 150  # answer_style evidence: characters of the note kept around the best atom
    passage_chars: int = 250  # answer_style window: longest passage text in the prompt
    min_support: float = 0.4  # refuse an answer with less of its text found in the passages
    unknown_terms: float = 0.5  # refuse when at least this share of the question's terms is not in the notes
    quote_above: float = 0.905  # e5 cosine of the best passage above which an unsupported answer quotes it
    quote_thin: float = 0.5  # a Chinese answer keeping less of evidence [1]'s words and length quotes it
    history_turns: int = 3  # earlier turns of a conversation sent with a follow-up
    translate: str = "auto"  # auto: an English question over Chinese notes is searched in Chinese; off: never
    answered_above: float = 0.92  # e5 cosine of a question and its best passage window: answered
    new_per_day: int = 20  # new practice cards introduced per day (mianjing practice)
    grader: str = "overlap"  # practice grading: overlap (notes' sentences, overlap, e5) or model (the LLM)

    def __post_init__(self) -> None:
        for name, least in LEAST.items():
            value = getattr(self, name)
            if not value >= least:  # `not >=` also refuses NaN
                raise ValueError(f"{name} must be at least {least} (got {value})")
        if not self.llm_timeout > 0:
            raise ValueError(f"llm_timeout must be more than 0 seconds (got {self.llm_timeout})")
        if self.answer_style not in ("evidence", "window"):
            raise ValueError(f"answer_style must be evidence or window (got {self.answer_style!r})")
        if self.translate not in ("auto", "off"):
            raise ValueError(f"translate must be auto or off (got {self.translate!r})")
        if self.grader not in ("overlap", "model"):
            raise ValueError(f"grader must be overlap or model (got {self.grader!r})")

    @property
    def index_dir(self) -> Path:
        if self.index is not None:
            return self.index
        where = hashlib.sha256(str(self.corpus.resolve()).encode()).hexdigest()[:8]
        return self.cache / "index" / f"{self.corpus.resolve().name}-{where}"


ENV = {f"MIANJING_{f.name.upper()}": f.name for f in fields(Settings)}  # variable -> field
PATHS = ("corpus", "index", "cache")


def from_env(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from MIANJING_* variables, then `overrides` (None values ignored).

    A value that does not parse is a ValueError naming the variable: `MIANJING_K=abc: not an integer`."""
    environ = dict(os.environ) if environ is None else environ
    types = {f.name: str(f.type) for f in fields(Settings)}
    values: dict[str, Any] = {}
    for var, name in ENV.items():
        if environ.get(var):
            values[name] = _convert(var, environ[var], types[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name in PATHS:
        if isinstance(values.get(name), str | Path):
            values[name] = Path(values[name]).expanduser()
    return replace(Settings(), **values)


def _convert(var: str, raw: str, kind: str) -> object:
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(
            f"{var}={raw}: not {'an integer' if kind.startswith('int') else 'a number'}"
        ) from None
    return raw


def index_settings(settings: Settings) -> IndexSettings:
    """What the index records and rebuilds on: the embedding model and the chunking."""
    return IndexSettings(
        embed_model=settings.embed_model,
        max_chars=settings.max_chars,
        overlap=settings.overlap,
        min_chars=settings.min_chars,
    )


def search_args(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for retriever.search.search, besides the index, query, models."""
    return {
        "mode": settings.mode,
        "k": settings.k,
        "candidates": settings.candidates,
        "rerank_candidates": settings.rerank_candidates,
        "rerank_fusion": settings.rerank_fusion,
        "rrf_k": settings.rrf_k,
        "unanswered_weight": settings.unanswered_weight,
    }


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
        "seed": settings.seed,
        "timeout": settings.llm_timeout,
    }
