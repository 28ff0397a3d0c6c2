"""How the app shows answers and passages: linked `[n]` marks, sources as numbered collapsed expanders
under the answer (the cited span highlighted in its context, "open in the note" beside it), refusals with
their closest passages, stopped answers marked as such, and a copy box for the answer's text.

Passages are markdown, made safe and faithful by `ui.markup` (HTML tags dropped or inert, images as their
alt text, tables whole), so formulas (`$…$`), tables and code render as they do in the notes. Files are
named by their own title (`Shelf.name`); the file name stays in each passage's caption.
Does not: search, answer or load anything; everything here turns finished results into page elements.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st

from assistant import cite
from assistant.answer import Answer
from ingest.chunk import FENCE, Chunk
from retriever.search import Hit
from ui import markup

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
    waited_s: float = 0.0  # from the question to the whole answer, as the person waited
    stopped: str | None = None  # the text written before Stop was pressed (None: not stopped)


@dataclass(frozen=True)
class Shelf:
    """What passages are shown with: the notes' current text, the files' titles, and what "open in the
    note" does (None: no such button)."""

    read: NoteReader
    titles: dict[str, str] = field(default_factory=dict)
    open_note: Callable[[Chunk], None] | None = None

    def name(self, source: str) -> str:
        return self.titles.get(source, source)


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
    """The shown part of `chunk` with up to `around` characters of its note on each side, whole lines;
    a table cut by the shown part or by the context is shown whole.

    Falls back to the chunk alone when the note changed since it was indexed."""
    if note is None or note[chunk.start : chunk.end] != chunk.text:
        note, base = chunk.text, 0
    else:
        base = chunk.start
    offset = chunk.text.find(shown) if shown else -1
    start = base + (offset if offset >= 0 else 0)
    end = start + (len(shown) if offset >= 0 else len(chunk.text))
    start, end = markup.whole_tables(note, start, end)
    lo, hi = markup.whole_tables(note, max(0, start - around), min(len(note), end + around))
    before, after = note[lo:start], note[end:hi]
    if lo > 0 and "\n" in before and markup.table_at(note, lo) is None:
        before = before[before.index("\n") + 1 :]
    if hi < len(note) and "\n" in after and markup.table_at(note, hi - 1) is None:
        after = after[: after.rindex("\n")]
    return Span(before, note[start:end], after)


def flat(markdown: str) -> str:
    """Safe, faithful markdown (`markup.clean`) whose headings are bold lines, so a note's `# title` does
    not dwarf the answer."""
    lines, fenced = [], False
    for line in markup.clean(markdown).split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := HEADING.fullmatch(line)):
            line = f"**{m.group(1)}**"
        lines.append(line)
    return "\n".join(lines)


def heading(chunk: Chunk) -> str:
    return " › ".join(chunk.heading[1:]) or chunk.source


def where(chunk: Chunk) -> str:
    """The heading path, file name and character span: where a passage sits in its note."""
    return f"{heading(chunk)} · `{chunk.source}` characters {chunk.start}–{chunk.end}"


def label(chunk: Chunk, shelf: Shelf) -> str:
    """`title › last heading`: short enough for a collapsed source."""
    last = chunk.heading[-1] if len(chunk.heading) > 1 else ""
    return f"{shelf.name(chunk.source)} › {last}" if last else shelf.name(chunk.source)


def passage(chunk: Chunk, shown: str, shelf: Shelf, *, cited: bool = True, key: str = "") -> None:
    """The passage in its note: muted context, then the shown span, highlighted when `cited`; all markdown.
    With `key` and a shelf that can open notes, an "open in the note" button."""
    part = span(shelf.read(chunk.source), chunk, shown)
    if part.before.strip():
        st.caption(flat(part.before))
    if cited:
        st.success(flat(part.cited), icon="📌")
    else:
        st.markdown(flat(part.cited))
    if part.after.strip():
        st.caption(flat(part.after))
    st.caption(where(chunk), help=f"passage id {chunk.id}")
    if key and shelf.open_note is not None:
        st.button("Open in the note", icon="📖", key=f"open-{key}", on_click=shelf.open_note, args=(chunk,))


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


def sources(result: Answer, turn: int, shelf: Shelf) -> None:
    """The prompt's passages as numbered collapsed expanders, cited ones first, each under the anchor its
    `[n]` links to."""
    cited = {c.n for c in result.citations}
    for p in sorted(result.passages, key=lambda p: (p.n not in cited, p.n)):
        st.markdown(f'<div id="{anchor(turn, p.n)}"></div>', unsafe_allow_html=True)
        note = "" if p.n in cited else " · not cited"
        with st.expander(f"**[{p.n}]** {label(p.chunk, shelf)}{note}"):
            passage(p.chunk, p.text, shelf, cited=p.n in cited, key=f"{turn}-{p.n}")


