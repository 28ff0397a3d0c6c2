"""Citations: parse the model's `[n]` marks, check them against the prompt, attribute uncited sentences.

- `parse` finds `[1]`, `[1,2]`, `[1, 3]`, `[1-3]`, `【1】`, `［2］`; numbers not in the prompt are dropped.
- `attribute` splits the answer into sentences and, for each sentence the model left without a mark, finds
  the prompt passage it draws on by character-bigram overlap (the model copies passages closely), as
  RAGFlow does after generation; a sentence that matches no passage stays visibly uncited.
- `support` is the share of the answer's bigrams found in the passages: an answer written from the model's
  own knowledge, not from the notes, scores low (used by the refusal gate).
- `verify` checks every sentence against the evidence it cites and moves its mark to the evidence it
  actually restates; a sentence no evidence supports loses its marks and is flagged; `render` writes the
  answer again with exactly those marks, so no mark is shown without a target. English sentences over
  Chinese notes share no words with them: their support is e5 similarity (`similar`), not overlap. The
  evidence must also hold the technical names the sentence uses (RMSNorm, ZeRO-3), so a passage about
  one method copied out as a statement about another is not counted as the notes'.

Does not: judge whether a cited passage really entails the sentence (that is the eval's faithfulness).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from ingest.chunk import FENCE, sentence_spans
from retriever import tokenize

MARK = re.compile(r"[\[【［]\s*(\d{1,2}(?:\s*[-–,，、]\s*\d{1,2})*)\s*[\]】］]")


@dataclass(frozen=True)
class Sentence:
    text: str
    start: int  # offsets in the answer text
    end: int
    cited: tuple[int, ...]  # passage numbers the model wrote
    attributed: tuple[int, ...] = ()  # passage numbers found by overlap, when the model wrote none
    supported: bool | None = None  # after `verify`: some evidence supports it (None: not checked)
    moved: bool = False  # after `verify`: its mark was moved to the evidence it restates

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


LEAD = re.compile(r"\s*((?:" + MARK.pattern + r"\s*)+)")  # marks opening a text


def strip_marks(text: str) -> str:
    return MARK.sub("", text)


def sentences(answer: str, valid: Collection[int]) -> list[Sentence]:
    """The answer's sentences with the valid marks each carries (a mark at a sentence start belongs
    to the sentence before it, as in "……缓存。[2]"). An answer that opens with a mark writes each mark
    before what it cites ("[1] A。 [2] B。"): there marks at a sentence start, or on a line of their own,
    belong to the sentence after them."""
    out: list[Sentence] = []
    first = LEAD.match(answer)
    ahead = bool(first and wording(answer[first.end() :]))
    held: int | None = None  # where marks waiting for the sentence after them start (`ahead`)
    for begin, end in sentence_spans(answer):
        if held is not None:
            begin, held = held, None
        text = answer[begin:end]
        lead = LEAD.match(text)
        if lead and out and not ahead:
            prev = out[-1]
            moved = tuple(dict.fromkeys(prev.cited + tuple(parse(lead.group(1), valid))))
            out[-1] = Sentence(answer[prev.start : begin + lead.end()], prev.start, begin + lead.end(), moved)
            text, begin = text[lead.end() :], begin + lead.end()
        if strip_marks(text).strip():
            out.append(Sentence(text, begin, begin + len(text), tuple(parse(text, valid))))
        elif ahead:
            held = begin
    if held is not None and out:  # marks closing the answer: the last sentence's, as usual
        last = out[-1]
        marks = tuple(dict.fromkeys(last.cited + tuple(parse(answer[held:], valid))))
        out[-1] = Sentence(answer[last.start :], last.start, len(answer), marks)
    return out


def wording(text: str) -> str:
    """What a text says, its marks, spacing and punctuation aside ("" for marks alone: "[1] [2]")."""
    return re.sub(r"[\W_]", "", strip_marks(text))


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


LEXICAL = 0.5  # share of a sentence's overlap units found in evidence that supports it (also the eval's)
CROSS_LINGUAL = 0.85  # e5 cosine at which an English sentence restates evidence: the eval's yardstick
# The answer check's own bound, chosen on the dev set by replaying its generated answers: at 0.83 three
# correct English answers (SFT vs pre-training, BatchNorm vs LayerNorm, the LSTM gates) are no longer
# refused and no unanswerable question gets through; at 0.79 citation precision (at 0.85) starts to fall.
RESTATES = 0.83
Similar = Callable[[str, Sequence[str]], Sequence[float]]  # (sentence, evidence texts) -> one score each


# words an English sentence can hardly do without; names and keywords are none of them
ENGLISH_GLUE = frozenset(
    "a an the is are was were be been do does did can could should would will what which who why how when "
    "where whether of in on for to with from by and or not than it its this that these those".split()
)


def is_english(text: str) -> bool:
    """More than twice as many Latin words as CJK characters ("KV Cache 是什么" is Chinese), and, when there
    is any Chinese, an English word of grammar among them: "P-tuning v2 prefix tuning prompt tuning 区别" is
    a Chinese question of names (its answer is wanted in Chinese), "What is 梯度累积 for?" an English one."""
    words = re.findall(r"[A-Za-z][\w'-]*", text)
    cjk = tokenize.cjk_count(text)
    if len(words) <= 2 * cjk:
        return False
    return cjk == 0 or any(w.lower() in ENGLISH_GLUE for w in words)


TERM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*")
GENERIC = frozenset({"ai", "api", "cpu", "dl", "gpu", "llm", "ml", "nlp"})  # name no method: not checked
DASHES = re.compile(r"[‐‑‒–—−]")
MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.S)
CAMEL = re.compile(r"(?:[A-Z][a-z]+){2,}")  # BatchNorm, LayerNorm, ResNet: may be written as their capitals


def _words(text: str) -> list[tuple[str, str, str]]:
    """(word, folded, capitals or "") for every Latin word of `text`, written in any width or dash: a code
    path keeps its last part ("nn.LayerNorm" is "LayerNorm"), a plural name is the name ("RNNs",
    "ResNets"); folding lowers the case and drops hyphens ("ZeRO3" is "ZeRO-3"; "GPT-3.5" is not "GPT-3");
    the capitals of a CamelCase name are the abbreviation evidence may use ("BatchNorm" is also "BN")."""
    out = []
    for m in _terms(text):
        word = m.group(0)
        if code := re.fullmatch(r"(?:[a-z_]+\.)+(.+)", word):
            word = code.group(1)
        if sum(c.isupper() for c in word) >= 2 and re.search(r"[A-Za-z]s$", word) and not word.isupper():
            word = word[:-1]
        capitals = "".join(c for c in word if c.isupper()) if CAMEL.fullmatch(word) else ""
        out.append((word, _fold(word), capitals))
    return out


def _terms(text: str) -> list[re.Match[str]]:
    """The Latin words of `text` (any width, any dash written as "-"), as matches in that normalized text."""
    return list(TERM.finditer(DASHES.sub("-", unicodedata.normalize("NFKC", text))))


def _fold(word: str) -> str:
    """Lower case, without hyphens, underscores or spaces: how names are compared."""
    return re.sub(r"[-_\s]", "", word.lower())


def is_name(word: str) -> bool:
    """Two capitals within one hyphen-free part (RMSNorm, GQA, LoRA; not Fine-Tuning) or a digit (FP16)."""
    return any(sum(c.isupper() for c in part) >= 2 for part in word.split("-")) or any(
        c.isdigit() for c in word
    )


def name_forms(text: str) -> list[tuple[str, str]]:
    """The technical names an answer sentence uses (see `is_name`; formulas in $…$ left out), each as
    (folded name, capitals)."""
    found = _words(MATH.sub(" ", strip_marks(text)))
    names = dict.fromkeys((folded, capitals) for word, folded, capitals in found if is_name(word))
    return [n for n in names if n[0] not in GENERIC]


def _evidence_words(text: str) -> set[str]:
    """The folded words of evidence (see `_words`), and each two words apart by a space joined: "Adapter
    Drop" holds the name AdapterDrop, "Flash Attention" FlashAttention."""
    found = {folded for _, folded, _ in _words(text)}
    terms = _terms(text)
    for a, b in zip(terms, terms[1:], strict=False):
        if a.string[a.end() : b.start()] == " ":  # NFKC made a full-width space one
            found.add(_fold(a.group(0) + b.group(0)))
    return found


