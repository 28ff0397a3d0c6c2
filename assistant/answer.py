"""The answer pipeline, step by step: standalone question -> retrieve -> choose passages -> refusal gate ->
prompt -> generate (streamed) -> citations -> grounding check -> Answer.

The refusal decision does not trust the model alone. Three signals, any of which refuses:
1. before generating, the question's own technical terms (DoRA, GPTQ, FP8 …) mostly appear nowhere in the
   notes: the notes cannot hold the answer, so no time is spent generating one;
2. the model says the passages do not answer (the prompt's fixed refusal sentence);
3. after generating, too little of the answer's text is found in the passages (`cite.support`): the
   model answered from its own knowledge.
A refusal keeps the closest passages as pointers.

Does not: load models or the index (callers pass a `Searcher` and a `Generator`), or keep history (see
`Conversation`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from assistant import cite, prompt
from assistant.retrieval import Searcher
from assistant.settings import Settings
from retriever.search import Hit

TERM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*")


class ChatModel(Protocol):
    def stream(self, messages: list[tuple[str, str]]) -> Iterator[str]: ...
    def complete(self, messages: list[tuple[str, str]]) -> str: ...


@dataclass(frozen=True)
class AnswerSettings:
    mode: str = "hybrid"  # retrieval mode for the passages
    k: int = 10  # hits retrieved; the best answering ones become passages
    n_passages: int = 3  # passages in the prompt (README: chosen by answer quality vs first-token time)
    passage_chars: int = 250  # longest passage text shown to the model
    min_support: float = 0.4  # share of answer bigrams that must come from the passages
    unknown_terms: float = 0.5  # refuse when at least this share of the question's terms is absent
    quote_above: float = 0.915  # dense cosine of the best passage above which a refusal quotes it instead

    @classmethod
    def of(cls, settings: Settings, *, mode: str | None = None, k: int | None = None) -> AnswerSettings:
        """The answer-related values of the one Settings, with CLI overrides."""
        return cls(
            mode=mode or settings.mode,
            k=k or settings.k,
            n_passages=settings.n_passages,
            passage_chars=settings.passage_chars,
            min_support=settings.min_support,
            quote_above=settings.quote_above,
        )


@dataclass(frozen=True)
class Citation:
    n: int
    id: str
    source: str
    start: int
    end: int
    heading: str


@dataclass(frozen=True)
class Answer:
    question: str
    standalone_question: str
    text: str  # the answer shown to the user (the refusal sentence when refused)
    refused: bool
    reason: str  # why it was refused, one line ("" when answered)
    citations: list[Citation]
    passages: list[prompt.Passage]  # in prompt order
    sentences: list[cite.Sentence]  # of the generated text, with their cited or attributed passages
    pointers: list[Hit]  # the closest passages, shown with a refusal
    timings_ms: dict[str, float] = field(default_factory=dict)
    tokens_per_s: float = 0.0
    generated: str = ""  # what the model wrote, kept even when the answer is refused
    support: float = 0.0
    turn: tuple[tuple[str, str], ...] = ()  # the (role, text) messages this answer adds to a conversation
    quoted: bool = False  # the text quotes the first passage because the model's answer was unusable


def answer(
    question: str,
    *,
    searcher: Searcher,
    model: ChatModel,
    settings: AnswerSettings = AnswerSettings(),
    history: Sequence[tuple[str, str]] = (),
    known: Sequence[prompt.Passage] = (),
    on_text: Callable[[str], None] | None = None,
) -> Answer:
    """Answer `question` from the notes; `on_text` receives the generated text as it streams.

    `history` holds the conversation's earlier messages and `known` the passages they showed."""
    began = time.perf_counter()
    # Step 1: a follow-up becomes a standalone question, using the conversation so far
    standalone = rewrite(question, history, model) if history else question
    timings = {"rewrite": _ms(began)} if history else {}
    # Step 2: retrieve
    result = searcher.search(standalone, mode=settings.mode, k=settings.k)
    timings["retrieve"] = result.timings_ms["total"]
    # Step 3: choose passages: answering ones first, best first
    chosen = [h.chunk for h in result.hits if h.chunk.has_answer][: settings.n_passages]
    shown = prompt.passages(chosen, standalone, max_chars=settings.passage_chars, known=known)
    # Step 4: refuse before generating when the notes cannot hold the answer
    reason = gate_terms(standalone, searcher, settings.unknown_terms) or ("" if shown else "no passage found")
    if reason:
        return _refused(question, standalone, reason, result.hits, shown, timings, began)
    # Step 5: prompt; Step 6: generate, streamed
    messages = prompt.messages(standalone, shown, history, known)
    generated, first_token, speed = _generate(model, messages, on_text)
    timings.update(first_token=first_token, total=_ms(began))
    # Step 7: citations, with attribution for sentences the model left uncited
    sentences = cite.attribute(generated, {p.n: p.text for p in shown})
    citations = _citations(sentences, shown)
    # Step 8: the model's own refusal, or an answer the passages do not support
    support = cite.support(generated, [p.chunk.indexed for p in shown])
    # An English answer to Chinese notes shares few words with them: overlap cannot judge a translation.
    lexical = not prompt.is_english(standalone)
    reason = _said_refusal(generated) or (
        f"answer not supported by the notes (support {support:.2f})"
        if lexical and support < settings.min_support
        else ""
    )
    turn = (messages[-1], ("assistant", generated))  # what the model saw and said: the next prompt's prefix
    if reason:
        refused = _refused(question, standalone, reason, result.hits, shown, timings, began)
        refused = replace(
            refused, generated=generated, support=support, sentences=sentences, turn=turn, tokens_per_s=speed
        )
        # Step 9: unless retrieval is sure the first passage holds the answer: then quote it
        return _quoted(refused, shown[0]) if _closeness(result.hits) >= settings.quote_above else refused
    return Answer(
        question,
        standalone,
        generated,
        False,
        "",
        citations,
        shown,
        sentences,
        result.hits[:3],
        timings,
        round(speed, 2),
        generated,
        round(support, 3),
        turn,
    )


