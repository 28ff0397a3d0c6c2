"""Read a notes folder into `Note`s, text kept verbatim.

Reads every `.md` / `.txt` file under the folder, recursively, in path order. Decodes UTF-8 (with or
without BOM; the BOM is dropped so offsets index the text a reader sees), then GB18030 (a superset of GBK,
common in Chinese notes). Line endings are kept as they are: `start` / `end` offsets of chunks index
`Note.text` exactly.

Does not: follow symlinked folders out of the corpus, read other formats (PDF, docx), or fix broken
markdown. A binary, undecodable, unreadable or oversized file is skipped with a one-line warning.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".md", ".txt")
MAX_BYTES = 20_000_000  # a note bigger than this is almost surely not a note


@dataclass(frozen=True)
class Note:
    source: str  # path relative to the corpus folder, with "/" separators
    text: str  # the decoded file text, verbatim
    sha256: str  # of the file's bytes: the manifest's change detector


class CorpusError(Exception):
    """The corpus folder itself cannot be used (missing, not a folder, no notes)."""


def note_paths(corpus: Path) -> list[Path]:
    """All note files under `corpus`, sorted by their relative path."""
    if not corpus.exists():
        raise CorpusError(f"notes folder not found: {corpus}")
    if not corpus.is_dir():
        raise CorpusError(f"not a folder: {corpus}")
    paths = []
    for root, dirs, files in os.walk(corpus):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths += [Path(root) / f for f in files if f.lower().endswith(SUFFIXES) and not f.startswith(".")]
    return sorted(paths, key=lambda p: p.relative_to(corpus).as_posix())


def decode(data: bytes) -> str:
    """UTF-8 (BOM dropped), else GB18030; raises ValueError for binary or undecodable bytes.

    >>> decode("注意力".encode("gbk"))
    '注意力'
    """
    if b"\x00" in data[:8192]:
        raise ValueError("binary file (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as e:
        raise ValueError("neither UTF-8 nor GB18030") from e
    if _control_share(text) > 0.01:
        raise ValueError("binary file (control characters)")
    return text


def _control_share(text: str) -> float:
    bad = sum(1 for c in text if ord(c) < 32 and c not in "\n\r\t\f")
    return bad / max(len(text), 1)


def read_note(path: Path, source: str, *, max_bytes: int = MAX_BYTES) -> Note:
    """One file -> Note; raises ValueError (with the reason) when it must be skipped."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ValueError(f"too large ({size / 1e6:.1f} MB > {max_bytes / 1e6:.0f} MB)")
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"unreadable ({e.strerror or e})") from e
    return Note(source=source, text=decode(data), sha256=hashlib.sha256(data).hexdigest())


def load_notes(
    corpus: Path, *, warn: Callable[[str], None] = print, max_bytes: int = MAX_BYTES
) -> list[Note]:
    """Every readable note under `corpus`; skipped files are reported through `warn`, one line each."""
    notes = []
    for path in note_paths(corpus):
        source = path.relative_to(corpus).as_posix()
        try:
            notes.append(read_note(path, source, max_bytes=max_bytes))
        except ValueError as e:
            warn(f"mianjing: skipped {source}: {e}")
    return notes