def _holds(words: set[str], name: tuple[str, str]) -> bool:
    """Do evidence's folded `words` name `name`: the word itself, a version of it ("GPT" in "GPT-3", not
    "GPT-3" in "GPT-3.5"), or its capitals as a word of their own ("BN" for BatchNorm)?"""
    full, capitals = name
    return (
        full in words
        or any(w.startswith(full) and w[len(full)].isdigit() for w in words if len(w) > len(full))
        or (bool(capitals) and capitals.lower() in words)
    )


def verify(
    found: list[Sentence],
    passages: dict[int, str],
    *,
    similar: Similar | None = None,
    lexical: float = LEXICAL,
    cross: float = RESTATES,
    names: bool = True,
    asked: str = "",
) -> list[Sentence]:
    """Each sentence with the numbers of the evidence that supports it: its own marks where their
    evidence supports it, else the evidence that supports it best (moved), else no number and
    supported=False. Sentences too short to judge (< 4 overlap units, e.g. "是的。") keep their marks.

    With `names`, a sentence is supported only when the evidence that supports it also holds every
    technical name the sentence uses (together: a comparison may draw on two pieces): "RMSNorm 针对每个
    样本做归一化" restating a passage about LayerNorm word for word, the name swapped, is the merged false
    statement the 1.5B model writes most often.

    `asked` is the question: its words said back ("文本摘要和机器翻译一般分别用 ROUGE 指标评测") claim
    nothing, so a sentence is judged on its other words when it has any."""
    grams = {n: bigrams(text) for n, text in passages.items()}
    words = {n: _evidence_words(text) for n, text in passages.items()}
    given = bigrams(asked)
    out = []
    for s in found:
        mine = bigrams(s.text)
        named = name_forms(s.text) if names else []
        english = is_english(strip_marks(s.text))
        if english and similar is not None and passages:
            order = list(passages)
            scores = dict(zip(order, similar(strip_marks(s.text), [passages[n] for n in order]), strict=True))
            ok = {n for n, v in scores.items() if v >= cross}
        elif len(mine) >= 4 and passages:
            mine = (mine - given) or mine  # the question's own words, said back, claim nothing
            scores = {n: len(mine & g) / len(mine) for n, g in grams.items()}
            ok = {n for n, v in scores.items() if v >= lexical}
        else:
            out.append(s)
            continue
        if not all(any(_holds(words[n], name) for n in ok) for name in named):
            ok = set()  # a name that none of the supporting evidence has: the sentence says it of another
        own = tuple(n for n in s.numbers if n in ok)
        if own:  # the model's marks (or the attribution) hold where their evidence supports the sentence
            cited, attributed = (own, ()) if s.cited else ((), own)
            out.append(Sentence(s.text, s.start, s.end, cited, attributed, True))
        elif ok:
            best = (max(ok, key=lambda n: scores[n]),)
            cited, attributed = (best, ()) if s.cited else ((), best)
            out.append(Sentence(s.text, s.start, s.end, cited, attributed, True, moved=bool(s.numbers)))
        else:
            out.append(Sentence(s.text, s.start, s.end, (), (), False, moved=bool(s.numbers)))
    return out


