"""Run a dataset through the same `Searcher` the CLI uses and score each retrieval mode.

Does not: re-implement retrieval, or judge answers (that is the generation eval's job).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from assistant.retrieval import Searcher
from eval import metrics
from eval.dataset import Item, relevant


def retrieval_report(
    searcher: Searcher,
    items: list[Item],
    modes: list[str],
    *,
    k: int = 10,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """mode -> {"overall": {hit@1, hit@5, mrr@10, n}, "by_kind": {...}, "latency_ms": {p50, p95}}."""
    answerable = [item for item in items if item.answerable]
    report = {}
    for mode in modes:
        rows, latencies = [], []
        for item in answerable:
            result = searcher.search(item.question, mode=mode, k=k)
            latencies.append(result.timings_ms["total"])
            flags = [relevant(item, h.chunk.source, h.chunk.start, h.chunk.end) for h in result.hits]
            rows.append((item.kind, flags))
        if progress:
            progress(mode)
        report[mode] = {
            "overall": _scores([f for _, f in rows]),
            "by_kind": {
                kind: _scores([f for kd, f in rows if kd == kind]) for kind in sorted({k for k, _ in rows})
            },
            "latency_ms": _percentiles(latencies),
        }
    return report


def _scores(flag_lists: list[list[bool]]) -> dict[str, float]:
    return {
        "hit@1": round(metrics.mean([metrics.hit_at(f, 1) for f in flag_lists]), 4),
        "hit@5": round(metrics.mean([metrics.hit_at(f, 5) for f in flag_lists]), 4),
        "mrr@10": round(metrics.mean([metrics.mrr_at(f, 10) for f in flag_lists]), 4),
        "n": len(flag_lists),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": values[0] if values else 0.0, "p95": values[0] if values else 0.0}
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return {"p50": round(statistics.median(values), 2), "p95": round(cuts[18], 2)}


def answer_report(
    searcher: Searcher,
    model: object,
    items: list[Item],
    settings: object,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Answer every item through the `ask` pipeline; refusal and citation figures, split by answerability."""
    from assistant.answer import answer

    rows = []
    for item in items:
        result = answer(item.question, searcher=searcher, model=model, settings=settings)  # type: ignore[arg-type]
        cited_relevant = any(relevant(item, c.source, c.start, c.end) for c in result.citations)
        rows.append(
            {
                "id": item.id,
                "kind": item.kind,
                "answerable": item.answerable,
                "refused": result.refused,
                "reason": result.reason,
                "cited": bool(result.citations),
                "cited_relevant": cited_relevant,
                "model_marks": any(s.cited for s in result.sentences),
                "support": result.support,
                "first_token_ms": result.timings_ms.get("first_token", 0.0),
                "total_ms": result.timings_ms["total"],
                "tokens_per_s": result.tokens_per_s,
                "answer": result.generated or result.text,
                "passages": [p.chunk.id for p in result.passages],
            }
        )
        if progress:
            first = result.timings_ms.get("first_token", 0)
            progress(
                f"{item.id} refused={result.refused} ({result.reason}) support={result.support:.2f} "
                f"cited_relevant={cited_relevant} first_token={first:.0f}ms "
                f"{result.tokens_per_s:.1f}tok/s | {(result.generated or result.text)[:70]!r}"
            )
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    generated = [r for r in rows if r["first_token_ms"]]
    return {
        "answerable": {
            "n": len(answerable),
            "refused": _share(answerable, "refused"),
            "cites_relevant": _share(answerable, "cited_relevant"),
            "model_wrote_marks": _share(answerable, "model_marks"),
        },
        "unanswerable": {"n": len(unanswerable), "refused": _share(unanswerable, "refused")},
        "first_token_ms": _percentiles([r["first_token_ms"] for r in generated]),
        "tokens_per_s": round(statistics.median([r["tokens_per_s"] for r in generated]), 2)
        if generated
        else 0,
        "rows": rows,
    }


def _share(rows: list[dict], key: str) -> float:
    return round(sum(1 for r in rows if r[key]) / len(rows), 4) if rows else 0.0