def gate_terms(question: str, searcher: Searcher, share: float) -> str:
    """A refusal reason when at least `share` of the question's technical terms occur nowhere in the notes;
    "" otherwise. Technical terms are those with two capitals or a digit (DoRA, FP8, BLIP-2); only when
    there are none, capitalized words that do not open the question (Chinchilla)."""
    found = list(dict.fromkeys(m.group(0) for m in TERM.finditer(question)))
    terms = [t for t in found if sum(c.isupper() for c in t) >= 2 or any(c.isdigit() for c in t)]
    terms = terms or [t for t in found if t[0].isupper() and not _opens(question, t)]
    absent = [t for t in terms if not _known(t, searcher.index.vocabulary)]
    if absent and len(absent) >= share * len(terms):
        return f"the notes never mention {', '.join(absent)}"
    return ""


def _opens(question: str, term: str) -> bool:
    """Does `term` start the question or a sentence in it (capitalized for grammar, not as a name)?"""
    before = question[: question.index(term)].rstrip()
    return not before or before[-1] in ".?!。？！"


def _known(term: str, vocabulary: set[str]) -> bool:
    """In the index vocabulary whole, without its hyphens, or as all of its hyphen-separated parts."""
    low = term.lower()
    parts = [p for p in re.split(r"[-.]", low) if p]
    return any(v in vocabulary for v in (low, low.replace("-", ""), low.replace(".", ""))) or (
        len(parts) > 1 and all(p in vocabulary for p in parts)
    )


def rewrite(question: str, history: Sequence[tuple[str, str]], model: ChatModel) -> str:
    """A follow-up ("那 ZeRO-3 呢？", "why is that?") -> a standalone question, by the model.

    The request continues the conversation's own messages, so llama.cpp reuses their evaluated prefix.
    """
    ask = f"（这一步不回答问题）把追问“{question}”改写成一个不依赖上文、意思完整的问题，只输出改写后的问题。"
    lines = model.complete(prompt.history_messages(history) + [("user", ask)]).strip().splitlines()
    text = lines[0].strip().strip('“”"「」') if lines else ""
    text = re.sub(r"^(改写后的问题|问题|Question)[:：]\s*", "", text)
    return text if 2 <= len(text) <= 200 else question