def render(
    answer: str,
    found: list[Sentence],
    *,
    drop: Callable[[str], bool] | None = None,
    questions: bool = False,
) -> tuple[str, list[Sentence]]:
    """`answer` written again from its verified sentences (`found`, with offsets in `answer`), each ending
    with exactly its numbers before its closing punctuation ("……计算 [1]。"); what lies between sentences
    (line breaks, spaces) is kept. Returns the text and the sentences with their offsets in it.

    A sentence of prose said again word for word (the small model looping: one sentence pasted under [1],
    [2], [3], [4]) is shown once. List items, table rows, code and lines without words are never
    dropped: a list can rightly repeat an item of another ("Qwen 又沿用了以下结构：" then the same items).
    A sentence `drop` says yes to (its text without marks) is left out the same way; with `questions`, so
    is a sentence of prose that asks ("A、B 矩阵怎么初始化？[1] [2]" where the answer was due: the question,
    or one of the notes' own, restated), but not one in a list item (a checklist: "1. 检查数据：输入 token
    ID 是否正常？")."""
    text, out, at, said, skipped = "", [], 0, set(), False
    for s in found:
        opening = LEAD.match(s.text)  # "[1] A。": the space after the mark goes with it
        raw = strip_marks(s.text[: opening.start(1)] + s.text[opening.end() :] if opening else s.text)
        if MARK.search(answer[max(0, s.start - 4) : s.start] + s.text[:12]):
            # "[1] 和 [2] 中提到，X": the marks said where X is from; X stays, under the sentence's marks
            raw = REFERRING.sub(lambda m: "\n" * m.group(1).count("\n"), raw, count=1)
        if MARK.search(s.text):
            raw = LEFT_SPACE.sub("", raw)  # "根据证据 [1]，" -> "根据证据，"
        same = re.sub(r"\s+", "", raw)
        before = answer[: s.start]
        asks = questions and _asks(raw) and not _structured(raw, before) and not _in_item(before)
        if (same in said and _prose(raw, before)) or (drop is not None and drop(raw)) or asks:
            skipped = True
            # the line breaks before it or in it stay (a blank line at most), so the lines around it are
            # not joined
            breaks = max(strip_marks(answer[at : s.start]).count("\n"), "\n" in raw[len(raw.rstrip()) :])
            text = text.rstrip(" \t")
            have = len(text) - len(text.rstrip("\n"))
            text += "\n" * max(0, min(breaks, 2) - have) if text else ""
            at = s.end
            continue
        said.add(same)
        lead, trail, body = raw[: len(raw) - len(raw.lstrip())], raw[len(raw.rstrip()) :], raw.strip()
        end = re.search(r"[。！？；.!?;]+[”’\"')）]*$", body)
        core, tail = (body[: end.start()], end.group(0)) if end else (body, "")
        marks = "".join(f"[{n}]" for n in s.numbers)
        piece = f"{core.rstrip()} {marks}{tail}" if marks else f"{core.rstrip()}{tail}"
        if marks and ROW.fullmatch(last := core.rsplit("\n", 1)[-1].strip()) and not RULE.fullmatch(last):
            # in the row's last cell, so the table stays one table
            piece = f"{core.rstrip()[:-1].rstrip()} {marks} |{tail}"
            trail = trail.lstrip(" \t")  # where the mark was
        gap = strip_marks(answer[at : s.start]) + lead
        if skipped and not gap.strip():  # where a repeat was dropped: the wider of the two line breaks
            have = len(text) - len(text.rstrip("\n"))
            gap = "\n" * max(0, gap.count("\n") - have) + gap.lstrip("\n") if text else ""
        text += gap
        skipped = False
        start = len(text)
        text += piece + trail
        at = s.end
        out.append(Sentence(piece, start, start + len(piece), s.cited, s.attributed, s.supported, s.moved))
    rest = strip_marks(answer[at:])
    if skipped and not rest.strip():  # the last sentence was left out: so is the line break before it
        text = text.rstrip()
    return text + rest, out


