"""The question pool: every question the notes hold, one `Card` each, with its place in the notes.

A question is found line by line inside the index's chunks (so its passage and span are the ones search
and citations use):
- a title line (markdown heading, whole-line bold, numbered line) that reads as a question (a question mark
  or word: 什么, 如何, 区别, why …), or a bold / numbered (not markdown) title of its own chunk that is not
  a label (`…：`) or a subsection of a question above it (`13、nlp任务一般流程`);
- a question asked inside an answering passage: `问：“…？”`, or a whole-line quote ending in a question mark;
- in a passage without an answer (a question bank), every line that is a question: one card per question,
  not per list (`- 15. 推导一下…？`, `- LoRA: 如何实现和优化?`).
Placeholders (`30. ？`), statements (`3. 先定模型规模：…。`) and section titles are not questions.
A question list's own title line (`Normalization面试清单(20题)`) is the `topic` of the cards below it, up
to the next such title: lists often reuse subheadings (`前沿问题`), so a subheading alone does not say which
list a card is from.

A card id is the file plus a hash of the normalized question (`004_….txt#3f2a9c1b0d7e`): a question moved
within its file keeps its card, an edited one is a new card, a deleted one retires.

Does not: judge whether the notes answer a card (see `answerable`), or read files (it takes chunks).
"""

from __future__ import annotations

import bisect
import fnmatch
import hashlib
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from ingest.chunk import Chunk

QUESTION_WORD = re.compile(
    r"[？?]|什么|如何|怎么|怎样|为什么|为何|哪些|哪个|哪种|区别|是否|吗|原理|介绍|谈谈|说说|讲讲|讲一下|"
    r"简述|解释|对比|比较|优缺点|作用|\b(?:what|why|how|which|explain|describe|compare|difference)\b",
    re.IGNORECASE,
)
HEADING = re.compile(r"#{1,6}[ \t]+(\S.*?)[ \t#]*$")
BOLD = re.compile(r"\*\*([^*\n]{2,120})\*\*[ \t]*$")
NUMBERED = re.compile(r"(?:[-*+] )?\d{1,3}[.、．]")
BULLETED = re.compile(r"[-*+•] ")
ASKED = re.compile(r"[-*+\s]*(?:\*\*)?(?:面试官)?(?:可能会)?问(?:\*\*)?[:：]\s*(.+)$")
QUOTED = re.compile(r"[“\"](.{4,200}?[？?][^“”\"]{0,40})[”\"]\s*$")
NUMBERING = re.compile(
    r"^\s*(?:[-*+•]\s*)?(?:(?:[（(]?\d{1,3}[)）.、．]|第?[一二三四五六七八九十]+[、.．])\s*)+"
)
MARKUP = re.compile(r"</?u>|\*\*|<[^>\n]{1,40}>|⭐+|^#{1,6}\s+|^[-*+•]\s+|^[。.•○▼]\s*")
STATEMENT_END = re.compile(r"[。；;，,：:!！]$")
CHAPTER = re.compile(r"第.{1,3}[章节篇]")
FENCE = re.compile(r"\s*(```|~~~|\$\$)")
FIRST = re.compile(r"\s*(?:[-*+•]\s*)?1[.、．]\s*\S")  # the first item of a numbered list
LIST_TITLE = re.compile(r"(?:#{1,6}[ \t]+)?([^\s#\-*+\d].{0,40}?)\s*[(（]\s*\d{1,4}\s*题\s*[)）][ \t#]*$")


@dataclass(frozen=True)
class Card:
    id: str  # "<source>#<12 hex of the normalized question>": stable while the question stays in its file
    question: str  # the question, numbering and markup removed
    source: str  # note path relative to the notes folder
    heading: tuple[str, ...]  # heading path of the passage it sits in
    start: int  # note text[start:end] is the question's line
    end: int
    chunk: str  # id of the passage it sits in
    own_answer: bool  # the notes answer it right below it, in that passage
    bank: bool  # written in a question list, or without an answer below it
    topic: str = ""  # title of the question bank list it is in (`Normalization面试清单`), "" outside one
    span: tuple[int, int] = (0, 0)  # note text[span[0]:span[1]] is that list, from its title line

    @property
    def where(self) -> str:
        path = " > ".join(self.heading[1:]) or self.source
        return f"{path} · {self.source} characters {self.start}–{self.end}"


