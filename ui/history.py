"""Chats kept across reloads: one JSON file per browser session, `<index folder>/chats/<id>.json`, and a
chat exported as markdown (each answer with its sources: file, heading, character span).

A file is written whole under a temporary name, then renamed, so a crash never leaves half a chat; a file
that cannot be read is renamed `<id>.json.bad` (never deleted) and the reader is told in one line. Turns are
stored as the `Answer`s the pipeline returned (dataclasses as JSON) and read back into the same types, so
a reopened chat renders, and continues, like the live one.

Does not: render anything, or share chats between notes folders (each index folder has its own).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
import types
import typing
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from ui.render import Turn

FOLDER = "chats"
FORMAT = 1
ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}")


class ChatUnreadable(Exception):
    """A chat file that could not be read; it was moved aside to `.bad`."""


@dataclass(frozen=True)
class Saved:
    id: str
    first_question: str
    turns: int
    modified: float  # seconds since the epoch


def new_id() -> str:
    """`20261203-151500-a3f9`: sorts by creation time, unique enough for one person's chats."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def path(index_dir: Path, chat: str) -> Path:
    if not ID.fullmatch(chat):  # the id comes from the URL: never a path of its own
        raise ValueError(f"not a chat id: {chat!r}")
    return index_dir / FOLDER / f"{chat}.json"


def save(index_dir: Path, chat: str, turns: list[Turn]) -> None:
    """Write the chat whole (temporary file, then rename)."""
    target = path(index_dir, chat)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "turns": [asdict(t) for t in turns]}
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(index_dir: Path, chat: str) -> list[Turn]:
    """The chat's turns ([] when it has none yet); ChatUnreadable after moving a broken file aside."""
    source = path(index_dir, chat)
    if not source.is_file():
        return []
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        return [decode(Turn, t) for t in data["turns"]]
    except Exception as e:  # noqa: BLE001 - any damage means the same: keep the file aside, say so
        aside = source.with_name(source.name + ".bad")
        os.replace(source, aside)
        raise ChatUnreadable(
            f"chat {chat} could not be read ({type(e).__name__}: {e}); kept as {aside}"
        ) from e


def decode(kind: Any, value: Any) -> Any:
    """`value` (from JSON) as an instance of the type `kind`: dataclasses, lists, tuples, dicts, unions
    with None, and plain values."""
    if is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        known = {f.name for f in fields(kind)}
        given = {name: decode(hints[name], v) for name, v in value.items() if name in known}
        return kind(**given)  # type: ignore[operator]
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return decode(next(a for a in args if a is not type(None)), value)
    if origin is list:
        return [decode(args[0], v) for v in value]
    if origin is tuple:
        return tuple(decode(args[0], v) for v in value)
    if origin is dict:
        return {k: decode(args[1], v) for k, v in value.items()}
    return value


def saved(index_dir: Path, *, k: int = 20) -> list[Saved]:
    """The `k` most recently changed chats, newest first (unreadable ones are left for `load` to report)."""
    found = []
    for file in (index_dir / FOLDER).glob("*.json"):
        try:
            turns = json.loads(file.read_text(encoding="utf-8"))["turns"]
            first = turns[0]["question"] if turns else ""
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            first, turns = "(unreadable)", []
        found.append(Saved(file.stem, first, len(turns), file.stat().st_mtime))
    return sorted(found, key=lambda s: s.modified, reverse=True)[:k]


def markdown(turns: list[Turn], titles: dict[str, str]) -> str:
    """The chat as markdown: each question, its answer, and the answer's sources (title, file, heading,
    character span, the text shown to the model)."""
    out = ["# mianjing chat", ""]
    for t in turns:
        out += [f"## {t.question}", ""]
        if t.stopped is not None:
            out += [t.stopped, "", "*(stopped before the answer was finished)*", ""]
        elif t.answer is not None:
            searched = t.answer.diagnostics.query or t.answer.standalone_question
            if searched != t.question:
                out += [f"*searched as: {searched}*", ""]
            out += [t.answer.text, ""]
            out += _sources(t, titles)
        else:
            out += ["*(retrieval only: the passages found)*", ""]
            out += [f"- {_where(h.chunk, titles)}" for h in t.hits] + [""]
    return "\n".join(out)


def _sources(t: Turn, titles: dict[str, str]) -> list[str]:
    assert t.answer is not None
    cited = {c.n for c in t.answer.citations}
    lines = ["**Sources**", ""]
    for p in t.answer.passages:
        mark = "" if p.n in cited else " (not cited)"
        quote = " ".join(p.text.split())
        lines += [f"[{p.n}] {_where(p.chunk, titles)}{mark}", f"   > {quote}", ""]
    return lines


def _where(chunk: Any, titles: dict[str, str]) -> str:
    heading = " > ".join(chunk.heading[1:]) or chunk.source
    title = titles.get(chunk.source, chunk.source)
    return f"{title} — `{chunk.source}` › {heading}, characters {chunk.start}–{chunk.end}"
