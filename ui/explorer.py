"""The retrieval explorer: one query's ranked passages with each stage's score and rank, a one-line legend
per stage, and the query's terms highlighted in each passage.

Only the stages the mode ran get columns (bm25 mode has no dense or fused column), scores are rounded to 3
decimals, and the legend says why "rank" can differ from "fused #": passages without an answer have their
final score scaled down (`unanswered_weight`, see retriever/search.py).
Does not: search in a way of its own (it calls `Searcher.search`, as `mianjing search` does).
"""

from __future__ import annotations

import streamlit as st

from assistant.retrieval import Searcher
from retriever.search import STAGES, Hit, Result
from retriever.tokenize import tokenize
from ui import markup, render

DECIMALS = 3
LEGEND = {
    "bm25": "**bm25**: keyword score (BM25 over words and technical terms); more shared rare words, higher",
    "dense": "**dense**: cosine of the e5 embeddings of question and passage (-1..1); finds paraphrases",
    "fused": "**fused**: reciprocal rank fusion, Σ 1/(60 + rank) over bm25 and dense: both agreeing wins",
    "rerank": (
        "**rerank**: the reranker's score of the best fused passages: built in, the best e5 cosine of the "
        "question and one window of the passage (a sentence, list item or table, up to 120 characters); a "
        "cross-encoder, its score of question and passage read together"
    ),
}


def legend(result: Result, unanswered_weight: float) -> str:
    """One line per stage the mode ran, then what "score" and "rank" are."""
    ran = [s for s in STAGES if any(h.scores.get(s) is not None for h in result.hits)]
    final = (
        f"**score** / **rank**: the final order; a passage without an answer (a bare question, a question "
        f"list; `answers` unticked) has its score × {unanswered_weight:g}, so it can rank below its "
        f"`fused #` or `{ran[-1] if ran else 'stage'} #`."
    )
    return "  \n".join([*(LEGEND[s] for s in ran), final])


def score_rows(hits: list[Hit], titles: dict[str, str] | None = None) -> list[dict[str, object]]:
    """One row per hit: final score, then the score and rank of each stage that ran for any hit; scores
    rounded to 3 decimals."""
    ran = [s for s in STAGES if any(h.scores.get(s) is not None for h in hits)]
    rows = []
    for rank, hit in enumerate(hits, start=1):
        row: dict[str, object] = {"rank": rank, "score": round(hit.score, DECIMALS)}
        for stage in ran:
            value = hit.scores.get(stage)
            row[stage] = None if value is None else round(value, DECIMALS)
            row[f"{stage} #"] = hit.ranks.get(stage)
        row.update(
            answers=hit.chunk.has_answer,
            heading=render.heading(hit.chunk),
            file=(titles or {}).get(hit.chunk.source, hit.chunk.source),
        )
        rows.append(row)
    return rows


def show(searcher: Searcher, mode: str, k: int, shelf: render.Shelf) -> None:
    query = st.text_input("Question to search for", key="explore", placeholder="e.g. ZeRO-3 和 ZeRO-2 的区别")
    if not query:
        st.caption(
            "See which passages each retriever finds for a question, and why: scores and ranks per stage."
        )
        return
    try:
        result = searcher.search(query, mode=mode, k=k)
    except (RuntimeError, ValueError, OSError) as e:
        st.error(f"Search failed: {e}")
        return
    if result.reranker:
        st.info(f"Reranker off: {result.reranker}; showing the fused order.")
    st.caption(f"{result.mode} · {len(result.hits)} passages · {result.timings_ms['total']:.0f} ms")
    st.dataframe(
        score_rows(result.hits, shelf.titles),
        hide_index=True,
        column_config={"heading": st.column_config.TextColumn(width="large")},
    )
    st.caption(legend(result, searcher.settings.unanswered_weight))
    terms = tokenize(query)
    for rank, hit in enumerate(result.hits, start=1):
        with st.expander(f"{rank}. {render.label(hit.chunk, shelf)}", key=f"explore-{hit.chunk.id}"):
            st.caption(" · ".join(_stage(hit, s) for s in STAGES if hit.scores.get(s) is not None))
            st.markdown(markup.highlight(render.flat(hit.chunk.text), terms))
            st.caption(render.where(hit.chunk))
            if shelf.open_note is not None:
                st.button(
                    "Open in the note",
                    icon="📖",
                    key=f"open-explore-{rank}",
                    on_click=shelf.open_note,
                    args=(hit.chunk,),
                )


def _stage(hit: Hit, stage: str) -> str:
    return f"{stage} {hit.scores[stage]:.{DECIMALS}f} (#{hit.ranks.get(stage)})"
