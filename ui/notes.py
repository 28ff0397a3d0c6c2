"""What the notes hold, for the app's first screen and its notes browser: each file's own title (its first
heading or first line, not the file name), passage count and main topics; example questions drawn from the
notes' own questions (`practice.pool`); a file's passages grouped by section.

Everything comes from the index's chunks, so it needs no file reads and matches what search returns.
Does not: render anything (see ui/welcome.py, ui/browser.py) or rank questions by quality.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ingest.chunk import Chunk
from practice import pool

TITLE_CHARS = 40  # a longer first line is cut with "…"
HEAD_LINES = 5  # a heading among a file's first lines is its title
MARKS = re.compile(r"^#{1,6}\s+|\*\*|__|</?\w+[^>]*>|^[-*+>]\s+|[#\s]+$")
HEADING_LINE = re.compile(r"#{1,6}\s+\S")


@dataclass(frozen=True)
class NoteFile:
    source: str  # path relative to the notes folder
    title: str  # unique among the files
    passages: int
    topics: tuple[str, ...]  # the main sections, most passages first


def title(text: str) -> str:
    """A file's own title: the first markdown heading among its first lines, else its first line.

    >>> title("\\n**1、如何选择基座？**\\n\\n答案")
    '1、如何选择基座？'
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()][:HEAD_LINES]
    line = next((x for x in lines if HEADING_LINE.match(x)), lines[0] if lines else "")
    plain = MARKS.sub("", line).strip()
    return plain if len(plain) <= TITLE_CHARS else plain[: TITLE_CHARS - 1].rstrip() + "…"


def by_source(chunks: Iterable[Chunk]) -> dict[str, list[Chunk]]:
    """Each file's chunks in text order, files in name order."""
    files: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        files.setdefault(chunk.source, []).append(chunk)
    return {s: sorted(files[s], key=lambda c: c.start) for s in sorted(files)}


def titles(chunks: Iterable[Chunk]) -> dict[str, str]:
    """source -> title, made unique by the file name in brackets when two files share one."""
    files = by_source(chunks)
    found = {s: title(cs[0].text) or s for s, cs in files.items()}
    twice = {t for t, n in Counter(found.values()).items() if n > 1}
    return {s: f"{t} ({s})" if t in twice else t for s, t in found.items()}


def topic_depth(chunks: Sequence[Chunk]) -> int:
    """The heading level whose values tell sections apart: skips a file title all chunks share."""
    depth = 1
    while len({c.heading[depth] for c in chunks if len(c.heading) > depth}) == 1:
        depth += 1
    return depth


def topics(chunks: Sequence[Chunk], k: int = 4) -> tuple[str, ...]:
    """The `k` sections with the most passages (at least two each), ties in text order."""
    depth = topic_depth(chunks)
    counts = Counter(c.heading[depth] for c in chunks if len(c.heading) > depth)
    return tuple(t for t, n in counts.most_common(k) if n > 1)


def files(chunks: Iterable[Chunk]) -> list[NoteFile]:
    grouped = by_source(chunks)
    named = titles(c for cs in grouped.values() for c in cs)
    return [NoteFile(s, named[s], len(cs), topics(cs)) for s, cs in grouped.items()]


def examples(chunks: Iterable[Chunk], k: int = 5, *, longest: int = 40) -> list[str]:
    """`k` questions the notes answer themselves, at most `longest` characters, taken in turn from each
    file; within a file in the order of a hash of the question, so the choice is fixed but not always the
    file's first questions."""
    queues: dict[str, list[str]] = {}
    for card in pool.pool(chunks):
        if card.own_answer and 6 <= len(card.question) <= longest:
            queues.setdefault(card.source, []).append(card.question)
    for questions in queues.values():
        questions.sort(key=lambda q: hashlib.sha256(q.encode()).hexdigest())
    chosen: list[str] = []
    while len(chosen) < k and any(queues.values()):
        for source in sorted(queues):
            if queues[source] and len(chosen) < k:
                chosen.append(queues[source].pop(0))
    return chosen


def sections(chunks: Sequence[Chunk]) -> dict[str, list[Chunk]]:
    """A file's passages grouped by their section (the topic level of their heading), in text order;
    passages before the first section are under ""."""
    depth = topic_depth(chunks)
    grouped: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        grouped.setdefault(chunk.heading[depth] if len(chunk.heading) > depth else "", []).append(chunk)
    return grouped


def question_of(chunk: Chunk) -> str:
    """A question to ask about a passage: the notes' own question in it, else its heading."""
    cards = pool.pool([chunk])
    return cards[0].question if cards else f"{' > '.join(chunk.heading[1:]) or chunk.source} 讲了什么？"


@dataclass(frozen=True)
class Overview:
    files: list[NoteFile]
    titles: dict[str, str]  # source -> title
    examples: list[str]
    passages: int


_last: list[tuple[list[Chunk], Overview]] = []  # the overview of the last index seen


def overview(chunks: list[Chunk]) -> Overview:
    """Files, titles and example questions of an index's chunks, computed once per index (a re-index
    gives a new list)."""
    if not _last or _last[0][0] is not chunks:
        found = files(chunks)
        _last[:] = [
            (chunks, Overview(found, {f.source: f.title for f in found}, examples(chunks), len(chunks)))
        ]
    return _last[0][1]


def section_of(chunk: Chunk, chunks: Sequence[Chunk]) -> str:
    """The section (`sections` key) `chunk` is in, among its file's `chunks`."""
    depth = topic_depth(chunks)
    return chunk.heading[depth] if len(chunk.heading) > depth else ""
