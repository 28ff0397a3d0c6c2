"""The answer prompt: a fixed system message (rules + one worked example), then numbered evidence and the
question, with the key rule repeated last.

Two styles (setting `answer_style`): "evidence" (default) shows, of each chosen passage, the atoms that best
answer the question with ~150 characters around them (assistant/evidence.py), numbered from [1] in every
answer, and asks the model to restate them; "window" is the earlier prompt: the 250-character window of
each passage sharing most words with the question, numbers counting on across a conversation.

Everything that does not change between questions sits in the system message, first: llama.cpp keeps the
evaluated prefix, so the rules and the example cost prompt time once per process, not once per question.
Passages are trimmed to the window of whole sentences that best matches the question, because time to
first token on a CPU grows with every prompt token.

Does not: call the model, or decide whether to refuse (answer.py does).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from assistant import evidence
from assistant.cite import is_english
from ingest.chunk import FENCE, Chunk, sentence_spans
from retriever.tokenize import bigrams

STYLES = ("evidence", "window")

REFUSAL_ZH = "笔记中没有相关内容。"
REFUSAL_EN = "The notes do not cover this."

SYSTEM = f"""你是面试笔记助手，只根据给出的笔记片段回答问题。
规则：
1. 只用片段里的内容回答，不要加入片段以外的知识。
2. 每句话末尾用 [编号] 标出它来自哪个片段，例如 [1] 或 [2]。
3. 用提问的语言回答：中文问题用中文，英文问题用英文。简洁，最多 5 句。
4. 尽量用片段里的原话回答；只有当所有片段都和问题无关时，才只回答“{REFUSAL_ZH}”
（英文问题回答 “{REFUSAL_EN}”）。

示例：
笔记片段：
[1] 推理加速 > KV Cache
推理时缓存历史 token 的 K 和 V，避免重复计算，用显存换时间。
[2] 训练 > 梯度累积
显存不够时把多个小 batch 的梯度累加后再更新参数。
问题：KV Cache 为什么能加速推理？
回答：KV Cache 缓存了历史 token 的 K 和 V，生成新 token 时不必重复计算 [1]。它是用显存换时间 [1]。"""

SYSTEM_EVIDENCE = f"""你是面试笔记助手。用户给出一个问题和从他笔记中摘出的几段编号证据。
请直接回答问题，只用证据里写的内容。
要求：
1. 回答 1 到 4 句，说清楚要点；不要抄证据的标题，不要重复问题，不要写“证据”“问题”等字样。
2. 每句话末尾用 [编号] 标出它依据的证据，例如 [1]。
3. 不要加入证据以外的知识，不要编造公式或数字；不要把两条证据的内容拼成一句话。
4. 用提问的语言回答：中文问题用中文，英文问题用英文。
5. 如果所有证据都和问题无关，只回答“{REFUSAL_ZH}”（英文问题回答 “{REFUSAL_EN}”）。"""


@dataclass(frozen=True)
class Passage:
    n: int  # the number the prompt gives it
    chunk: Chunk
    text: str  # the part of the chunk shown to the model

    @property
    def heading(self) -> str:
        return " > ".join(self.chunk.heading[1:]) or self.chunk.source


def refusal(question: str) -> str:
    return REFUSAL_EN if is_english(question) else REFUSAL_ZH


def quote(question: str, *passages: Passage) -> str:
    """Passages themselves as the answer, for when the model's own answer cannot be used: the notes' words,
    made readable as the answer's markdown (`readable`), each piece ending with its mark; a text of several
    lines, or one that opens with a list or table, starts on a line of its own. Several passages (the pieces
    of one note section, `section`) are shown in the notes' order, overlapping pieces joined."""
    lead = "From your notes:" if is_english(question) else "笔记原文："
    pieces = [(readable(text), marks, after) for text, marks, after in _joined(passages)]
    first = pieces[0][0]
    own_line = len(pieces) > 1 or "\n" in first or BLOCK.match(first)
    gap = "\n\n" if own_line else (" " if lead.endswith(":") else "")
    # a stretch that does not follow on from the one before: "…" says the notes' words between are left out
    return (
        lead
        + gap
        + "".join(
            ("\n\n" if after else "\n\n…\n\n") * bool(i) + text + _mark_after(text, marks)
            for i, (text, marks, after) in enumerate(pieces)
        )
    )


def _mark_after(text: str, marks: str) -> str:
    # after a table row, a fence or a `$$` the mark would be a dropped cell or code: a line of its own
    return ("\n\n" if ENDS_BLOCK.match(text.rsplit("\n", 1)[-1]) else " ") + marks


