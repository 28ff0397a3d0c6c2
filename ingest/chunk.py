"""Cut a `Note` into `Chunk`s along the notes' own structure, with exact character spans.

A question unit starts at a markdown heading, a whole-line bold title (`**3、如何让llm具备工具调用能力**`),
a short unmarked section title standing alone before a list, or a top-level numbered / bulleted question
(`5. RAG切分方法` followed by an indented answer, `- 4. …？`). One chunk = one unit: the title line and its
answer. Then:
- a title with no text of its own merges into its first sub-unit (`## 3. …` + `**1. 学习率…**`);
- runs of questions without answers (a question bank) are grouped into one chunk, `has_answer=False`;
- a preamble shorter than `min_chars` joins the first unit; each question keeps its own chunk;
- a unit longer than `max_chars` is split on sentence ends (。！？；and newlines) with ~`overlap` characters
  repeated, never inside a code block, a table or a `$$` formula.

`note.text[chunk.start:chunk.end] == chunk.text` always holds. Does not: parse markdown into a tree,
render anything, or look at images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ingest.load import Note

MD_HEADING = re.compile(r"#{1,6}[ \t]+(\S.*?)[ \t#]*$")
BOLD_LINE = re.compile(r"\*\*([^*\n]{2,80})\*\*[ \t]*$")
NUMBERED = re.compile(r"(?:- )?\d{1,3}[.、．][ \t]*\S.{0,118}$")
BULLET_QUESTION = re.compile(r"- \d{1,3}[.、．].*[？?]")
QUESTION_MARK = re.compile(r"[？?]|<u>")
FENCE = re.compile(r"[ \t]*(```|~~~)")
SENTENCE_END = re.compile(r"[。！？；!?;]+[”’\"')）]*|\n+")
MARKUP = re.compile(r"!\[[^\]]*\]\([^)]*\)|<[^>\n]{1,40}>|[*#>|`_~\-=+\s]|[？?。：:]")

VERSION = "2"  # bump when chunk_note's output can change: indexes record it and rebuild
# Levels of the title kinds, markdown headings being 1-6: deeper titles nest under shallower ones.
PSEUDO, BOLD, QUESTION = 7, 8, 9


@dataclass(frozen=True)
class Chunk:
    id: str  # stable, readable: "002_63a0…txt#1 Transformer/12"
    source: str  # note path relative to the corpus folder
    start: int  # note.text[start:end] == text
    end: int
    heading: tuple[str, ...]  # file > section > question
    text: str
    has_answer: bool  # False for a bare question, an empty or image-only answer, a question list

    @property
    def indexed(self) -> str:
        """What BM25 and the embedder see: the heading path, then the passage."""
        return self.indexed_part(0, len(self.text))

    def indexed_part(self, start: int, end: int) -> str:
        """What the embedder sees of the window `text[start:end]` (`windows`): the heading path, then it."""
        return " > ".join(self.heading) + "\n" + self.text[start:end]


@dataclass(frozen=True)
class _Unit:
    start: int
    body: int  # where the text after the title line starts
    end: int
    level: int
    heading: tuple[str, ...]


def chunk_note(note: Note, *, max_chars: int = 800, overlap: int = 100, min_chars: int = 60) -> list[Chunk]:
    """Note -> chunks in text order, spans covering every non-blank character."""
    units = _merge(_units(note), note.text, max_chars=max_chars, min_chars=min_chars)
    chunks: list[Chunk] = []
    for unit in units:
        spans = _split(
            note.text, unit.start, unit.end, max_chars=max_chars, overlap=overlap, min_chars=min_chars
        )
        for n, (start, end) in enumerate(spans):
            text = note.text[start:end]
            titled = n == 0 and unit.level > 0  # the first piece opens with the title line
            chunks.append(Chunk("", note.source, start, end, unit.heading, text, has_answer(text, titled)))
    return _name(chunks)


def _lines(text: str) -> list[tuple[int, str]]:
    """(offset, line without its newline) for every line."""
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        out.append((pos, line.rstrip("\r\n")))
        pos += len(line)
    return out


def _title(line: str, lines: list[tuple[int, str]], i: int) -> tuple[int, str] | None:
    """(level, title) when line i opens a unit, else None."""
    if m := MD_HEADING.match(line):
        return len(line) - len(line.lstrip("#")), m.group(1)
    if m := BOLD_LINE.match(line):
        return BOLD, m.group(1)
    if NUMBERED.match(line):
        nxt = _next_nonblank(lines, i)
        indented_answer = nxt is not None and nxt[:2] in ("  ", " \t", "\t") or (nxt or "").startswith("   ")
        if BULLET_QUESTION.match(line) or (
            not line.startswith("- ") and (QUESTION_MARK.search(line) or indented_answer)
        ):
            return QUESTION, line
    if _is_pseudo_title(line, lines, i):
        return PSEUDO, line
    return None


def _next_nonblank(lines: list[tuple[int, str]], i: int) -> str | None:
    for _, line in lines[i + 1 : i + 4]:
        if line.strip():
            return line
    return None


def _is_pseudo_title(line: str, lines: list[tuple[int, str]], i: int) -> bool:
    """A short unmarked line between blank lines, followed by a list of questions: a section title."""
    if not (2 <= len(line.strip()) <= 30) or line[0].isspace() or line.startswith("-"):
        return False
    if re.search(r"[。，,：:；;！!？?]$", line.strip()) or (i > 0 and lines[i - 1][1].strip()):
        return False
    nxt = _next_nonblank(lines, i)
    return nxt is not None and bool(BULLET_QUESTION.match(nxt) or NUMBERED.match(nxt))


def _clean(title: str) -> str:
    title = re.sub(r"</?u>|\*\*|<[^>]+>", "", title).strip(" \t-")
    return title[:80]


def _units(note: Note) -> list[_Unit]:
    """Split the note at title lines (outside code fences and $$ blocks)."""
    lines = _lines(note.text)
    opens: list[tuple[int, int, int, str]] = []  # (line index, offset, level, title)
    in_fence = in_formula = False
    fences = _paired([i for i, (_, line) in enumerate(lines) if FENCE.match(line)])
    formulas = _paired([i for i, (_, line) in enumerate(lines) if _opens_formula(line)])
    for i, (offset, line) in enumerate(lines):
        if i in fences:
            in_fence = not in_fence
            continue
        if i in formulas and not in_fence:
            in_formula = not in_formula
            continue
        if in_fence or in_formula or not line.strip():
            continue
        if found := _title(line, lines, i):
            opens.append((i, offset, found[0], _clean(found[1])))
    units, stack = [], [(0, note.source)]
    first = opens[0][1] if opens else len(note.text)
    if note.text[:first].strip():
        units.append(_Unit(0, 0, first, 0, (note.source,)))
    for n, (i, offset, level, title) in enumerate(opens):
        while stack[-1][0] >= level and len(stack) > 1:
            stack.pop()
        stack.append((level, title))
        end = opens[n + 1][1] if n + 1 < len(opens) else len(note.text)
        body = lines[i + 1][0] if i + 1 < len(lines) else end
        units.append(_Unit(offset, min(body, end), end, level, tuple(t for _, t in stack)))
    return units


def _opens_formula(line: str) -> bool:
    s = line.strip()
    return s == "$$" or (s.startswith("$$") and s.count("$$") == 1)


def _paired(marks: list[int]) -> set[int]:
    """The fence (or $$) lines that open and close in pairs; an opener never closed is left out, so it
    cannot swallow the rest of the note."""
    return set(marks[: len(marks) - len(marks) % 2])


def _merge(units: list[_Unit], text: str, *, max_chars: int, min_chars: int) -> list[_Unit]:
    """Fold bare titles into their first child, then group unanswered runs and join tiny units."""
    folded: list[_Unit] = []
    for unit in units:
        prev = folded[-1] if folded else None
        if (
            prev
            and _bare(prev, text)
            and len(unit.heading) > len(prev.heading)
            and unit.heading[: len(prev.heading)] == prev.heading
        ):
            folded[-1] = replace(unit, start=prev.start)  # a title without text leads into its first child
        elif prev and prev.level == 0 and len(text[prev.start : prev.end].strip()) < min_chars:
            folded[-1] = replace(unit, start=prev.start)  # a tiny preamble joins the first unit
        else:
            folded.append(unit)
    out: list[_Unit] = []
    for unit in folded:
        prev = out[-1] if out else None
        if (
            prev
            and unit.end - prev.start <= max_chars
            and _unanswered(prev, text)
            and _unanswered(unit, text)
            and _related(prev, unit)
        ):
            common = _common(prev.heading, unit.heading)  # a question list is named by its section
            out[-1] = replace(prev, end=unit.end, heading=common, level=min(prev.level, unit.level))
        else:
            out.append(unit)
    return out


def _same_parent(a: _Unit, b: _Unit) -> bool:
    return a.heading[:-1] == b.heading[:-1]


def _related(a: _Unit, b: _Unit) -> bool:
    """Siblings, or b inside a."""
    return _same_parent(a, b) or b.heading[: len(a.heading)] == a.heading


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[: max(n, 1)]


def _bare(unit: _Unit, text: str) -> bool:
    return not text[unit.body : unit.end].strip()


def _unanswered(unit: _Unit, text: str) -> bool:
    return not _answer_chars(text[unit.body : unit.end])


def _answer_chars(body: str) -> int:
    """Characters of real answer text: markup, images, bare questions and section titles not counted."""
    kept = [
        line
        for line in body.splitlines()
        if line.strip() and not _is_question(line.strip()) and not _is_section_title(line)
    ]
    return len(MARKUP.sub("", "".join(kept)))


def _is_section_title(line: str) -> bool:
    """An unmarked short title such as 'LLMs损失函数篇(19题)', flush left, without punctuation."""
    return (
        len(line) <= 30
        and not line[0].isspace()
        and not re.match(r"[-*+\d]", line)
        and not re.search(r"[，,。：:；;]", line)
    )


def _is_question(line: str) -> bool:
    """A bare question line: numbered or bulleted with a question mark, or short and ending in one."""
    if re.match(r"- \d{1,3}[.、．]", line):
        return True  # a question bank's "- 15. 推导一下…" line
    numbered = NUMBERED.match(line) or re.match(r"[-*+] ", line)
    return bool(numbered and QUESTION_MARK.search(line) or len(line) <= 100 and line[-1] in "？?")


def has_answer(text: str, titled: bool) -> bool:
    """Does the passage hold answer text, beyond its own title line?"""
    body = text.split("\n", 1)[1] if titled and "\n" in text else "" if titled else text
    return _answer_chars(body) >= 10


def _split(
    text: str, start: int, end: int, *, max_chars: int, overlap: int, min_chars: int
) -> list[tuple[int, int]]:
    """Spans of at most ~max_chars covering [start, end), cut at sentence ends, blocks kept whole."""
    start, end = _trim(text, start, end)
    if end - start <= max_chars:
        return [(start, end)] if end > start else []
    atoms = _atoms(text, start, end, max_chars=max_chars)
    spans, i = [], 0
    while i < len(atoms):
        j, size = i, 0
        while j < len(atoms) and (j == i or size < min_chars or size + _len(atoms[j]) <= max_chars):
            size += _len(atoms[j])
            j += 1
        if j < len(atoms) and atoms[-1][1] - atoms[j][0] < min_chars:
            j = len(atoms)  # a tiny tail stays with this piece
        spans.append(_trim(text, atoms[i][0], atoms[j - 1][1]))
        if j == len(atoms):
            break
        back = j  # repeat up to `overlap` characters of whole sentences, if the next piece has room
        while (
            back - 1 > i
            and atoms[j - 1][1] - atoms[back - 1][0] <= overlap
            and atoms[j][1] - atoms[back - 1][0] <= max_chars
        ):
            back -= 1
        i = back
    return spans


def _len(atom: tuple[int, int]) -> int:
    return atom[1] - atom[0]


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def atoms(text: str, *, max_chars: int = 400) -> list[tuple[int, int]]:
    """(start, end) of the sentences and list items of `text`, with each table, fenced code block and $$
    formula as one atom (the units an answer's evidence is made of)."""
    return [_trim(text, a, b) for a, b in _atoms(text, 0, len(text), max_chars=max_chars)]


WINDOW = 120  # characters of whole atoms in a window (chosen for practice's coverage verdicts; see README)


def windows(text: str, size: int = WINDOW) -> list[tuple[int, int]]:
    """`text` cut between atoms into windows of at most `size` characters (a longer atom is one window):
    their (start, end) in `text`; the whole text when it has no words. The index embeds each window of a
    chunk under its heading path, so a question about one item of a long passage meets that item alone."""
    out: list[tuple[int, int]] = []
    start = end = None
    for a, b in atoms(text):
        if start is not None and end is not None and b - start > size:
            out.append((start, end))
            start = None
        start, end = (a if start is None else start), b
    if start is not None and end is not None:
        out.append((start, end))
    return [(a, b) for a, b in out if text[a:b].strip()] or [(0, len(text))]


def _atoms(text: str, start: int, end: int, *, max_chars: int) -> list[tuple[int, int]]:
    """Sentences, with code blocks, tables and $$ formulas as single atoms. Bounded: a sentence longer than
    2 x max_chars (text without sentence ends) is cut into pieces of max_chars, a block longer than
    8 x max_chars into pieces of 2 x max_chars."""
    atoms, pos = [], start
    for block_start, block_end in _blocks(text, start, end):
        atoms += [
            p for a, b in sentence_spans(text, pos, block_start) for p in _cut(text, a, b, max_chars, 2)
        ]
        atoms += _cut(text, block_start, block_end, 2 * max_chars, 4)
        pos = block_end
    return atoms + [p for a, b in sentence_spans(text, pos, end) for p in _cut(text, a, b, max_chars, 2)]


def _cut(text: str, start: int, end: int, size: int, factor: int) -> list[tuple[int, int]]:
    """[start, end) whole when at most factor x size long, else pieces of at most `size`, each ending at
    the last line end, else the last space, in its window (else cut hard)."""
    if end - start <= factor * size:
        return [(start, end)]
    pieces = []
    while end - start > size:
        window = text[start : start + size]
        at = window.rfind("\n") + 1 or window.rfind(" ") + 1 or size
        pieces.append((start, start + at))
        start += at
    return pieces + [(start, end)]


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of each sentence of text[start:end], cut after 。！？；!?; (with any closing quote or
    bracket) and at newlines; blank pieces left out. The one sentence splitter of mianjing.

    >>> sentence_spans("KV Cache 省时间。用显存换；对吧")
    [(0, 13), (13, 18), (18, 20)]
    """
    end = len(text) if end is None else end
    out, pos = [], start
    for m in SENTENCE_END.finditer(text, start, end):
        if m.end() > pos:
            out.append((pos, m.end()))
            pos = m.end()
    if pos < end:
        out.append((pos, end))
    return [(a, b) for a, b in out if text[a:b].strip()]


def _blocks(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of fenced code, $$ formulas and runs of table rows inside [start, end)."""
    blocks: list[tuple[int, int]] = []
    open_at: int | None = None  # start of an open fence or formula
    closer, in_table = "", False
    for offset, line in _lines(text[start:end]):
        line_start, line_end, s = start + offset, start + offset + len(line), line.strip()
        if open_at is not None:
            if s.startswith(closer) or (closer == "$$" and s.endswith("$$")):
                blocks.append((open_at, line_end))
                open_at = None
            continue
        if FENCE.match(line) or (s.startswith("$$") and s.count("$$") == 1):
            open_at, closer = line_start, "$$" if s.startswith("$$") else s[:3]
        elif s.startswith("|") and in_table:
            blocks[-1] = (blocks[-1][0], line_end)
        elif s.startswith("|"):
            blocks.append((line_start, line_end))
        in_table = s.startswith("|")
    if open_at is not None:
        blocks.append((open_at, end))  # unclosed in this unit: keep its rest whole rather than cut inside it
    return blocks


def _name(chunks: list[Chunk]) -> list[Chunk]:
    """Give each chunk a readable id: source#section/question, ~n for parts and repeats."""
    seen: dict[str, int] = {}
    out = []
    for chunk in chunks:
        base = chunk.source + "#" + "/".join(_short(t) for t in chunk.heading[1:])
        seen[base] = seen.get(base, 0) + 1
        out.append(replace(chunk, id=base if seen[base] == 1 else f"{base}~{seen[base]}"))
    return out


def _short(title: str) -> str:
    """'12. <u>为什么…</u>' -> '12'; other titles cut to 24 characters, '/' replaced."""
    if m := re.match(r"(?:第.{1,3}章|\d{1,3}(?=[.、．\s])|[一二三四五六七八九十]+(?=、))", title):
        return m.group(0)
    return title[:24].replace("/", "∕").strip()
