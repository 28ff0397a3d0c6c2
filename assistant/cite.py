"""Citations: parse the model's `[n]` marks, check them against the prompt, attribute uncited sentences.

- `parse` finds `[1]`, `[1,2]`, `[1, 3]`, `[1-3]`, `【1】`, `［2］`; numbers not in the prompt are dropped.
- `attribute` splits the answer into sentences and, for each sentence the model left without a mark, finds
  the prompt passage it draws on by character-bigram overlap (the model copies passages closely), as
  RAGFlow does after generation; a sentence that matches no passage stays visibly uncited.
- `support` is the share of the answer's bigrams found in the passages: an answer written from the model's
  own knowledge, not from the notes, scores low (used by the refusal gate).

Does not: judge whether a cited passage really entails the sentence (that is the eval's faithfulness).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from ingest.chunk import sentence_spans
from retriever import tokenize

MARK = re.compile(r"[\[【［]\s*(\d{1,2}(?:\s*[-–,，、]\s*\d{1,2})*)\s*[\]】］]")


@dataclass(frozen=True)
class Sentence:
    text: str
    start: int  # offsets in the answer text
    end: int
    cited: tuple[int, ...]  # passage numbers the model wrote
    attributed: tuple[int, ...] = ()  # passage numbers found by overlap, when the model wrote none

    @property
    def numbers(self) -> tuple[int, ...]:
        return self.cited or self.attributed


def numbers(mark: str) -> list[int]:
    """'1-3' -> [1, 2, 3]; '1，4' -> [1, 4]."""
    out: list[int] = []
    for part in re.split(r"\s*[,，、]\s*", mark):
        if m := re.fullmatch(r"(\d+)\s*[-–]\s*(\d+)", part):
            low, high = int(m.group(1)), int(m.group(2))
            out += list(range(low, high + 1)) if 0 < high - low < 10 else [low, high]
        elif part.strip().isdigit():
            out.append(int(part))
    return out


def parse(answer: str, valid: Collection[int]) -> list[int]:
    """Passage numbers cited anywhere in the answer that are in `valid`, in order of first mention."""
    found = [n for m in MARK.finditer(answer) for n in numbers(m.group(1))]
    return list(dict.fromkeys(n for n in found if n in valid))


def strip_marks(text: str) -> str:
    return MARK.sub("", text)


def sentences(answer: str, valid: Collection[int]) -> list[Sentence]:
    """The answer's sentences with the valid marks each carries (a mark at a sentence start belongs
    to the sentence before it, as in "……缓存。[2]")."""
    out: list[Sentence] = []
    for begin, end in sentence_spans(answer):
        text = answer[begin:end]
        lead = re.match(r"\s*((?:" + MARK.pattern + r"\s*)+)", text)
        if lead and out:
            prev = out[-1]
            moved = tuple(dict.fromkeys(prev.cited + tuple(parse(lead.group(1), valid))))
            out[-1] = Sentence(answer[prev.start : begin + lead.end()], prev.start, begin + lead.end(), moved)
            text, start = text[lead.end() :], begin + lead.end()
        else:
            start = begin
        if strip_marks(text).strip():
            out.append(Sentence(text, start, start + len(text), tuple(parse(text, valid))))
    return out


def bigrams(text: str) -> set[str]:
    """The overlap units (retriever.tokenize.bigrams) of `text` without its citation marks."""
    return tokenize.bigrams(strip_marks(text))


def attribute(answer: str, passages: dict[int, str], *, threshold: float = 0.5) -> list[Sentence]:
    """Sentences, each uncited one attributed to the passage (by number) covering most of its bigrams,
    when that passage covers at least `threshold` of them."""
    grams = {n: bigrams(text) for n, text in passages.items()}
    out = []
    for s in sentences(answer, grams.keys()):
        mine = bigrams(s.text)
        if not s.cited and len(mine) >= 4 and grams:
            best = max(grams, key=lambda n: len(mine & grams[n]))
            if len(mine & grams[best]) / len(mine) >= threshold:
                s = Sentence(s.text, s.start, s.end, (), (best,))
        out.append(s)
    return out


def support(answer: str, passages: list[str]) -> float:
    """Share of the answer's character bigrams that occur in the passages (0 for an empty answer)."""
    mine = bigrams(answer)
    if not mine:
        return 0.0
    theirs = set().union(*(bigrams(p) for p in passages)) if passages else set()
    return len(mine & theirs) / len(mine)