def _joined(passages: Sequence[Passage]) -> list[tuple[str, str, bool]]:
    """(text, marks, follows on) per stretch of the notes: passages in the notes' order, one that overlaps
    the stretch before it continues that stretch instead of repeating its words; "follows on": only white
    space lies between this stretch and the one before. A passage whose text is not its chunk's own (never
    so for evidence) is a stretch of its own, last."""
    placed = sorted(
        ((p, _where(p)) for p in passages), key=lambda pa: (0, *pa[1]) if pa[1] else (1, "", pa[0].n)
    )
    out: list[tuple[str, str, tuple[str, int] | None, int, bool]] = []  # text, marks, start, end, follows
    for p, at in placed:
        last = out[-1] if out else None
        if at is None or last is None or last[2] is None or last[2][0] != at[0]:
            out.append((p.text, f"[{p.n}]", at, at[1] + len(p.text) if at else 0, False))
            continue
        text, marks, begin, until, follows = last
        start, end = at[1], at[1] + len(p.text)
        if start < until:  # overlapping: the rest of it continues the stretch
            out[-1] = (
                text + p.text[until - start :] if end > until else text,
                f"{marks} [{p.n}]",
                begin,
                max(until, end),
                follows,
            )
        else:
            between = _between(p.chunk, until, start, passages)
            out.append((p.text, f"[{p.n}]", at, end, between is not None and not between.strip()))
    return [(text, marks, follows) for text, marks, _, _, follows in out]


def _where(p: Passage) -> tuple[str, int] | None:
    """Where the passage's text sits: its note and offset (None when the text is not the chunk's own)."""
    at = p.chunk.text.find(p.text)
    return (p.chunk.source, p.chunk.start + at) if at >= 0 and p.text else None


def _between(chunk: Chunk, start: int, end: int, passages: Sequence[Passage]) -> str | None:
    """The note's text from `start` to `end`, from a chunk of the passages that holds it (None: none does)."""
    for c in [chunk, *(p.chunk for p in passages)]:
        if c.source == chunk.source and c.start <= start and end <= c.end:
            return c.text[start - c.start : end - c.start]
    return None


def whole(p: Passage) -> Passage:
    """`p` as a quote shows it: the whole passage when it is at most `evidence.LONGEST` characters (the
    notes' whole answer there: evidence cut for the model's sake — "①不稳定性：…" without its second
    sentence and without ② — is no answer to read), else its evidence widened to whole lines."""
    text = p.chunk.text
    if len(text) <= evidence.LONGEST:
        return Passage(p.n, p.chunk, text)
    at = text.find(p.text)
    if at < 0 or not p.text:
        return p
    end = text.find("\n", at + len(p.text))
    return Passage(p.n, p.chunk, text[text.rfind("\n", 0, at) + 1 : len(text) if end < 0 else end])


def section(first: Passage, shown: Sequence[Passage]) -> list[Passage]:
    """`first` and the other shown passages of the same note section (a long answer split into pieces)."""
    same = (first.chunk.source, first.chunk.heading)
    return [first, *(p for p in shown if p is not first and (p.chunk.source, p.chunk.heading) == same)]


BLOCK = re.compile(r"(?:#|[-+*] |\||\d+[.、)] |```|\$\$)")
ENDS_BLOCK = re.compile(r"\s*(?:\||```|~~~|\$\$)")
# a tag only: its name, then attributes written name=value ("a<b 且 c>d" and "j<i … i>0" are not tags)
TAGS = re.compile(
    r"</?(?:u|b|i|em|strong|font|span|mark|sup|sub)(?:\s+[\w-]+\s*=\s*(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s>]+))*"
    r"\s*/?>|<br\s*/?>",
    re.I,
)
BREAK = re.compile(r"(?<=[A-Za-z0-9])<br\s*/?>(?=[A-Za-z0-9])", re.I)
LIST_ITEM = re.compile(r"\s*(?:[-+*]|\d+[.、)])(?: {1,4}|\s)")  # with the spaces before its text


def readable(text: str) -> str:
    """A note's text shown as part of an answer: inline HTML tags (`<u>`, `<br>` …) dropped, since the
    answer's markdown shows them as text; headings turned bold, so a quote does not open a section; lines
    outside a code fence moved to the margin (indented four spaces, markdown shows them as code), except
    that a list keeps its nesting, its first item at the margin; a list marker with nothing after it is
    left out. Words are kept as written."""
    lines = [line.expandtabs(4) for line in text.strip("\n").splitlines()]
    out: list[str] = []
    fenced, run = False, None  # run: (indent as written, indent shown, marker width) of the last list item
    for line in lines:
        if not fenced and not FENCE.match(line):  # "LoRA<br>QLoRA" keeps two words
            line = TAGS.sub("", BREAK.sub(" ", line))
        indent = len(line) - len(line.lstrip())
        item = LIST_ITEM.match(line)
        if FENCE.match(line):
            fenced, run = not fenced, None
            line = line.lstrip()
        elif fenced:  # code as written, tags included
            pass
        elif re.fullmatch(r"\s*[-+*]\s*", line):  # an empty item (a chunk ending where a bold title began)
            line = ""
        elif item:
            # a run of items starts at the margin; a deeper one nests one step under the item before it
            if run is None or indent <= run[0]:
                shown = 0 if run is None or indent < run[0] else run[1]
            else:
                shown = run[1] + run[2]
            run = (indent, shown, item.end() - indent)
            line = " " * shown + line.lstrip()
        elif line.strip():
            heading = re.match(r"\s*#{1,6}\s+(.+?)\s*#*\s*$", line)
            line = f"**{heading.group(1)}**" if heading else line.lstrip()
            run = None
        else:
            line = ""
        out.append(line)
    return "\n".join(out).strip()


