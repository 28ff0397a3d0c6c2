"""Key points of the notes' answer: what a good answer to a card must say, each quoted from its passage.

Two ways, the same result (`Point`s, each with the exact sentence of the notes it stands for):
- `sentence_points`, no model: the passage's informative sentences (the title line, markup, images and
  sentences that only restate the question left out), the first `limit` in text order (notes lead with
  the main points; long sentences are not preferred: they are the hardest to cover);
- `model_points`: the local model writes 2-5 lines `要点：…` per passage (greedy); a line whose words are
  mostly not in the passage is rejected (an invented point), each kept point is cited by the sentence of the
  passage closest to it. An answer without one usable line is a parse failure: the sentence points are used
  and the failure is returned with the raw text. Model answers are cached once per passage, by sha256 of
  (PROMPT_VERSION, model, passage), in `<cache>/practice/points-<model>-<PROMPT_VERSION>.jsonl`.

Does not: grade an answer (see `grade`), or call the model for a passage it has cached.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from ingest.chunk import Chunk, sentence_spans
from practice.pool import normalize
from retriever.tokenize import bigrams

PROMPT_VERSION = "p2"  # bump on any change to SYSTEM, messages() or parse() (the cache holds parsed points)
LIMIT = 6  # most key points per passage
GROUNDED = 0.5  # share of a model point's units that must occur in the passage
PASSAGE_CHARS = 900  # longest passage text shown to the model
IMAGE = re.compile(r"!?\[[^\]]*\]\([^)]*\)|<img[^>]*>|!\[[^\]]*$")
MARKS = re.compile(r"[*#>|`_~=\s\-•○。①-⑩]+")
LEAD = re.compile(r"^[\s*#>+\-•○。①-⑩]+")
POINT_LINE = re.compile(r"^[\s\-*•>\d.、)）]*(?:要点|key point|point)\s*\d*\s*[:：]\s*(.*)$", re.IGNORECASE)
BULLET = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.、)）])\s+(.+)$")

SYSTEM = (
    "你从面试笔记的一段文字中提取关键要点：回答这个问题时必须说到的事实。"
    "只写这段文字里写明的内容，尽量用原文的词，不要补充。"
    "输出 2 到 5 行，每行的格式是“要点：<一个要点>”，不要输出别的内容。"
)


class Model(Protocol):
    def complete(self, messages: list[tuple[str, str]]) -> str: ...


@dataclass(frozen=True)
class Point:
    text: str  # the key point: the model's words, or the notes' own sentence
    chunk: str  # id of the passage it comes from
    source: str
    start: int  # note text[start:end] == quote: the sentence of the notes it stands for
    end: int
    quote: str


def sentence_points(chunk: Chunk, *, limit: int = LIMIT) -> list[Point]:
    """The passage's informative sentences as key points (see the module docstring)."""
    title = bigrams(" ".join(chunk.heading[1:]))
    candidates = []
    for a, b in _body_sentences(chunk):
        units = bigrams(_plain(chunk.text[a:b])) - title
        if len(units) >= 3:
            candidates.append((len(units), a, b))
    kept = candidates[:limit]
    return [_point(chunk, LEAD.sub("", chunk.text[a:b]).strip(), a, b) for _, a, b in kept]


def _body_sentences(chunk: Chunk) -> list[tuple[int, int]]:
    """Sentences of the passage after its leading title lines (those its heading path names)."""
    path = "".join(normalize(title) for title in chunk.heading[1:])
    begin = 0
    for line in chunk.text.splitlines(keepends=True):
        if normalize(line) and normalize(line) not in path:
            break
        begin += len(line)
    return [(a, b) for a, b in sentence_spans(chunk.text, begin) if _plain(chunk.text[a:b])]


def _plain(text: str) -> str:
    return MARKS.sub(" ", IMAGE.sub(" ", text)).strip()


