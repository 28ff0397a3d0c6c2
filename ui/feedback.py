"""Feedback on answers: one JSON line per 👍 / 👎, appended to `<index folder>/feedback.jsonl`.

Each line: {"time", "vote" ("up" | "down"), "comment", "question", "standalone_question", "answer",
"refused", "cited_ids", "llm", "corpus"}; a changed vote or comment appends a new line, so the last line
for a question wins.
The index folder already belongs to one notes folder, so feedback stays with the notes it judged.

Does not: read feedback back or score it (eval can), or send it anywhere.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from assistant.answer import Answer
from assistant.settings import Settings

FILE = "feedback.jsonl"
VOTES = ("down", "up")  # st.feedback("thumbs") gives 0 for 👎 and 1 for 👍


def path(settings: Settings) -> Path:
    return settings.index_dir / FILE


def record(result: Answer, vote: str, settings: Settings, *, comment: str = "") -> dict:
    """The line written for `vote` (and the person's `comment`) on `result`."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "vote": vote,
        "comment": comment.strip(),
        "question": result.question,
        "standalone_question": result.standalone_question,
        "answer": result.text,
        "refused": result.refused,
        "cited_ids": [c.id for c in result.citations],
        "llm": settings.llm,
        "corpus": str(settings.corpus),
    }


def append(file: Path, line: dict) -> None:
    """Append one JSON line (a single write, so concurrent appends do not interleave)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("a", encoding="utf-8") as sink:
        sink.write(json.dumps(line, ensure_ascii=False) + "\n")