def normalize(question: str) -> str:
    """What a card id hashes: NFKC, lowercase, letters, digits and CJK only.

    >>> normalize("1. <u>什么是 KV-Cache？</u>")
    '什么是kvcache'
    """
    text = unicodedata.normalize("NFKC", clean(question)).lower()
    return "".join(c for c in text if c.isalnum())


def card_id(source: str, question: str) -> str:
    return f"{source}#{hashlib.sha256(normalize(question).encode()).hexdigest()[:12]}"


def clean(line: str) -> str:
    """A question line -> the question: numbering, bullets, bold, <u>, stars and quotes removed."""
    text = MARKUP.sub("", line.strip()).strip()
    text = NUMBERING.sub("", text)
    text = MARKUP.sub("", text).strip().strip('“”"「」').strip()
    return text


def pool(chunks: Iterable[Chunk]) -> list[Card]:
    """Every question of the notes in text order; a repeat within a file (an overlap piece, the same
    question asked twice) keeps its first place."""
    chunks = list(chunks)
    titles = _list_titles(chunks)
    seen: set[str] = set()
    cards = []
    for chunk in chunks:
        for card in _questions(chunk):
            if card.id not in seen:
                seen.add(card.id)
                cards.append(_in_list(card, titles.get(card.source, [])))
    return cards


def _list_titles(chunks: list[Chunk]) -> dict[str, list[tuple[int, str]]]:
    """Per file, the titles of its question lists: (offset in the note, title without its count), in order.

    Read from the passages' lines in note order (only bank cards take these topics): a title that counts
    its questions (`LLMs损失函数篇(19题)`), or, above a list that starts again at 1, the first of the plain
    title lines right above it (`大模型(LLMs)评测面` / `大模型评测基础` / `- 1. …`).
    """
    lines: dict[str, dict[int, str]] = {}
    for chunk in chunks:
        for offset, line in _lines(chunk):
            lines.setdefault(chunk.source, {})[chunk.start + offset] = line
    found: dict[str, list[tuple[int, str]]] = {}
    for source, by_offset in lines.items():
        titles, counted = found.setdefault(source, []), False
        above: list[tuple[int, str]] = []  # plain title lines since the last other line
        for offset, line in sorted(by_offset.items()):
            if not line.strip():
                continue
            if m := LIST_TITLE.match(line):
                titles.append((offset, _list_name(m.group(1))))
                above, counted = [], True
            elif _is_plain_title(line):
                above.append((offset, line))
            else:
                if FIRST.match(line) and above and not counted:
                    titles.append((above[0][0], _list_name(above[0][1])))
                above, counted = [], False
    return found


def _is_plain_title(line: str) -> bool:
    """A short unmarked line, flush left, without sentence punctuation or a question mark."""
    return (
        len(line) <= 40
        and not re.match(r"[\s#\-*+•\d!\[|>$`]", line)
        and not re.search(r"[，,。：:；;？?]|\]\(", line)
    )


def _list_name(title: str) -> str:
    """`大模型推理面(24颢)` -> `大模型推理面`: markup and a trailing count removed."""
    return re.sub(r"\s*[(（]\s*\d{1,4}\s*\S?\s*[)）]\s*$", "", MARKUP.sub("", title).strip())


def _in_list(card: Card, titles: list[tuple[int, str]]) -> Card:
    """A bank card with the topic and span of the list whose title is the last above it (unchanged when none
    is)."""
    if not card.bank:
        return card
    at = bisect.bisect_right(titles, (card.start, "\uffff"))
    if not at:
        return card
    end = titles[at][0] if at < len(titles) else sys.maxsize
    return replace(card, topic=titles[at - 1][1], span=(titles[at - 1][0], end))


