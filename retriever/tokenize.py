"""Tokens for BM25: jieba for Chinese, technical terms kept whole, function and question words dropped.

`tokenize("ZeRO-3 和 KV Cache 是什么？")` -> `['zero3', 'zero', '3', 'kv', 'cache', 'kvcache']`:
- English and technical terms are lowercased and kept whole (`zero3`, `rmsnorm`, `qwen2.5`, `lora`); a
  hyphenated term also yields its parts, so "ZeRO-3", "zero3" and "ZeRO 3" meet;
- two adjacent English words also yield their join (`kvcache`), so "KV Cache", "KV-Cache" and "KVCache" meet;
- Chinese runs go through jieba (search mode off: one segmentation, no overlapping n-grams);
- stop words: Chinese particles and question words (的, 是, 什么, 哪些, 如何 …) and English function words,
  the list chosen on the dev set (README, "Tokenization").

`bigrams` is the other unit of text mianjing compares: the overlap units of prompt windows, citations and
the support check (CJK character bigrams and whole Latin words; no jieba, no stop words).

Does not: stem English, convert traditional to simplified characters, or expand synonyms.
"""

from __future__ import annotations

import re
from functools import cache
from types import ModuleType

TERM = re.compile(r"[A-Za-z0-9]+(?:[-_.+/][A-Za-z0-9]+)*")
CJK = re.compile(r"[\u3400-\u9fff]")  # a CJK ideograph (the unified block and extension A)
PIECE = re.compile(r"[A-Za-z0-9]+(?:[-_.+/][A-Za-z0-9]+)*|[\u3400-\u9fff\uf900-\ufaff]+")

STOP_ZH = frozenset(
    "的 了 是 在 和 与 及 或 等 也 都 而 就 被 把 让 对 从 为 以 之 其 这 那 这个 那个 这些 那些 一个 一种 "
    "什么 哪些 哪个 哪种 如何 怎么 怎样 怎么样 为什么 为何 吗 呢 吧 啊 呀 么 请 一下 介绍 讲 讲讲 说说 "
    "谈谈 简述 简单 有 有没有 是否 能 能否 可以 会 要 需要 我 你 他 它 我们 你们 它们 中 里 上 下 "
    "时 时候 方面 问题 区别 一些 还 又 但 但是 如果 因为 所以 通常 主要 进行 使用 用".split()
)
STOP_EN = frozenset(
    "a an the is are was were be been being of to in on for and or with by as at from that this these "
    "those it its what which who whom why how when where do does did can could should would will shall "
    "may might i you we they he she me my your our their there here than then so not no vs".split()
)


@cache
def _jieba() -> ModuleType:
    import jieba

    jieba.setLogLevel(60)  # silence "Building prefix dict…"
    jieba.initialize()
    return jieba


def tokenize(text: str) -> list[str]:
    """Text -> BM25 tokens (see the module docstring)."""
    tokens: list[str] = []
    prev: tuple[int, str] | None = None  # (end, last word) of the English term just before
    for m in PIECE.finditer(text):
        piece = m.group(0)
        if not TERM.fullmatch(piece):
            tokens += [w for w in _jieba().lcut(piece) if w not in STOP_ZH]
            prev = None
            continue
        term = piece.lower()
        tokens += _term_tokens(term)
        words = re.split(r"[-_.+/]", term)
        if prev and text[prev[0] : m.start()] == " " and prev[1] not in STOP_EN and words[0] not in STOP_EN:
            tokens.append(prev[1] + words[0])
        prev = (m.end(), words[-1])
    return tokens


def _term_tokens(term: str) -> list[str]:
    if term in STOP_EN:
        return []
    parts = [p for p in re.split(r"[-_+/]", term) if p]
    if len(parts) == 1:
        return [term]
    return ["".join(parts)] + [p for p in parts if p not in STOP_EN]


def bigrams(text: str) -> set[str]:
    """Overlap units: character bigrams of CJK runs, whole lowercase words of Latin text.

    >>> sorted(bigrams("KV Cache 用显存"))
    ['cache', 'kv', '显存', '用显']
    """
    text = text.lower()
    units = set(re.findall(r"[a-z0-9]+(?:[.-][a-z0-9]+)*", text))
    for run in re.findall(r"[\u3400-\u9fff]+", text):
        units |= {run[i : i + 2] for i in range(len(run) - 1)} or {run}
    return units


def cjk_count(text: str) -> int:
    """CJK ideographs in `text`: how much of it is written in Chinese."""
    return len(CJK.findall(text))
