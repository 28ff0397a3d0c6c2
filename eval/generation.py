"""Answer quality, RAGAS-style: every item is answered by the `ask` pipeline (`answer_report`, which calls
assistant.answer.answer), then each answer is scored.

- faithfulness, answer relevancy, answer correctness: judged by an LLM through ragas (eval/judge.py);
- answer similarity: e5 cosine of the answer and `reference_answer` (no LLM; part of answer correctness);
- citation validity: the share of the answer's cited passages that are relevant (eval.dataset.relevant);
- key-point recall: the share of the item's `key_points` the answer shown states (eval.metrics; no judge);
- citation precision: the share of the answer's marked sentences that a passage they cite supports (most
  of the sentence's words are in it, or, for an English sentence, an e5 cosine of at least CROSS_LINGUAL);
  `marks_without_target` counts the `[n]` marks in the answer that name no passage;
- refusal: the pipeline's own decision; for unanswerable items, the share refused is refusal accuracy.

Refusals are not sent to the judge. RAGAS would score any refusal 0 answer relevancy (it is noncommittal),
so a correct refusal is reported as refusal accuracy in "unanswerable", never as a relevancy. A refusal of
an answerable item scores 0 relevancy, 0 correctness and 0 similarity, and no faithfulness (it claims
nothing). An unanswerable item that was answered anyway gets faithfulness only (no reference exists).
Means are over the rows with a value; a metric the judge failed on is None in its row and counted in
"parse_failures" / "judge_errors", never averaged as a NaN. `judge="none"` skips the LLM judge: citation
validity, refusal accuracy and answer similarity only, in about the time the answers take.

Does not: retrieve or generate by itself, load models (callers pass them; see `load_judge`), or write
reports.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from assistant import cite
from assistant.answer import Answer, ChatModel, answer
from assistant.cite import CROSS_LINGUAL, LEXICAL, is_english
from assistant.retrieval import Searcher
from assistant.settings import Settings
from eval.dataset import Item, relevant, subset
from eval.judge import JUDGE_TOKENS, METRICS, Judge, Score, similarity
from eval.metrics import SCORES, key_point_recall, percentiles


def generation_report(
    searcher: Searcher,
    model: Any,
    items: list[Item],
    settings: Settings,
    *,
    judge: Any = None,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
    metrics: tuple[str, ...] = METRICS,
) -> dict:
    """Answer `items` (at most `limit`, both kinds kept) and score the answers; JSON-able.

    `judge`: None = `model` judges its own answers; "none" = no LLM judge; or a loaded model (`load_judge`).
    `metrics`: the LLM-judged METRICS to run (each costs judge calls; see the README for their cost).
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown judged metric {', '.join(sorted(unknown))}: use {', '.join(METRICS)}")
    if isinstance(judge, str) and judge != "none":
        raise ValueError(f"judge {judge!r}: pass None, 'none' or a loaded model (eval.generation.load_judge)")
    chosen = subset(items, limit)
    scorer = None if judge == "none" else Judge(model if judge is None else judge, searcher.embedder)
    began, answered = time.perf_counter(), []

    def on_answer(item: Item, result: Answer) -> dict:
        answered.append((item, result))
        if progress:
            progress(_progress_line("answer", item, result, (len(answered), len(chosen)), began))
        return score_answer(item, result, searcher.embedder)

    report = answer_report(searcher, model, chosen, settings, on_answer=on_answer)
    rows = report["rows"]
    if scorer:
        judge_rows(scorer, rows, answered, metrics=metrics, progress=progress)
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    return {
        "answerable": {
            **report["answerable"],
            **summary(answerable),
            "marks_without_target": sum(r.get("marks_without_target", 0) for r in answerable),
        },
        "unanswerable": {**report["unanswerable"], **summary(unanswerable)},
        "by_kind": by_kind(rows),
        "judge": scorer.name if scorer else "none",
        "judged": list(metrics) if scorer else [],
        "parse_failures": _count(rows, "parse"),
        "parse_retries": {m: sum(r["retries"].get(m, 0) for r in rows) for m in METRICS},
        "judge_errors": {m: _count(rows, "error")[m] + _count(rows, "empty")[m] for m in METRICS},
        "seconds_per_item": _seconds(rows),
        "seconds_total": round(time.perf_counter() - began, 1),
        "first_token_ms": report["first_token_ms"],
        "tokens_per_s": report["tokens_per_s"],
        "rows": rows,
    }


