"""Eval datasets: JSONL items with evidence quotes, resolved to character spans in the notes.

Line format: `{"id", "question", "kind", "evidence": [{"source", "quote"}], "reference_answer"}`;
`evidence: []` marks a question the notes cannot answer. A bad line (invalid JSON, unknown source, a quote
not found in its source) is reported with its line number and left out; the rest still load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ingest.load import load_notes


@dataclass(frozen=True)
class Span:
    source: str
    start: int
    end: int


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    kind: str
    spans: tuple[Span, ...]  # empty: unanswerable from the notes
    reference_answer: str = ""

    @property
    def answerable(self) -> bool:
        return bool(self.spans)


def load_dataset(path: Path, corpus: Path) -> tuple[list[Item], list[str]]:
    """(items, problems): each problem is one line naming the dataset line."""
    texts = {n.source: n.text for n in load_notes(corpus, warn=lambda _: None)}
    items, problems = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(_item(json.loads(line), texts, n))
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"{path.name}:{n}: {e}")
    return items, problems


def _item(raw: dict, texts: dict[str, str], n: int) -> Item:
    spans = []
    for ev in raw["evidence"]:
        text = texts.get(ev["source"])
        if text is None:
            raise ValueError(f"unknown source {ev['source']!r}")
        at = text.find(ev["quote"])
        if at < 0 or not ev["quote"]:
            raise ValueError(f"quote not found in {ev['source']}: {ev['quote'][:30]!r}")
        spans.append(Span(ev["source"], at, at + len(ev["quote"])))
    return Item(
        str(raw.get("id", f"line{n}")),
        str(raw["question"]),
        str(raw.get("kind", "")),
        tuple(spans),
        str(raw.get("reference_answer", "")),
    )


def relevant(item: Item, source: str, start: int, end: int) -> bool:
    """The relevance rule: same source and [start, end) overlaps one of the item's quote spans."""
    return any(s.source == source and start < s.end and s.start < end for s in item.spans)