def _point(chunk: Chunk, text: str, a: int, b: int) -> Point:
    while a < b and chunk.text[a].isspace():
        a += 1
    while b > a and chunk.text[b - 1].isspace():
        b -= 1
    return Point(text, chunk.id, chunk.source, chunk.start + a, chunk.start + b, chunk.text[a:b])


def messages(chunk: Chunk) -> list[tuple[str, str]]:
    path = " > ".join(chunk.heading[1:]) or chunk.source
    return [("system", SYSTEM), ("user", f"标题：{path}\n正文：{chunk.text[:PASSAGE_CHARS]}")]


def parse(raw: str, chunk: Chunk) -> list[Point]:
    """The grounded `要点：` lines of a model answer (and bullet lines after a `要点：` header), each cited
    by its closest sentence of the passage. A point that only restates the passage's title is no point:
    "要点：BN和LN的区别" would count any answer as covering it."""
    spans = _body_sentences(chunk) or [(0, len(chunk.text))]
    passage, title = bigrams(chunk.text), bigrams(" ".join(chunk.heading[1:]))
    out: list[Point] = []
    listed = False  # a 要点： header was seen: bullet lines below it are points too
    for line in raw.splitlines():
        m = POINT_LINE.match(line.strip())
        bullet = BULLET.match(line) if listed and not m else None
        listed = listed or m is not None
        text = (m.group(1) if m else bullet.group(1) if bullet else "").strip().strip('“”"')
        units = bigrams(_plain(text))
        if len(units - title) < 3 or len(units & passage) < GROUNDED * len(units):
            continue
        a, b = max(spans, key=lambda s: len(units & bigrams(chunk.text[s[0] : s[1]])))
        out.append(_point(chunk, text, a, b))
    return out[:LIMIT]


class PointCache:
    """Model key points per passage, one JSON line each, appended as they are made."""

    def __init__(self, cache_dir: Path, model: str) -> None:
        safe = re.sub(r"[^\w.\-]+", "_", model)
        self.path = cache_dir / "practice" / f"points-{safe}-{PROMPT_VERSION}.jsonl"
        self.model = model
        self.records: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                    self.records[record["key"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # an interrupted write: that passage is asked again

    def key(self, chunk: Chunk) -> str:
        return hashlib.sha256(json.dumps([PROMPT_VERSION, self.model, chunk.indexed]).encode()).hexdigest()

    def get(self, chunk: Chunk) -> dict | None:
        return self.records.get(self.key(chunk))

    def put(self, chunk: Chunk, raw: str, points: list[Point], failure: str) -> None:
        record: dict = {
            "key": self.key(chunk),
            "chunk": chunk.id,
            "raw": raw,
            "points": [asdict(p) for p in points],
            "failure": failure,
        }
        self.records[record["key"]] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def model_points(chunk: Chunk, model: Model, cache: PointCache) -> tuple[list[Point], str]:
    """(key points, parse failure or ""): from the cache, else from the model; a failure falls back to
    the sentence points."""
    record = cache.get(chunk)
    if record is None:
        raw = model.complete(messages(chunk))
        points = parse(raw, chunk)
        failure = "" if points else f"no usable 要点 line in the model's answer: {raw.strip()[:80]!r}"
        cache.put(chunk, raw, points, failure)
    else:
        points = [Point(**p) for p in record["points"]]
        failure = record["failure"]
    return (points, "") if points else (sentence_points(chunk), failure)


def key_points(
    chunks: Sequence[Chunk], *, model: Model | None = None, cache: PointCache | None = None
) -> tuple[list[Point], list[str]]:
    """Key points of the notes' answer over its passages, and the parse failures met."""
    points: list[Point] = []
    failures: list[str] = []
    for chunk in chunks:
        if model is not None and cache is not None:
            found, failure = model_points(chunk, model, cache)
            failures += [failure] if failure else []
        else:
            found = sentence_points(chunk)
        points += found
    return points, failures
