"""How the app shows answers and passages: linked `[n]` marks, cited passages in their context with the
cited span highlighted, refusals with their closest passages, and the retrieval explorer's score table.

Passages are markdown, so formulas (`$…$`), tables and code in the notes render as they do in the notes.
Does not: search, answer or load anything; everything here turns finished results into page elements.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from assistant import cite
from assistant.answer import Answer
from ingest.chunk import FENCE, Chunk
from retriever.search import STAGES, Hit

AROUND = 200  # characters of the note shown before and after a cited span, cut at line breaks
NoteReader = Callable[[str], str | None]  # source -> the note's text
HEADING = re.compile(r"#{1,6}[ \t]+(.+?)[ \t#]*")


@dataclass(frozen=True)
class Turn:
    """One exchange of the chat: an answer, or in retrieval-only mode the passages found."""

    id: int  # unique in the session: names the turn's anchors and its feedback widget
    question: str
    answer: Answer | None
    hits: list[Hit]


@dataclass(frozen=True)
class Span:
    before: str  # context, shown muted
    cited: str  # what the model was shown, highlighted
    after: str


def anchor(turn: int, n: int) -> str:
    return f"src-{turn}-{n}"


def link_citations(text: str, turn: int, numbers: set[int]) -> str:
    """Each `[n]` (also `[1,2]`, `【1】`) of a passage in `numbers` becomes a link to that passage's source.

    >>> link_citations("缓存 K 和 V [1]。", 0, {1})
    '缓存 K 和 V [\\\\[1\\\\]](#src-0-1)。'
    """

    def links(mark: re.Match[str]) -> str:
        found = [n for n in cite.numbers(mark.group(1)) if n in numbers]
        return "".join(f"[\\[{n}\\]](#{anchor(turn, n)})" for n in found) or mark.group(0)

    return cite.MARK.sub(links, text)


def span(note: str | None, chunk: Chunk, shown: str, *, around: int = AROUND) -> Span:
    """The shown part of `chunk` with up to `around` characters of its note on each side, whole lines.

    Falls back to the chunk alone when the note changed since it was indexed."""
    if note is None or note[chunk.start : chunk.end] != chunk.text:
        note, base = chunk.text, 0
    else:
        base = chunk.start
    offset = chunk.text.find(shown) if shown else -1
    start = base + (offset if offset >= 0 else 0)
    end = start + (len(shown) if offset >= 0 else len(chunk.text))
    lo, hi = max(0, start - around), min(len(note), end + around)
    before, after = note[lo:start], note[end:hi]
    if lo > 0 and "\n" in before:
        before = before[before.index("\n") + 1 :]
    if hi < len(note) and "\n" in after:
        after = after[: after.rindex("\n")]
    return Span(before, note[start:end], after)


def flat(markdown: str) -> str:
    """Headings inside a passage become bold lines, so a note's `# title` does not dwarf the answer."""
    lines, fenced = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := HEADING.fullmatch(line)):
            line = f"**{m.group(1)}**"
        lines.append(line)
    return "\n".join(lines)


def heading(chunk: Chunk) -> str:
    return " › ".join(chunk.heading[1:]) or chunk.source


def score_rows(hits: list[Hit]) -> list[dict[str, object]]:
    """One row per hit: final score, then each stage's score and rank (None where the stage did not run)."""
    rows = []
    for rank, hit in enumerate(hits, start=1):
        row: dict[str, object] = {"rank": rank, "score": hit.score}
        for stage in STAGES:
            row[stage] = hit.scores.get(stage)
            row[f"{stage} #"] = hit.ranks.get(stage)
        row.update(answers=hit.chunk.has_answer, heading=heading(hit.chunk), source=hit.chunk.source)
        rows.append(row)
    return rows


def passage(chunk: Chunk, shown: str, read: NoteReader, *, cited: bool = True) -> None:
    """The passage in its note: muted context, then the shown span, highlighted when `cited`; all markdown."""
    part = span(read(chunk.source), chunk, shown)
    if part.before.strip():
        st.caption(flat(part.before))
    if cited:
        st.success(flat(part.cited), icon="📌")
    else:
        st.markdown(flat(part.cited))
    if part.after.strip():
        st.caption(flat(part.after))
    st.caption(f"`{chunk.source}` characters {chunk.start}–{chunk.end} · id `{chunk.id}`")