def _lines(chunk: Chunk) -> Iterator[tuple[int, str]]:
    """(offset in the chunk, line) outside code fences and $$ blocks."""
    offset, inside = 0, False
    for line in chunk.text.splitlines(keepends=True):
        if FENCE.match(line):
            inside = not inside
        elif not inside:
            yield offset, line.rstrip("\r\n")
        offset += len(line)


def _questions(chunk: Chunk) -> Iterator[Card]:
    for offset, line in _lines(chunk):
        found = _question(line, chunk) if line.strip() else None
        if found is None:
            continue
        question, own, bank = found
        lead = len(line) - len(line.lstrip())
        start = chunk.start + offset + lead
        yield Card(
            card_id(chunk.source, question),
            question,
            chunk.source,
            chunk.heading,
            start,
            chunk.start + offset + len(line.rstrip()),
            chunk.id,
            own,
            bank,
        )


def _question(line: str, chunk: Chunk) -> tuple[str, bool, bool] | None:
    """(question, answered in this passage, bank) when the line asks one."""
    stripped = line.strip()
    if m := ASKED.match(line) or (QUOTED.match(stripped) if not line[0].isspace() else None):
        question = clean(m.group(1))
        return (question, chunk.has_answer, False) if _asks(question) else None
    title = _title(line)
    if title is not None:
        question = clean(title)
        own = _is_own_title(question, chunk)
        bulleted = bool(re.match(r"[-*+] \d", stripped))
        if not _content(question) or CHAPTER.match(question):
            return None
        if _asks(question) or (own and _plain_title_counts(question, line, chunk)):
            return question, own and chunk.has_answer, bulleted or not chunk.has_answer
        return None
    if not chunk.has_answer and stripped[-1] in "？?":
        question = clean(stripped)
        return (question, False, True) if _content(question) and _asks(question) else None
    return None


def _title(line: str) -> str | None:
    """The title text when the line is a heading, a whole-line bold title or a flush-left numbered line."""
    if m := HEADING.match(line):
        return m.group(1)
    if m := BOLD.match(line.strip()):
        return m.group(1)
    if NUMBERED.match(line):
        return line
    return None


def _asks(question: str) -> bool:
    return bool(QUESTION_WORD.search(question)) and not STATEMENT_END.search(question) and _content(question)


def _content(question: str) -> bool:
    """At least four letters, digits or CJK characters: not a placeholder like '？' or '/'."""
    return sum(c.isalnum() for c in question) >= 4


def _is_own_title(question: str, chunk: Chunk) -> bool:
    """Is this the title the chunk is named by (its last heading element)?"""
    return len(chunk.heading) > 1 and normalize(chunk.heading[-1]) == normalize(question)


def _plain_title_counts(question: str, line: str, chunk: Chunk) -> bool:
    """A numbered or bold title without a question word is a card (`13、nlp任务一般流程`) unless it ends
    like a label or statement, or a question above it makes it a part of that question's answer."""
    if HEADING.match(line):
        return False  # a markdown heading without a question word is a section, numbered or not
    above = chunk.heading[1:-1]
    labelled = STATEMENT_END.search(question) or re.search(r"[:：]", question)
    return not labelled and not any(_asks(clean(title)) for title in above)


def select(
    cards: Iterable[Card],
    *,
    source: str = "",
    heading: str = "",
    chunks: set[str] | None = None,
    text: str = "",
) -> list[Card]:
    """Cards whose file matches `source` (a name or glob), whose heading path contains `heading`, and, when
    `chunks` or `text` is given (a topic), that sit in one of those passages or mention `text`."""
    out = []
    for card in cards:
        if source and not (card.source == source or fnmatch.fnmatch(card.source, source)):
            continue
        if heading and heading.lower() not in " > ".join(card.heading).lower():
            continue
        if (chunks is not None or text) and not (
            (chunks is not None and card.chunk in chunks)
            or (text and text.lower() in " > ".join((card.question, card.topic, *card.heading)).lower())
        ):
            continue
        out.append(card)
    return out