def window(text: str, question: str, max_chars: int) -> str:
    """The run of whole sentences of at most max_chars sharing the most bigrams with the question."""
    if len(text) <= max_chars:
        return text
    spans = sentence_spans(text)
    want = bigrams(question)
    best, best_score = text[:max_chars], -1
    for i, (start, end) in enumerate(spans):
        j = i
        while j + 1 < len(spans) and spans[j + 1][1] - start <= max_chars:
            j += 1
        candidate = text[start : spans[j][1]] if end - start <= max_chars else text[start : start + max_chars]
        score = len(bigrams(candidate) & want)
        if score > best_score:
            best, best_score = candidate, score
    return best.strip()


def passages(
    chunks: list[Chunk],
    question: str,
    *,
    max_chars: int,
    known: Sequence[Passage] = (),
    style: str = "evidence",
    context: int = evidence.CONTEXT,
    similar: evidence.Similar | None = None,
) -> list[Passage]:
    """Number the chosen chunks. Style "evidence": [1], [2] … in every answer, each the chunk's evidence
    for the question; style "window": a chunk already shown earlier in the conversation keeps its number."""
    if style == "evidence":
        return [
            Passage(n, chunk, evidence.select(chunk.text, question, context=context, similar=similar))
            for n, chunk in enumerate(chunks, 1)
        ]
    earlier = {p.chunk.id: p for p in known}
    n = max((p.n for p in known), default=0)
    out = []
    for chunk in chunks:
        if chunk.id not in earlier:
            n += 1
            earlier[chunk.id] = Passage(n, chunk, window(chunk.text, question, max_chars))
        out.append(earlier[chunk.id])
    return out


# the instruction closing each user message (the evidence style's, then the window style's)
RULE_EVIDENCE_EN = "Answer in English{translate}, 1-4 sentences, each ending with its [number]."
RULE_EVIDENCE_ZH = "请用中文根据证据回答，1 到 4 句，每句末尾标注 [编号]。"
RULE_WINDOW_EN = "Answer in English, end every sentence with its [number]."
RULE_WINDOW_ZH = "请用中文回答，每句话末尾标注 [编号]。"
# every form of them, for telling an answer that pastes one back
RULES = (
    RULE_EVIDENCE_EN.format(translate=" (translate the Chinese evidence)"),
    RULE_EVIDENCE_EN.format(translate=""),  # over English notes
    RULE_EVIDENCE_ZH,
    RULE_WINDOW_EN,
    RULE_WINDOW_ZH,
)


def user_message(
    question: str, shown: list[Passage], known: Sequence[Passage] = (), *, style: str = "window"
) -> str:
    """Style "window": new passages in full; passages already in the conversation by number only, so a
    follow-up that lands on the same passages adds a few tokens to the prompt instead of hundreds.
    Style "evidence": every piece of evidence in full, under this answer's own numbers."""
    if style == "evidence":
        blocks = "\n".join(f"[{p.n}]（{p.heading}）\n{p.text}\n" for p in shown)
        translate = "" if is_english(blocks) else " (translate the Chinese evidence)"  # English notes: none
        if is_english(question):  # English labels too: Chinese ones pulled half the answers into Chinese
            rule = RULE_EVIDENCE_EN.format(translate=translate)
            return f"Question: {question}\n\nEvidence:\n{blocks}\n{rule}\nQuestion: {question}\nAnswer:"
        rule = RULE_EVIDENCE_ZH
        return f"问题：{question}\n\n证据：\n{blocks}\n{rule}\n问题：{question}\n回答："
    fresh = [p for p in shown if p not in known]
    blocks = "".join(f"[{p.n}] {p.heading}\n{p.text}\n" for p in fresh)
    again = "、".join(f"[{p.n}]" for p in shown if p in known)
    rule = RULE_WINDOW_EN if is_english(question) else RULE_WINDOW_ZH
    head = f"笔记片段：\n{blocks}" if fresh else ""
    also = f"（前面的片段 {again} 也与此问题相关）\n" if again else ""
    return f"{head}{also}问题：{question}\n{rule}\n回答："


def history_messages(history: Sequence[tuple[str, str]], *, style: str = "window") -> list[tuple[str, str]]:
    """The system message and the conversation so far: the shared prefix of every prompt in a chat."""
    return [("system", SYSTEM_EVIDENCE if style == "evidence" else SYSTEM), *history]


def fixed_start(style: str) -> list[tuple[str, str]]:
    """What every prompt of `style` starts with (the system message): the prefix assistant/prefix.py saves."""
    return history_messages((), style=style)


def messages(
    question: str,
    shown: list[Passage],
    history: Sequence[tuple[str, str]] = (),
    known: Sequence[Passage] = (),
    *,
    style: str = "window",
) -> list[tuple[str, str]]:
    """(role, text) pairs: system, earlier turns, then this turn's passages and question."""
    return history_messages(history, style=style) + [
        ("user", user_message(question, shown, known, style=style))
    ]
