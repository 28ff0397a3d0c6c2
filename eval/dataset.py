"""Eval datasets: JSONL items with evidence quotes, resolved to character spans in the notes.

Line format: `{"id", "question", "kind", "evidence": [{"source", "quote"}], "reference_answer",
"key_points"}`; `evidence: []` marks a question the notes cannot answer, `key_points` (optional) lists the
facts a correct answer states, each as alternative strings. A bad line (invalid JSON, unknown source, a quote
not found in its source) is reported with its line number and left out; the rest still load.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ingest.load import load_notes


@dataclass(frozen=True)
class Span:
    source: str
    start: int
    end: int
    quote: str = field(default="", compare=False)  # the evidence text, note.text[start:end]


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    kind: str
    spans: tuple[Span, ...]  # empty: unanswerable from the notes
    reference_answer: str = ""
    key_points: tuple[tuple[str, ...], ...] = ()  # facts a correct answer states, each as alternatives

    @property
    def answerable(self) -> bool:
        return bool(self.spans)


def load_dataset(path: Path, corpus: Path) -> tuple[list[Item], list[str]]:
    """(items, problems): each problem is one line naming the dataset line."""
    texts = {n.source: n.text for n in load_notes(corpus, warn=lambda _: None)}
    items: list[Item] = []
    problems: list[str] = []
    ids: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason})") from e
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = _item(_parse(line), texts, n)
        except json.JSONDecodeError as e:
            problems.append(f"{path.name}:{n}: invalid JSON ({e.msg}, column {e.colno})")
            continue
        except KeyError as e:
            problems.append(f"{path.name}:{n}: missing field {e}")
            continue
        except (ValueError, TypeError) as e:
            problems.append(f"{path.name}:{n}: {e}")
            continue
        if item.id in ids:
            problems.append(f"{path.name}:{n}: duplicate id {item.id!r}")
            continue
        ids.add(item.id)
        items.append(item)
    return items, problems


def _parse(line: str) -> dict:
    raw = json.loads(line)
    if not isinstance(raw, dict):
        raise ValueError(f"not a JSON object: {line.strip()[:30]!r}")
    if not isinstance(raw.get("evidence", []), list):
        raise ValueError('"evidence" is not a list')
    return raw


def _item(raw: dict, texts: dict[str, str], n: int) -> Item:
    spans = []
    if not str(raw["question"]).strip():
        raise ValueError("empty question")
    for ev in raw["evidence"]:
        if not isinstance(ev, dict):
            raise ValueError(f'evidence is not a {{"source", "quote"}} object: {ev!r:.30}')
        text = texts.get(ev["source"])
        if text is None:
            raise ValueError(f"unknown source {ev['source']!r}")
        at = text.find(ev["quote"])
        if at < 0 or not ev["quote"]:
            raise ValueError(f"quote not found in {ev['source']}: {ev['quote'][:30]!r}")
        spans.append(Span(ev["source"], at, at + len(ev["quote"]), ev["quote"]))
    return Item(
        str(raw.get("id", f"line{n}")),
        str(raw["question"]),
        str(raw.get("kind", "")),
        tuple(spans),
        str(raw.get("reference_answer", "")),
        _key_points(raw.get("key_points", [])),
    )


def _key_points(raw: object) -> tuple[tuple[str, ...], ...]:
    """[["线性缩放", "linear scaling"], ["√N"]] -> tuples; anything else is a ValueError for the line."""
    if not isinstance(raw, list) or not all(
        isinstance(point, list) and point and all(isinstance(a, str) and a.strip() for a in point)
        for point in raw
    ):
        raise ValueError('"key_points" must be a list of non-empty lists of non-empty strings')
    return tuple(tuple(point) for point in raw)


def subset(items: list[Item], limit: int | None) -> list[Item]:
    """The first `limit` items, answerable and unanswerable in their dataset shares (at least one of each
    kind present), in dataset order: the one meaning of `mianjing eval --limit`."""
    if limit is None or limit >= len(items):
        return list(items)
    unanswerable = [i for i in items if not i.answerable]
    share = round(limit * len(unanswerable) / len(items))
    n_un = min(len(unanswerable), max(share, 1 if unanswerable and limit > 1 else 0))
    answerable = [i for i in items if i.answerable][: limit - n_un]
    keep = {id(i) for i in [*unanswerable[:n_un], *answerable]}
    return [i for i in items if id(i) in keep]


def relevant(item: Item, source: str, start: int, end: int) -> bool:
    """The relevance rule: same source and [start, end) overlaps one of the item's quote spans."""
    return any(s.source == source and start < s.end and s.start < end for s in item.spans)


def matches(item: Item, source: str, start: int, end: int) -> frozenset[int]:
    """Which of the item's evidence spans (by position) [start, end) of `source` overlaps; see `relevant`."""
    return frozenset(
        n for n, s in enumerate(item.spans) if s.source == source and start < s.end and s.start < end
    )


MARKER = re.compile(r"^\s*(?:[-*+•](?:\s+|$)|\d{1,3}(?:[.)](?:\s+|$)|[、．]\s*)|[(（]\d{1,3}[)）]\s*)+")


def read_questions(path: Path) -> list[str]:
    """The questions of a file, one per line: a JSONL line's `question` field, or, outside a .jsonl file,
    a plain line itself (a question list pasted from notes: a leading "- ", "* ", "1. ", "1、" or "(1)" is
    dropped, "#" lines are headings or comments, a line that is not JSON is a question even if it starts
    with "{"). A UTF-8 BOM is allowed; a bad JSONL line, a file without questions or an unreadable one
    is a one-line ValueError."""
    plain = path.suffix.lower() not in (".jsonl", ".json")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    questions = []
    for n, line in enumerate(lines, start=1):
        if not line.strip() or (plain and line.lstrip().startswith("#")):
            continue
        if plain and not line.lstrip().startswith("{"):
            if text := MARKER.sub("", line).strip():
                questions.append(text)
            continue
        try:
            question = json.loads(line)["question"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            if plain:  # "{x} 表示什么？" in a plain list is a question, not broken JSON
                questions.append(line.strip())
                continue
            raise ValueError(f'{path}:{n}: not a JSON object with a "question" field ({e})') from e
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f'{path}:{n}: "question" must be a non-empty string, not {question!r}')
        questions.append(question)
    if not questions:
        raise ValueError(f"{path}: no questions in it (one per line)")
    return questions