def _generate(
    model: ChatModel, messages: list[tuple[str, str]], on_text: Callable[[str], None] | None
) -> tuple[str, float, float]:
    """(text, ms to the first piece, pieces per second after it) of a streamed generation."""
    began = time.perf_counter()
    parts: list[str] = []
    first = 0.0
    for piece in model.stream(messages):
        if not parts:
            first = _ms(began)
        parts.append(piece)
        if on_text:
            on_text(piece)
    after_first = (_ms(began) - first) / 1000
    speed = (len(parts) - 1) / after_first if len(parts) > 1 and after_first > 0 else 0.0
    return "".join(parts).strip(), first, speed


def _said_refusal(text: str) -> str:
    flat = re.sub(r"\s+", "", text)
    said = prompt.REFUSAL_ZH.rstrip("。") in flat or "notes do not cover" in text.lower()
    return "the model found no answer in the passages" if said and len(flat) < 80 else ""


def _quoted(refused: Answer, passage: prompt.Passage) -> Answer:
    text = prompt.quote(refused.standalone_question, passage)
    sentences = cite.attribute(text, {passage.n: passage.text})
    reason = f"{refused.reason}; quoted passage [{passage.n}] instead"
    citations = _citations(sentences, [passage])
    return replace(
        refused,
        text=text,
        refused=False,
        reason=reason,
        citations=citations,
        sentences=sentences,
        quoted=True,
    )


def _closeness(hits: list[Hit]) -> float:
    """Dense similarity of the best answering hit (0 when the mode ran no dense search)."""
    return next((h.scores.get("dense") or 0.0 for h in hits if h.chunk.has_answer), 0.0)


def _citations(sentences: list[cite.Sentence], shown: list[prompt.Passage]) -> list[Citation]:
    numbered = {p.n: p for p in shown}
    used = dict.fromkeys(n for s in sentences for n in s.numbers if n in numbered)
    return [
        Citation(n, c.id, c.source, c.start, c.end, " > ".join(c.heading))
        for n in used
        for c in [numbered[n].chunk]
    ]


def _refused(
    question: str,
    standalone: str,
    reason: str,
    hits: list[Hit],
    shown: list[prompt.Passage],
    timings: dict[str, float],
    began: float,
) -> Answer:
    timings = {**timings, "first_token": timings.get("first_token", 0.0), "total": _ms(began)}
    text = prompt.refusal(question)
    turn = (("user", standalone), ("assistant", text))
    return Answer(question, standalone, text, True, reason, [], shown, [], hits[:3], timings, turn=turn)


class Conversation:
    """A chat: each answer's exact messages are kept, so the next prompt extends the last one and
    llama.cpp evaluates only the new turn; passages shown in a kept turn are referred to by number.
    Only the last `keep` turns are sent."""

    def __init__(self, *, keep: int = 3) -> None:
        self.turns: list[tuple[tuple[tuple[str, str], ...], list[prompt.Passage]]] = []
        self.keep = keep

    @property
    def messages(self) -> list[tuple[str, str]]:
        return [m for turn, _ in self.turns[-self.keep :] for m in turn]

    @property
    def known(self) -> list[prompt.Passage]:
        return list(dict.fromkeys(p for _, shown in self.turns[-self.keep :] for p in shown))

    def ask(self, question: str, **kwargs: Any) -> Answer:
        result = answer(question, history=self.messages, known=self.known, **kwargs)
        self.turns.append((result.turn, result.passages if result.generated else []))
        return result

    def clear(self) -> None:
        self.turns.clear()


def as_json(result: Answer) -> dict:
    """The JSON shape printed by `mianjing ask --json`."""
    return {
        "question": result.question,
        "standalone_question": result.standalone_question,
        "answer": result.text,
        "refused": result.refused,
        "quoted": result.quoted,
        "reason": result.reason,
        "citations": [c.__dict__ for c in result.citations],
        "passages": [p.chunk.id for p in result.passages],
        "pointers": [{"id": h.chunk.id, "heading": " > ".join(h.chunk.heading)} for h in result.pointers],
        "uncited_sentences": [s.text.strip() for s in result.sentences if not s.numbers],
        "timings_ms": result.timings_ms,
        "tokens_per_s": result.tokens_per_s,
    }


def _ms(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 1)