def grey_unsupported(text: str, sentences: list[cite.Sentence]) -> str:
    """`text` with each sentence that no evidence supports (after `cite.verify`) set in grey, when its
    offsets still point at it and it is one line without brackets (which would end the markup).

    >>> grey_unsupported("有依据 [1]。没有依据。", [cite.Sentence("没有依据。", 8, 13, (), (), False)])
    '有依据 [1]。:gray[没有依据。]'
    """
    for s in sorted(sentences, key=lambda s: s.start, reverse=True):
        piece = text[s.start : s.end]
        if s.supported is False and piece == s.text and not any(c in piece for c in "[]\n"):
            text = f"{text[: s.start]}:gray[{piece}]{text[s.end :]}"
    return text


def sources(result: Answer, turn: int, read: NoteReader) -> None:
    """The prompt's passages, cited ones first and open, each under the anchor its `[n]` links to."""
    cited = {c.n for c in result.citations}
    for p in sorted(result.passages, key=lambda p: (p.n not in cited, p.n)):
        st.markdown(f'<div id="{anchor(turn, p.n)}"></div>', unsafe_allow_html=True)
        note = "" if p.n in cited else " · not cited"
        with st.expander(f"**[{p.n}]** {p.chunk.source} › {heading(p.chunk)}{note}", expanded=p.n in cited):
            passage(p.chunk, p.text, read, cited=p.n in cited)


def hits(found: list[Hit], read: NoteReader, *, scores: bool = False) -> None:
    """Ranked passages, collapsed, each with its context; with `scores`, its per-stage scores."""
    for rank, hit in enumerate(found, start=1):
        with st.expander(f"{rank}. {hit.chunk.source} › {heading(hit.chunk)}"):
            if scores:
                st.caption(" · ".join(_stage(hit, s) for s in STAGES if hit.scores.get(s) is not None))
            passage(hit.chunk, hit.chunk.text, read, cited=False)


def _stage(hit: Hit, stage: str) -> str:
    return f"{stage} {hit.scores[stage]:.4f} (#{hit.ranks.get(stage)})"


def answer(result: Answer, turn: int, read: NoteReader) -> None:
    """An answer with linked citations and its sources, or a refusal with the closest passages."""
    if result.refused:
        st.warning(f"**{result.text}** — {result.reason}", icon="🚫")
        if result.diagnostics.generated:
            with st.expander("what the model wrote (not supported by your notes)"):
                st.markdown(result.diagnostics.generated)
        st.caption("Closest passages in your notes:")
        hits(result.pointers, read)
        return
    if result.quoted:  # the model's own answer was unusable: the text quotes a passage
        st.caption(f"⚠ {result.reason}")
    shown = grey_unsupported(result.text, result.sentences)
    st.markdown(link_citations(shown, turn, {p.n for p in result.passages}))
    unsupported = [s.text.strip() for s in result.sentences if s.supported is False]
    uncited = [s.text.strip() for s in result.sentences if not s.numbers and s.supported is not False]
    if unsupported:
        st.caption(f"⚠ {len(unsupported)} sentence(s) in grey restate none of your notes")
    if uncited:
        st.caption(f"⚠ {len(uncited)} sentence(s) without a source: {uncited[0][:80]}")
    sources(result, turn, read)
    took = result.diagnostics.timings_ms
    st.caption(
        f"first token {took.get('first_token', 0) / 1000:.1f} s · total {took.get('total', 0) / 1000:.1f} s"
    )


def turn(exchange: Turn, read: NoteReader, on_vote: Callable[[Turn], None]) -> None:
    """The user's message (with the rewritten question, if any), then the reply and its 👍 / 👎."""
    with st.chat_message("user"):
        st.markdown(exchange.question)
        rewritten(exchange)
    with st.chat_message("assistant"):
        reply(exchange, read)
        votes(exchange, on_vote)


def rewritten(exchange: Turn) -> None:
    if exchange.answer and exchange.answer.standalone_question != exchange.question:
        st.caption(f"↳ searched as: {exchange.answer.standalone_question}")


def reply(exchange: Turn, read: NoteReader) -> None:
    if exchange.answer is not None:
        answer(exchange.answer, exchange.id, read)
    else:
        st.info("Retrieval only (no language model): the passages that best match your question.", icon="🔎")
        hits(exchange.hits, read, scores=True)


def votes(exchange: Turn, on_vote: Callable[[Turn], None]) -> None:
    if exchange.answer is not None:
        st.feedback("thumbs", key=vote_key(exchange), on_change=on_vote, args=(exchange,))


def vote_key(exchange: Turn) -> str:
    return f"vote-{exchange.id}"