def hits(found: list[Hit], shelf: Shelf, *, key: str = "") -> None:
    """Ranked passages, collapsed, each with its context."""
    for rank, hit in enumerate(found, start=1):
        with st.expander(f"{rank}. {label(hit.chunk, shelf)}"):
            passage(hit.chunk, hit.chunk.text, shelf, cited=False, key=f"{key}-{rank}" if key else "")


def answer(result: Answer, turn: int, shelf: Shelf) -> None:
    """An answer with linked citations and its sources, or a refusal with the closest passages."""
    if result.refused:
        st.warning(f"**{result.text}** — {result.reason}", icon="🚫")
        if result.diagnostics.generated:
            with st.expander("what the model wrote (not supported by your notes)"):
                st.markdown(result.diagnostics.generated)
        st.caption("Closest passages in your notes:")
        hits(result.pointers, shelf, key=f"{turn}-pointer")
        return
    if result.quoted:  # the model's own answer was unusable: the text quotes the notes
        st.caption(f"⚠ {result.reason}")
    shown = grey_unsupported(result.text, result.sentences)
    st.markdown(link_citations(shown, turn, {p.n for p in result.passages}))
    unsupported = [s.text.strip() for s in result.sentences if s.supported is False]
    uncited = [s.text.strip() for s in result.sentences if not s.numbers and s.supported is not False]
    if unsupported:
        st.caption(f"⚠ {len(unsupported)} sentence(s) in grey restate none of your notes")
    if uncited:
        st.caption(f"⚠ {len(uncited)} sentence(s) without a source: {uncited[0][:80]}")
    sources(result, turn, shelf)


def timing(exchange: Turn) -> str:
    """What the person waited for, whole, then its parts: rewrite, search, first token, writing.

    >>> timing(Turn(1, "q", None, [], waited_s=9.8))
    'answered in 9.8 s'
    """
    parts = [f"answered in {exchange.waited_s:.1f} s"]
    took = exchange.answer.diagnostics.timings_ms if exchange.answer else {}
    named = (("rewrite", "rewriting the follow-up"), ("retrieve", "search"), ("first_token", "first token"))
    parts += [f"{said} {took[key] / 1000:.1f} s" for key, said in named if took.get(key)]
    return " · ".join(parts)


def turn(exchange: Turn, shelf: Shelf, on_vote: Callable[[Turn], None]) -> None:
    """The user's message (with the rewritten question, if any), then the reply and its 👍 / 👎."""
    with st.chat_message("user"):
        st.markdown(exchange.question)
        rewritten(exchange)
    with st.chat_message("assistant"):
        reply(exchange, shelf)
        votes(exchange, on_vote)


def rewritten(exchange: Turn) -> None:
    """What was searched, when it is not the question as asked (a follow-up rewritten, or translated)."""
    if exchange.answer is None:
        return
    searched = exchange.answer.diagnostics.query or exchange.answer.standalone_question
    if searched != exchange.question:
        st.caption(f"↳ searched as: {searched}")


def reply(exchange: Turn, shelf: Shelf) -> None:
    if exchange.stopped is not None:
        st.markdown(exchange.stopped or "…")
        st.caption("⏹ Stopped: the answer above is what was written before you pressed Stop.")
    elif exchange.answer is not None:
        answer(exchange.answer, exchange.id, shelf)
        if not exchange.answer.refused:
            with st.expander("Copy the answer", icon="📋"):
                st.code(exchange.answer.text, language="markdown", wrap_lines=True)
        st.caption(timing(exchange))
    else:
        st.info("Retrieval only (no language model): the passages that best match your question.", icon="🔎")
        hits(exchange.hits, shelf, key=f"{exchange.id}-hit")


def votes(exchange: Turn, on_vote: Callable[[Turn], None]) -> None:
    """👍 / 👎 with a short comment beside them; either change appends a feedback line."""
    if exchange.answer is not None:
        left, right = st.columns([1, 4], vertical_alignment="center")
        with left:
            st.feedback("thumbs", key=vote_key(exchange), on_change=on_vote, args=(exchange,))
        with right:
            st.text_input(
                "Comment",
                key=comment_key(exchange),
                placeholder="a comment with your vote (optional)",
                label_visibility="collapsed",
                on_change=on_vote,
                args=(exchange,),
            )


def vote_key(exchange: Turn) -> str:
    return f"vote-{exchange.id}"


def comment_key(exchange: Turn) -> str:
    return f"comment-{exchange.id}"