def answer_report(
    searcher: Searcher,
    model: ChatModel,
    items: list[Item],
    settings: Settings,
    *,
    progress: Callable[[str], None] | None = None,
    on_answer: Callable[[Item, Any], dict] | None = None,
) -> dict:
    """Answer every item through the `ask` pipeline; refusal and citation figures, split by answerability.

    `on_answer(item, answer)` may add fields to each row (`generation_report` adds the scores)."""
    rows = []
    for item in items:
        result = answer(item.question, searcher=searcher, model=model, settings=settings)
        rows.append({**answer_row(item, result), **(on_answer(item, result) if on_answer else {})})
        if progress:
            r = rows[-1]
            progress(
                f"{item.id} refused={result.refused} ({result.reason}) support={r['support']:.2f} "
                f"cited_relevant={r['cited_relevant']} first_token={r['first_token_ms']:.0f}ms "
                f"{r['tokens_per_s']:.1f}tok/s | {r['answer'][:70]!r}"
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
        "first_token_ms": percentiles([r["first_token_ms"] for r in generated]),
        "tokens_per_s": round(statistics.median([r["tokens_per_s"] for r in generated]), 2)
        if generated
        else 0,
        "rows": rows,
    }


def answer_row(item: Item, result: Answer) -> dict:
    """The pipeline's own figures for one answer: refusal, citations, timings, what the model wrote."""
    d = result.diagnostics
    return {
        "id": item.id,
        "kind": item.kind,
        "answerable": item.answerable,
        "refused": result.refused,
        "reason": result.reason,
        "cited": bool(result.citations),
        "cited_relevant": any(relevant(item, c.source, c.start, c.end) for c in result.citations),
        "model_marks": any(s.cited for s in result.sentences),
        "support": d.support,
        "first_token_ms": d.timings_ms.get("first_token", 0.0),
        "total_ms": d.timings_ms["total"],
        "tokens_per_s": d.tokens_per_s,
        "answer": d.generated or result.text,
        "passages": [p.chunk.id for p in result.passages],
    }


def _share(rows: list[dict], key: str) -> float:
    return round(sum(1 for r in rows if r[key]) / len(rows), 4) if rows else 0.0


def score_answer(item: Item, result: Answer, embedder: Any) -> dict:
    """The row fields of one answer without the LLM judge: cited ids, citation validity and precision,
    answer similarity, key-point recall (the other SCORES None until `judge_rows`) and the judge's
    bookkeeping."""
    valid = [relevant(item, c.source, c.start, c.end) for c in result.citations]
    row: dict[str, Any] = {
        "question": item.question,
        "citations": [c.id for c in result.citations],
        "quoted": result.quoted,  # the answer shown quotes a passage (assistant/answer.py)
        **dict.fromkeys(SCORES),
        "citation_validity": round(sum(valid) / len(valid), 4) if valid else None,
        "failures": {},
        "retries": {},
        "seconds": {"answer": round(result.diagnostics.timings_ms.get("total", 0.0) / 1000, 2)},
    }
    if result.refused and item.answerable:  # RAGAS: noncommittal = 0 relevancy; it states none of the facts
        row.update(answer_relevancy=0.0, answer_correctness=0.0, answer_similarity=0.0)
    elif not result.refused and item.reference_answer:
        row["answer_similarity"] = similarity(embedder, plain(result.text), item.reference_answer)
    if not result.refused:
        row["citation_precision"], row["marks_without_target"] = cited_support(result, embedder)
    if item.key_points:  # what the user is shown: a refusal states none of them
        row["key_point_recall"] = (
            0.0 if result.refused else key_point_recall(plain(result.text), item.key_points)
        )
    return row


def cited_support(result: Answer, embedder: Any) -> tuple[float | None, int]:
    """(share of the marked sentences that one of their cited passages supports, or None when no sentence
    carries a mark; the number of marks in the text that name no passage). Marks that follow no words of
    their own are judged with the sentence before them."""
    texts = {p.n: p.text for p in result.passages}
    # "** [1]" after a bold line's "？", "- [1]": what such a mark cites is the sentence before it
    marked = [
        (s.text if cite.wording(s.text) or i == 0 else result.sentences[i - 1].text + s.text, s.cited)
        for i, s in enumerate(result.sentences)
        if s.cited
    ]
    ok = [any(supports(text, texts[n], embedder) for n in cited if n in texts) for text, cited in marked]
    named = [n for m in cite.MARK.finditer(result.text) for n in cite.numbers(m.group(1))]
    return (round(sum(ok) / len(ok), 4) if ok else None), sum(1 for n in named if n not in texts)


