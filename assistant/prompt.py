"""The answer prompt: a fixed system message (rules + one worked example), then numbered passages and the
question, with the key rule repeated last.

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

from ingest.chunk import Chunk, sentence_spans
from retriever.tokenize import bigrams

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


@dataclass(frozen=True)
class Passage:
    n: int  # the number the prompt gives it
    chunk: Chunk
    text: str  # the part of the chunk shown to the model

    @property
    def heading(self) -> str:
        return " > ".join(self.chunk.heading[1:]) or self.chunk.source


def is_english(text: str) -> bool:
    """More than twice as many Latin words as CJK characters: "KV Cache 是什么" is Chinese."""
    words = len(re.findall(r"[A-Za-z][\w'-]*", text))
    return words > 2 * len(re.findall(r"[\u3400-\u9fff]", text))


def refusal(question: str) -> str:
    return REFUSAL_EN if is_english(question) else REFUSAL_ZH


def quote(question: str, passage: Passage) -> str:
    """The passage itself as the answer, for when the model's own answer cannot be used."""
    lead = "From your notes: " if is_english(question) else "笔记原文："
    return f"{lead}{passage.text.strip()} [{passage.n}]"


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
    chunks: list[Chunk], question: str, *, max_chars: int, known: Sequence[Passage] = ()
) -> list[Passage]:
    """Number the chosen chunks; a chunk already shown earlier in the conversation keeps its number."""
    earlier = {p.chunk.id: p for p in known}
    n = max((p.n for p in known), default=0)
    out = []
    for chunk in chunks:
        if chunk.id not in earlier:
            n += 1
            earlier[chunk.id] = Passage(n, chunk, window(chunk.text, question, max_chars))
        out.append(earlier[chunk.id])
    return out


def user_message(question: str, shown: list[Passage], known: Sequence[Passage] = ()) -> str:
    """New passages in full; passages already in the conversation by number only, so a follow-up
    that lands on the same passages adds a few tokens to the prompt instead of hundreds."""
    fresh = [p for p in shown if p not in known]
    blocks = "".join(f"[{p.n}] {p.heading}\n{p.text}\n" for p in fresh)
    again = "、".join(f"[{p.n}]" for p in shown if p in known)
    rule = (
        "Answer in English, end every sentence with its [number]."
        if is_english(question)
        else "请用中文回答，每句话末尾标注 [编号]。"
    )
    head = f"笔记片段：\n{blocks}" if fresh else ""
    also = f"（前面的片段 {again} 也与此问题相关）\n" if again else ""
    return f"{head}{also}问题：{question}\n{rule}\n回答："


def history_messages(history: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The system message and the conversation so far: the shared prefix of every prompt in a chat."""
    return [("system", SYSTEM), *history]


def messages(
    question: str,
    shown: list[Passage],
    history: Sequence[tuple[str, str]] = (),
    known: Sequence[Passage] = (),
) -> list[tuple[str, str]]:
    """(role, text) pairs: system, earlier turns, then this turn's passages and question."""
    return history_messages(history) + [("user", user_message(question, shown, known))]