# what is left of "[1] 和 [2] 中提到，" / "在 [1] 中，" / "[3] 提到，" when the marks are taken out: the marks
# were its words (the evidence as the subject), so the phrase goes with them; the sentence's marks stay
REFERRING = re.compile(
    r"^(\s*)在?\s*(?:[和、与及,，]\s*)*(?:中的描述表明|中提到|中指出|中所述|提到|指出|所述|中)\s*[，,：:]\s*"
)
# the space a mark leaves before Chinese punctuation ("根据证据 [1]，" -> "根据证据，")
LEFT_SPACE = re.compile(r"(?<=[\u3400-\u9fff]) +(?=[，；：、])")
ITEM = re.compile(r"\s*(?:[-+*>|]|\d+[.、)])")  # what opens a list item, quote or table row
ROW = re.compile(r"\|.*\|")  # a table row; after its last "|" a mark would be a stray cell
RULE = re.compile(r"\|[\s:|-]*\|")  # the row under a table's header: no room for a mark


def _asks(sentence: str) -> bool:
    return bool(re.search(r"[?？][\s\W]*$", sentence))


def _in_item(before: str) -> bool:
    """Does the line a sentence continues (the text before it on its line) open a list item or row?"""
    line = before.rsplit("\n", 1)[-1]
    return bool(line.strip()) and bool(ITEM.match(line))


def _prose(sentence: str, before: str) -> bool:
    """Is `sentence` prose long enough to call a repeat a loop: not a list item, table row or code (inside a
    fence), and with at least REPEATED letters or CJK characters?"""
    if _structured(sentence, before):
        return False
    return len(re.findall(r"[A-Za-z0-9\u3400-\u9fff]", sentence)) >= REPEATED


def _structured(sentence: str, before: str) -> bool:
    """Does `sentence` open a list item or table row, or lie inside a code fence?"""
    inside = sum(1 for line in before.splitlines() if FENCE.match(line)) % 2
    return bool(inside or ITEM.match(sentence))


REPEATED = 8  # letters or CJK characters from which a sentence of prose said twice is shown once
