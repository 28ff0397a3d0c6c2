"""Run a dataset through the same `Searcher` the CLI uses and score each retrieval mode.

`retrieval_rows` searches once per (mode, answerable item) and keeps what each search found; `summarize`
turns those rows into the metrics of eval/metrics.py, overall, per `kind` and latency percentiles.

Does not: re-implement retrieval, or answer questions (eval/generation.py does).
"""

from __future__ import annotations

from collections.abc import Callable

from assistant.retrieval import Searcher
from eval import metrics
from eval.dataset import Item, Span, matches
from ingest.chunk import Chunk
from retriever.search import Result

METRICS = ("hit@1", "hit@5", "recall@5", "mrr@10", "ndcg@10", "context_precision@5", "context_recall@10")
SNIPPET = 240  # characters of passage text kept per hit in the rows
SHOWN = 3  # hits per row that keep their text (the report shows these beside the gold passage)


def retrieval_rows(
    searcher: Searcher,
    items: list[Item],
    modes: list[str],
    *,
    k: int = 10,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[dict]]:
    """mode -> one row per answerable item; `progress` is called after each search."""
    answerable = [item for item in items if item.answerable]
    rows: dict[str, list[dict]] = {}
    for mode in modes:
        rows[mode] = []
        if answerable:  # warm: models loaded, caches filled, so latencies are those of a warm searcher
            searcher.search(answerable[0].question, mode=mode, k=k)
        for item in answerable:
            result = searcher.search(item.question, mode=mode, k=k)
            rows[mode].append(_row(item, result, searcher.index.chunks, k))
            if progress:
                progress(f"{mode} {item.id}")
    return rows


def _row(item: Item, result: Result, chunks: list[Chunk], k: int) -> dict:
    hits = result.hits
    found = [matches(item, h.chunk.source, h.chunk.start, h.chunk.end) for h in hits]
    return {
        "id": item.id,
        "kind": item.kind,
        "question": item.question,
        **scores(found, len(item.spans)),
        "latency_ms": result.timings_ms["total"],
        "k": k,
        "reranker": result.reranker,
        "hits": [
            {
                "rank": n,
                "id": h.chunk.id,
                "heading": " > ".join(h.chunk.heading),
                "text": h.chunk.text[:SNIPPET] if n <= SHOWN else "",
                "relevant": bool(f),
            }
            for n, (h, f) in enumerate(zip(hits, found, strict=True), start=1)
        ],
        "gold": [_gold(span, n, found, chunks) for n, span in enumerate(item.spans)],
    }


def scores(found: list[frozenset[int]], n_evidence: int) -> dict[str, float]:
    """The METRICS of one ranked list of evidence matches."""
    return {
        "hit@1": metrics.hit_at(found, 1),
        "hit@5": metrics.hit_at(found, 5),
        "recall@5": metrics.recall_at(found, n_evidence, 5),
        "mrr@10": metrics.mrr_at(found, 10),
        "ndcg@10": metrics.ndcg_at(found, n_evidence, 10),
        "context_precision@5": metrics.context_precision_at(found, 5),
        "context_recall@10": metrics.recall_at(found, n_evidence, 10),
    }


def _gold(span: Span, n: int, found: list[frozenset[int]], chunks: list[Chunk]) -> dict:
    """The evidence quote, the passage that holds most of it, and the rank of the first hit on it."""
    best = max(
        (c for c in chunks if c.source == span.source and c.start < span.end and span.start < c.end),
        key=lambda c: min(c.end, span.end) - max(c.start, span.start),
        default=None,
    )
    return {
        "source": span.source,
        "quote": span.quote,
        "passage": best.id if best else "",
        "heading": " > ".join(best.heading) if best else "",
        "text": best.text[:SNIPPET] if best else "",
        "rank": next((r for r, f in enumerate(found, start=1) if n in f), None),
    }


def summarize(rows: dict[str, list[dict]]) -> dict[str, dict]:
    """mode -> {"overall", "by_kind", "latency_ms", and "reranker" when rerank mode fell back}."""
    report = {}
    for mode, mode_rows in rows.items():
        kinds = sorted({r["kind"] for r in mode_rows})
        report[mode] = {
            "overall": _scores(mode_rows),
            "by_kind": {kind: _scores([r for r in mode_rows if r["kind"] == kind]) for kind in kinds},
            "latency_ms": metrics.percentiles([r["latency_ms"] for r in mode_rows]),
        }
        fallback = next((r["reranker"] for r in mode_rows if r["reranker"]), "")
        if fallback:
            report[mode]["reranker"] = f"off ({fallback}): the fused order"
    return report


def _scores(rows: list[dict]) -> dict[str, float]:
    return {**{m: round(metrics.mean([r[m] for r in rows]), 4) for m in METRICS}, "n": len(rows)}
