"""Evidence: the part of a chosen passage the answer restates — the sentence, list item, table or formula
that best answers the question, with about `context` characters of the note on each side.

The bundled 1.5B restates tight evidence well and loses the point in long passages (a probe on questions
the project had not seen: key points found 0.59 with the answering sentence alone, 0.73 with ~150
characters around it, 0.57 with ~400). The evidence is made of whole atoms (`ingest.chunk.atoms`:
sentences and list items, with tables, fenced code and $$ formulas each one atom), so a table, a list item
or a formula is never cut in half.

Scoring an atom: the character bigrams and English words it shares with the question
(`retriever.tokenize.bigrams`). An English question shares at most a term or two with Chinese notes, so
for it (and whenever no atom shares a word) the `similar` callback (e5 similarity, from the answer
pipeline) ranks the atoms instead, when given; else the lexical order, else the passage's start.

A passage whose title restates the question ("30. load_in_8bit和 prepare_model_for_int8_training含义和
区别", then a table) shares the most words with it through the title, but the title is not the answer: when
the best atom is the passage's opening title line, the evidence is the title and what follows it, the
atom after the title kept whole even when it is longer than the context (up to `longest`).

A question that asks several things ("warmup 为什么能让训练更稳？一般预热多少步？") is answered by several
atoms, often apart: each part (split at its question marks) picks its best atom too, each pick keeps the
context a question of its own would, and `longest` is shared among them.

Does not: choose the passages (retrieval and answer.py do) or number them (prompt.py).
"""

from __future__ import annotations

import re

from assistant.cite import Similar, is_english
from ingest.chunk import atoms
from retriever.tokenize import bigrams

CONTEXT = 150  # characters of the note kept on each side of the best atom
LONGEST = 900  # evidence longer than this keeps the best atom and less context
PART = re.compile(r"(?<=[？?；;])")  # where a question of several parts is split
GAP = " … "  # between two pieces of evidence apart in a passage
SENTENCE_END = re.compile(r"[。！!；;.]\s*$")  # a line ending so is prose, not a title


def best_atom(text: str, question: str, spans: list[tuple[int, int]], similar: Similar | None) -> int:
    """Index in `spans` of the atom that best answers `question`."""
    want = bigrams(question)
    shared = [len(bigrams(text[a:b]) & want) for a, b in spans]
    if max(shared, default=0) > 0 and (similar is None or not is_english(question)):
        # ties go to the longer atom: a heading restating the question shares as much as its answer
        return max(range(len(spans)), key=lambda i: (shared[i], spans[i][1] - spans[i][0]))
    if similar is not None and spans:
        scores = list(similar(question, [text[a:b] for a, b in spans]))
        return max(range(len(spans)), key=lambda i: scores[i])
    return 0


def parts(question: str) -> list[str]:
    """The sub-questions of a question that asks several things ("X 是什么？怎么缓解？"), split after each
    question mark or semicolon; [] for a single question."""
    pieces = [p.strip() for p in PART.split(question)]
    pieces = [p for p in pieces if len(re.sub(r"[\W_]", "", p)) >= 4]
    return pieces if len(pieces) > 1 else []


def select(
    text: str,
    question: str,
    *,
    context: int = CONTEXT,
    longest: int = LONGEST,
    similar: Similar | None = None,
) -> str:
    """The evidence of `text` for `question`: its best atom and the whole atoms within `context`
    characters on each side (room unused at one edge of the passage goes to the other side).

    A question of several parts gets the best atom of each part (and of the whole), each with `context`
    around it and a share of `longest`; pieces apart in the passage are joined by " … "."""
    spans = atoms(text)
    if not spans:
        return text.strip()
    picks = sorted({best_atom(text, q, spans, similar) for q in [question, *parts(question)]})
    share = len(picks)
    ranges: list[tuple[int, int]] = []
    for lo, hi in sorted(_around(text, spans, best, context, longest // share) for best in picks):
        if ranges and lo <= ranges[-1][1] + 1:  # touching or overlapping the piece before: one piece
            ranges[-1] = (ranges[-1][0], max(hi, ranges[-1][1]))
        else:
            ranges.append((lo, hi))
    return GAP.join(text[spans[lo][0] : spans[hi][1]].strip() for lo, hi in ranges)


def _opening_title(text: str, spans: list[tuple[int, int]], i: int) -> bool:
    """Whether atom `i` is the passage's opening title: its first atom, one line followed by a blank line,
    a markdown heading or a line without a sentence end (a question, a line ending in a colon, "30.
    load_in_8bit和 prepare_model_for_int8_training含义和区别")."""
    if i != 0 or len(spans) < 2:
        return False
    start, end = spans[0]
    line = text[start:end].strip()
    if "\n" in line or not re.match(r"[ \t]*\n[ \t]*\n", text[end:]):
        return False
    return line.startswith("#") or not SENTENCE_END.search(line)


def _around(
    text: str, spans: list[tuple[int, int]], best: int, context: int, longest: int
) -> tuple[int, int]:
    """(first, last) atom of the evidence for best atom `best`; for the passage's title, the atom after it
    is the answer, kept whole with the title."""
    if _opening_title(text, spans, best):
        lo, hi = _grow(spans, best + 1, context, longest)
        return min(lo, best), hi
    return _grow(spans, best, context, longest)


def _grow(spans: list[tuple[int, int]], best: int, context: int, longest: int) -> tuple[int, int]:
    """(first, last) atom of the evidence around atom `best`: whole atoms added one at a time, on the side
    with less context so far, within 2 x `context` characters and `longest` in all."""
    start, end = spans[best]
    budget = max(0, min(2 * context, longest - (end - start)))
    lo = hi = best
    while True:
        used = spans[hi][1] - spans[lo][0] - (end - start)
        left = spans[lo][0] - spans[lo - 1][0] if lo > 0 else None
        right = spans[hi + 1][1] - spans[hi][1] if hi + 1 < len(spans) else None
        can_left = left is not None and used + left <= budget
        can_right = right is not None and used + right <= budget
        if not (can_left or can_right):
            return lo, hi
        if can_left and (not can_right or start - spans[lo][0] <= spans[hi][1] - end):
            lo -= 1
        else:
            hi += 1
