"""Read a notes folder into `Note`s, text kept verbatim.

Reads every `.md` / `.txt` file under the folder, recursively, in path order. Decodes UTF-8 (with or
without BOM; the BOM is dropped so offsets index the text a reader sees), UTF-16 with a BOM, then GB18030
(a superset of GBK, common in Chinese notes). A note with a few undecodable bytes (up to 1%, at least 8) is
kept, read as UTF-8 if that leaves few, else as GB18030, each bad byte replaced by U+FFFD, and
`Note.problem` says how many and where the first is (byte offset and line). Line endings are kept as they
are: `start` / `end` offsets of chunks index `Note.text` exactly.

Does not: follow symlinks out of the corpus (a linked file pointing outside, and any linked folder, is
skipped with a warning), read other formats (PDF, docx), or fix broken markdown. A binary, undecodable,
unreadable or oversized file is skipped with a one-line warning.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

SUFFIXES = (".md", ".txt")
MAX_BYTES = 20_000_000  # a note bigger than this is almost surely not a note
MAX_BAD = 0.01  # share of undecodable bytes up to which a note is kept, the bad bytes replaced
MIN_BAD = 8  # undecodable bytes a note may have whatever its size (a short note with a few bad bytes)


@dataclass(frozen=True)
class Note:
    source: str  # path relative to the corpus folder, with "/" separators
    text: str  # the decoded file text, verbatim
    sha256: str  # of the file's bytes: the manifest's change detector
    problem: str = ""  # what could not be decoded and where ("" when the whole file was)


class CorpusError(Exception):
    """The corpus folder itself cannot be used (missing, not a folder, no notes)."""


def note_paths(corpus: Path, *, linked: list[str] | None = None) -> list[Path]:
    """All note files under `corpus`, sorted by their relative path; the linked folders, which are not
    followed, are added to `linked`."""
    if not corpus.exists():
        raise CorpusError(f"notes folder not found: {corpus}")
    if not corpus.is_dir():
        raise CorpusError(f"not a folder: {corpus}")
    paths = []
    for root, dirs, files in os.walk(corpus):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if linked is not None:
            linked += [
                (Path(root) / d).relative_to(corpus).as_posix() for d in dirs if Path(root, d).is_symlink()
            ]
        paths += [Path(root) / f for f in files if f.lower().endswith(SUFFIXES) and not f.startswith(".")]
    return sorted(paths, key=lambda p: p.relative_to(corpus).as_posix())


def decode(data: bytes) -> tuple[str, str]:
    """(text, problem): UTF-8 (BOM dropped), UTF-16 with a BOM, GB18030, or either with a few bad bytes
    replaced (problem says how many and where); ValueError for binary or undecodable bytes.

    >>> decode("注意力".encode("gbk"))
    ('注意力', '')
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise ValueError(f"broken UTF-16 at byte {e.start}") from e
        if _text_share(text) < 0.9:  # random bytes after an accidental BOM decode to any code point
            raise ValueError("binary file (not UTF-16 text)")
        return text, ""
    if b"\x00" in data[:8192]:
        raise ValueError("binary file (NUL bytes)")
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8"), ""
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        return _partly(data, bom)
    if _control_share(text) > 0.01:
        raise ValueError("binary file (control characters)")
    return text, ""


def _partly(data: bytes, bom: int) -> tuple[str, str]:
    """Text from UTF-8, else GB18030, with its few undecodable bytes replaced by U+FFFD, and the problem
    in words; ValueError when there are many."""
    body, most = data[bom:], max(MIN_BAD, MAX_BAD * (len(data) - bom))
    for encoding in ("utf-8",) if bom else ("utf-8", "gb18030"):  # GB18030 only when UTF-8 fails
        text = body.decode(encoding, errors="replace")
        bad = text.count("\ufffd") - body.decode(encoding, errors="ignore").count("\ufffd")
        first = _first_bad(body, encoding)
        line = body[:first].count(b"\n") + 1
        where = f"the first at byte {bom + first} (line {line})"
        if bad <= most and _control_share(text) <= 0.01:
            break
    else:
        raise ValueError(f"neither UTF-8 nor GB18030 ({bad} undecodable bytes, {where})")
    read_as = "" if encoding == "utf-8" else ", read as GB18030"
    return text, f"{bad} undecodable byte(s) replaced by \ufffd, {where}{read_as}"


def _first_bad(data: bytes, encoding: str) -> int:
    try:
        data.decode(encoding)
    except UnicodeDecodeError as e:
        return e.start
    return 0


def _text_share(text: str) -> float:
    """Share of characters from the blocks notes are written in: ASCII and Latin, general and CJK
    punctuation, CJK ideographs, full-width forms."""
    blocks = ((0x09, 0x24F), (0x2000, 0x206F), (0x2190, 0x22FF), (0x3000, 0x303F), (0x3400, 0x9FFF))
    common = sum(
        1 for c in text if any(lo <= ord(c) <= hi for lo, hi in blocks) or 0xFF00 <= ord(c) <= 0xFFEF
    )
    return common / max(len(text), 1)


def _control_share(text: str) -> float:
    bad = sum(1 for c in text if ord(c) < 32 and c not in "\n\r\t\f")
    return bad / max(len(text), 1)


def read_note(path: Path, source: str, *, max_bytes: int = MAX_BYTES) -> Note:
    """One file -> Note; raises ValueError (with the reason) when it must be skipped."""
    try:
        stat = path.stat()
        if not S_ISREG(stat.st_mode):  # a pipe or device named .md: reading it would wait forever
            raise ValueError("not a regular file")
        size = stat.st_size
        if size > max_bytes:
            raise ValueError(f"too large ({size / 1e6:.1f} MB > {max_bytes / 1e6:.0f} MB)")
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"unreadable ({e.strerror or e})") from e
    text, problem = decode(data)
    return Note(source=source, text=text, sha256=hashlib.sha256(data).hexdigest(), problem=problem)


def inside(corpus: Path, source: str) -> Path:
    """The file `source` names under `corpus`; ValueError when it resolves outside the folder
    (`../../etc/passwd`, an absolute path, a symlink out)."""
    path = (corpus / source).resolve()
    if not path.is_relative_to(corpus.resolve()):
        raise ValueError(f"{source} is outside the notes folder")
    return path


def load_notes(
    corpus: Path, *, warn: Callable[[str], None] = print, max_bytes: int = MAX_BYTES
) -> list[Note]:
    """Every readable note under `corpus`; skipped files are reported through `warn`, one line each."""
    notes: list[Note] = []
    linked: list[str] = []
    for path in note_paths(corpus, linked=linked):
        source = path.relative_to(corpus).as_posix()
        try:
            notes.append(read_note(inside(corpus, source), source, max_bytes=max_bytes))
        except ValueError as e:
            warn(f"mianjing: skipped {source}: {e}")
            continue
        if notes[-1].problem:
            warn(f"mianjing: {source}: {notes[-1].problem}; the rest of the note is kept")
    for folder in linked:
        warn(f"mianjing: skipped {folder}/: a linked folder is not followed (copy its notes in instead)")
    return notes