def supports(sentence: str, passage: str, embedder: Any) -> bool:
    """Does `passage` support `sentence`: most of its words are in the passage, or it is English and close
    to the passage in meaning (a translation shares no words with Chinese notes)."""
    mine = cite.bigrams(sentence)
    if mine and len(mine & cite.bigrams(passage)) / len(mine) >= LEXICAL:
        return True
    return is_english(sentence) and similarity(embedder, plain(sentence), passage) >= CROSS_LINGUAL


def judge_rows(
    judge: Judge,
    rows: list[dict],
    answered: list[tuple[Item, Answer]],
    *,
    metrics: tuple[str, ...] = METRICS,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Fill in the LLM-judged METRICS of the answers that were not refused, one metric at a time (consecutive
    judge prompts share their long instructions, which llama.cpp then evaluates once)."""
    began = time.perf_counter()
    for metric in metrics:
        todo = [
            (row, item, result)
            for row, (item, result) in zip(rows, answered, strict=True)
            if _judged(metric, item, result)
        ]
        for n, (row, item, result) in enumerate(todo, start=1):
            contexts = [p.text for p in result.passages]
            text = plain(result.text)
            _record(row, metric, judge.score(metric, item.question, text, contexts, item.reference_answer))
            if progress:
                progress(_progress_line(metric, item, result, (n, len(todo)), began, row[metric]))


def _judged(metric: str, item: Item, result: Answer) -> bool:
    """Refusals are never judged; unanswerable items get faithfulness only; correctness needs a reference."""
    if result.refused or (not item.answerable and metric != "faithfulness"):
        return False
    return metric != "answer_correctness" or bool(item.reference_answer)


def _record(row: dict, metric: str, score: Score) -> None:
    row[metric] = score.value
    row["seconds"][metric] = score.seconds
    if score.retries:
        row["retries"][metric] = score.retries
    if score.failure:
        row["failures"][metric] = f"{score.failure}: {score.detail}" if score.detail else score.failure


def plain(text: str) -> str:
    """The answer shown to the user (a quoted passage included) without its [n] marks: the judge reads
    claims, not citation syntax."""
    return " ".join(cite.MARK.sub("", text).split())


def summary(rows: list[dict]) -> dict:
    """Mean of each score over the rows that have one, and how many had one (`<metric>_n`)."""
    out: dict[str, Any] = {"answered": sum(1 for r in rows if not r["refused"])}
    for metric in SCORES:
        values = [r[metric] for r in rows if r[metric] is not None]
        out[metric] = round(sum(values) / len(values), 4) if values else None
        out[f"{metric}_n"] = len(values)
    return out


def by_kind(rows: list[dict]) -> dict[str, dict]:
    """`summary` and the refused share per question kind."""
    groups = {kind: [r for r in rows if r["kind"] == kind] for kind in sorted({r["kind"] for r in rows})}
    return {
        kind: {
            "n": len(group),
            "refused": round(sum(r["refused"] for r in group) / len(group), 4),
            **summary(group),
        }
        for kind, group in groups.items()
    }


def _count(rows: list[dict], kind: str) -> dict[str, int]:
    return {m: sum(1 for r in rows if r["failures"].get(m, "").startswith(kind)) for m in METRICS}


def _seconds(rows: list[dict]) -> dict[str, float]:
    """Mean seconds per item of answering and of each judged metric (over the items it ran on)."""
    keys = ("answer", *METRICS)
    out = {}
    for key in keys:
        values = [r["seconds"][key] for r in rows if key in r["seconds"]]
        if values:
            out[key] = round(sum(values) / len(values), 1)
    return out


def _progress_line(
    step: str, item: Item, result: Answer, count: tuple[int, int], began: float, value: float | None = None
) -> str:
    n, total = count
    elapsed = time.perf_counter() - began
    if step == "answer":
        what = f"refused ({result.reason})" if result.refused else "answered"
        what = f"quoted ({result.reason})" if result.quoted else what
    else:
        what = "failed" if value is None else f"{value:.2f}"
    return f"{step} [{n}/{total}] {item.id}: {what} | {elapsed:.0f}s, eta {elapsed / n * (total - n):.0f}s"


def load_judge(spec: str, settings: Settings) -> Any:
    """The `judge` argument for a setting: "" or "same" -> None (the answering model), "none" -> "none", else
    a model name as for `llm` (a bundled name, a .gguf path, or openai:<model> at settings.llm_base_url)."""
    if spec in ("", "same", "none"):
        return None if spec != "none" else "none"
    from assistant.llm import Generator

    return Generator.of(replace(settings, llm=spec, max_tokens=JUDGE_TOKENS))
