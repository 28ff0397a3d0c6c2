"""The answer pipeline, step by step: standalone question -> search query -> retrieve -> choose passages ->
refusal gate -> prompt -> generate (streamed) -> verdict (answer, refuse or quote) -> citations -> Answer.

An English question over notes written mostly in Chinese is searched with its Chinese translation (by the
model, one short completion): BM25 and e5 both find Chinese passages far better from a Chinese query (dev set,
English questions: hit@1 0.49 -> 0.65, hit@3 0.70 -> 0.95). The evidence is still chosen, and the prompt
still written, for the question as asked, so the answer is in English.

The refusal decision does not trust the model alone. Three signals, any of which refuses:
1. before generating, the question's own technical terms (DoRA, GPTQ, FP8 …) mostly appear nowhere in the
   notes, or none of its names (K-means) appears in the passages found: the notes cannot hold the answer,
   so no time is spent generating one;
2. the model says the passages do not answer (the prompt's fixed refusal sentence);
3. after generating, too little of the answer's text is found in the passages (`cite.support`): the
   model answered from its own knowledge.
A refusal keeps the closest passages as pointers; when retrieval is sure of the first passage (dense cosine
of at least `quote_above`), that passage is quoted instead of refusing (`decide`). A Chinese answer that
keeps little of the first evidence, in few words, is also replaced by that evidence quoted (`_thin`): the
model cut the notes' answer short (dev set: 46 answers, key-point recall 0.59 -> 0.67). A quote shows the
other shown pieces of the quoted passage's note section with it (a long answer chunked in two), in the
notes' order (dev set: 3 quotes gain a missing point, none loses; 0.683 -> 0.689). A sentence that only
pastes back the evidence's headings is left out of the answer (`pasted_heading`).

Does not: load models or the index (callers pass a `Searcher` and a `Generator`, see
`assistant.loading`), or keep history (see `Conversation`).
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from assistant import cite, evidence, prompt
from assistant.retrieval import Searcher
from assistant.settings import Settings
from retriever.index import Index, mentioned
from retriever.search import Hit
from retriever.tokenize import bigrams, cjk_count, tokenize


class ChatModel(Protocol):
    def stream(self, messages: list[tuple[str, str]]) -> Iterator[str]: ...
    def complete(self, messages: list[tuple[str, str]]) -> str: ...


@dataclass(frozen=True)
class Citation:
    n: int
    id: str
    source: str
    start: int
    end: int
    heading: str


@dataclass(frozen=True)
class Diagnostics:
    """How an answer came about: for the JSON, the eval and the next turn of a conversation."""

    generated: str = ""  # what the model wrote, kept even when the answer is refused
    prompt: str = ""  # the user message the model was sent ("" when nothing was generated)
    support: float = 0.0  # share of the generated text found in the passages
    timings_ms: dict[str, float] = field(default_factory=dict)
    tokens_per_s: float = 0.0
    query: str = ""  # what was searched: the standalone question, or its translation into the notes' language


@dataclass(frozen=True)
class Answer:
    question: str
    standalone_question: str
    text: str  # the answer shown to the user (the refusal sentence when refused)
    refused: bool
    reason: str  # why it was refused or quoted, one line ("" when answered)
    quoted: bool  # the text quotes a passage (the first, or the one marks alone point at) and its section
    citations: list[Citation]
    passages: list[prompt.Passage]  # in prompt order
    sentences: list[cite.Sentence]  # of the text the citations come from, with their passages
    pointers: list[Hit]  # the closest passages, shown with a refusal
    diagnostics: Diagnostics = Diagnostics()


@dataclass(frozen=True)
class Verdict:
    text: str
    refused: bool
    reason: str
    quoted: bool = False
    passages: tuple[int, ...] = ()  # the numbers of the quoted passages (when quoted)


def answer(
    question: str,
    *,
    searcher: Searcher,
    model: ChatModel,
    settings: Settings | None = None,
    history: Sequence[tuple[str, str]] = (),
    known: Sequence[prompt.Passage] = (),
    on_text: Callable[[str], None] | None = None,
) -> Answer:
    """Answer `question` from the notes; `on_text` receives the generated text as it streams.

    `settings` (default: the searcher's) also choose the retrieval mode and k; `history` holds the
    conversation's earlier messages and `known` the passages they showed."""
    settings = settings or searcher.settings
    began = time.perf_counter()
    # Step 1: a follow-up becomes a standalone question, using the conversation so far
    standalone = rewrite(question, history, model, style=settings.answer_style) if history else question
    timings = {"rewrite": _ms(began)} if history else {}
    # Step 2: retrieve, in the notes' language
    query = standalone
    across = prompt.is_english(standalone) and searcher.index.cjk_share > 0.3  # English over Chinese notes
    if settings.translate == "auto" and across:
        translating = time.perf_counter()
        query = translate(standalone, model, style=settings.answer_style)
        timings["translate"] = _ms(translating)
    result = searcher.search(query, mode=settings.mode, k=settings.k)
    timings["retrieve"] = result.timings_ms["total"]
    # Step 3: choose passages: answering ones first, best first
    # an English answer translates its evidence: two passages serve it better than three (dev set); a question
    # of several parts gets one more, since its parts are often answered in different places
    n = min(settings.n_passages, settings.english_passages) if across else settings.n_passages
    if settings.answer_style == "evidence" and not across and evidence.parts(standalone):
        n = settings.part_passages
    chosen = [h.chunk for h in result.hits if h.chunk.has_answer][:n]
    style = settings.answer_style
    known = known if style == "window" else ()  # evidence is numbered from [1] in every answer
    shown = prompt.passages(
        chosen,
        standalone,  # the evidence is chosen for the question as asked (e5 across languages)
        max_chars=settings.passage_chars,
        known=known,
        style=style,
        context=settings.evidence_context,
        similar=_similar(searcher) if settings.mode != "bm25" else None,
    )
    # Step 4: refuse before generating when the notes cannot hold the answer
    early = (
        gate_terms(standalone, searcher.index, settings.unknown_terms)
        or ("" if shown else "no passage found")
        or gate_shown(standalone, shown)
    )
    # Step 5: prompt; Step 6: generate, streamed
    generated, sent, first_token, speed = "", "", 0.0, 0.0
    if not early:
        messages = prompt.messages(standalone, shown, history, known, style=style)
        generated, first_token, speed = _generate(model, messages, on_text)
        sent = messages[-1][1]
    # Step 7: the model's own refusal, or an answer the passages do not support; a sure passage is quoted
    support = cite.support(generated, [p.chunk.indexed for p in shown]) if generated else 0.0
    verdict = decide(question, standalone, early, generated, support, shown, result.hits, settings)
    # Step 8: citations, with attribution for sentences the model left uncited
    texts = {p.n: p.text for p in shown}
    sentences = _quoted(verdict) if verdict.quoted else cite.attribute(generated, texts)
    if style == "evidence" and generated and not verdict.refused and not verdict.quoted:
        # Step 9: every mark checked against its evidence and moved to the evidence restated
        sentences = cite.verify(
            sentences,
            texts,
            similar=_restates(searcher) if settings.mode != "bm25" else None,
            asked=standalone,
        )
        pasted = pasted_heading(shown)
        verdict = _checked(verdict, sentences, pasted, question, standalone, shown, result.hits, settings)
        if not verdict.refused and not verdict.quoted:
            in_turn = _pasted_in_turn(sentences, shown)  # read from the marks as the model wrote them
            text, sentences = cite.render(generated, sentences, drop=pasted, questions=True)
            verdict = Verdict(text, False, "")
            if not cite.wording(text):  # headings were all it said
                reason = f"the model only repeated headings; quoted [{shown[0].n}]"
                verdict = _quote(standalone, shown[0], shown, reason)
            elif in_turn:
                reason = f"the model pasted the evidence back piece by piece; quoted [{shown[0].n}]"
                verdict = _quote(standalone, shown[0], shown, reason)
            else:  # judged on what it says: pasted headings and questions left out
                verdict = _thin(verdict, text, standalone, shown, settings)
        if verdict.refused or verdict.quoted:
            sentences = _quoted(verdict) if verdict.quoted else []
    if verdict.quoted:  # the sources show what the quote shows
        shown = [prompt.whole(p) if p.n in verdict.passages else p for p in shown]
    source = [p for p in shown if p.n in verdict.passages] if verdict.quoted else shown
    timings.update(first_token=first_token, total=_ms(began))
    return Answer(
        question=question,
        standalone_question=standalone,
        text=verdict.text,
        refused=verdict.refused,
        reason=verdict.reason,
        quoted=verdict.quoted,
        citations=[] if verdict.refused else _citations(sentences, source),
        passages=shown,
        sentences=sentences if generated else [],  # verified (evidence style): flags unsupported ones
        pointers=result.hits[:3],
        diagnostics=Diagnostics(generated, sent, round(support, 3), timings, round(speed, 2), query),
    )


def decide(
    question: str,
    standalone: str,
    early: str,
    generated: str,
    support: float,
    shown: list[prompt.Passage],
    hits: list[Hit],
    settings: Settings,
) -> Verdict:
    """What the user is shown: the generated answer, a refusal (with why), or a passage quoted (the one an
    answer of marks alone points at, or the first when retrieval is sure of it).

    `early` is the reason to refuse found before generating ("" when the model was asked)."""
    if early:
        return Verdict(prompt.refusal(question), True, early)
    pointed = cite.parse(generated, [p.n for p in shown])
    if pointed and not cite.wording(generated):
        # the model answered with marks alone ("[1]"): it points at the evidence that answers; show it
        chosen = next(p for p in shown if p.n == pointed[0])
        return _quote(standalone, chosen, shown, f"the model only pointed at [{chosen.n}]; quoted it")
    # An English answer to Chinese notes shares few words with them: overlap cannot judge a translation.
    lexical = not prompt.is_english(standalone)
    reason = _said_refusal(generated) or (
        f"answer not supported by the notes (support {support:.2f})"
        if lexical and support < settings.min_support
        else ""
    )
    if not reason:
        return Verdict(generated, False, "")
    if _closeness(hits) >= settings.quote_above:  # retrieval is sure the first passage holds the answer
        return _quote(standalone, shown[0], shown, f"{reason}; quoted passage [{shown[0].n}] instead")
    return Verdict(prompt.refusal(question), True, reason)


def _checked(
    verdict: Verdict,
    sentences: list[cite.Sentence],
    pasted: Callable[[str], bool],
    question: str,
    standalone: str,
    shown: list[prompt.Passage],
    hits: list[Hit],
    settings: Settings,
) -> Verdict:
    """After `cite.verify`: an answer whose sentences mostly restate no evidence (by characters; English
    ones judged across languages) is the model's own knowledge, not the notes': quote or refuse, as
    `decide` does. Pasted headings (`pasted`, from `pasted_heading`) are not weighed: the answer leaves
    them out (`cite.render`)."""
    judged = [s for s in sentences if s.supported is not None and not pasted(cite.strip_marks(s.text))]
    weight = sum(len(s.text) for s in judged)
    unsupported = sum(len(s.text) for s in judged if not s.supported)
    if not weight or unsupported / weight <= 0.5:
        return verdict
    reason = f"most of the answer restates no evidence ({unsupported / weight:.0%} of its text)"
    if _closeness(hits) >= settings.quote_above:
        return _quote(standalone, shown[0], shown, f"{reason}; quoted [{shown[0].n}] instead")
    return Verdict(prompt.refusal(question), True, reason)


def _quoted(verdict: Verdict) -> list[cite.Sentence]:
    """The sentences of a quote, each from the passages whose marks follow it (lead and heading lines too;
    a stretch joined from two overlapping passages ends with both marks, and its sentences are both's)."""
    found = cite.sentences(verdict.text, set(verdict.passages))
    out, owners = [], verdict.passages[-1:]
    for s in reversed(found):
        owners = s.numbers or owners
        out.append(s if s.numbers else replace(s, attributed=owners))
    return out[::-1]


def _thin(
    verdict: Verdict, said: str, standalone: str, shown: list[prompt.Passage], settings: Settings
) -> Verdict:
    """A Chinese answer that keeps less than `quote_thin` of the first evidence's words, in less than
    `quote_thin` of its length, cut the notes' answer short (one sentence of a four-point list): the evidence
    is shown instead, quoted. `said` is the answer as rendered, so a clause repeated under every mark, pasted
    headings or the question asked back do not count. English answers translate, so words cannot tell; they
    stay.

    The evidence quoted is the one the answer restates (`_restated`): the model often finds the answer in
    [2] when [1] is a sibling passage about the same topic ("batch size 翻倍，学习率怎么调？": [1] on batch
    size ramp-up, [2] on the linear scaling rule the answer restates). Measured against that evidence too,
    an answer that is not thin there stays (dev set, rerank mode: key-point recall 0.736 -> 0.756)."""
    if not settings.quote_thin or prompt.is_english(standalone):
        return verdict
    length = len(re.sub(r"\[\d+\]|\s", "", said))
    answered = bigrams(said)

    def kept(p: prompt.Passage) -> float:
        words = bigrams(p.text)
        return len(words & answered) / max(1, len(words))

    def thin(p: prompt.Passage) -> bool:
        return kept(p) < settings.quote_thin and length < settings.quote_thin * len(p.text)

    if not thin(shown[0]):
        return verdict
    chosen = _restated(answered, standalone, shown)
    if not thin(chosen):
        return verdict
    reason = f"the answer left out most of evidence [{chosen.n}] (kept {kept(chosen):.0%} of its words)"
    return _quote(standalone, chosen, shown, f"{reason}; quoted it")


RESTATED = 1.5  # how much more of the answer another evidence must hold than [1] to be the one it restates


def _restated(answered: set[str], standalone: str, shown: list[prompt.Passage]) -> prompt.Passage:
    """The evidence the answer (`answered`: its bigrams) restates: the one holding the most of its words
    (other than the question's, which every evidence may share), when that is `RESTATED` times what [1]
    holds; else [1]. Retrieval's order stays the tie-breaker, so an answer drawing on two passages alike is
    judged against [1]."""
    mine = answered - bigrams(standalone) or answered
    held = [len(mine & bigrams(p.text)) for p in shown]
    best = max(range(len(shown)), key=lambda i: (held[i], -i))
    return shown[best] if held[best] > RESTATED * held[0] else shown[0]


def _pasted_in_turn(sentences: Sequence[cite.Sentence], shown: Sequence[prompt.Passage]) -> bool:
    """Does the answer (its sentences as the model wrote them, `cite.sentences`) walk through the evidence
    in its order, each piece under its own opening mark ("[1] … [2] … [3] …"): the prompt's evidence pasted
    back, not an answer chosen from it?"""
    valid = [p.n for p in shown]
    opening = [
        n for s in sentences if (lead := cite.LEAD.match(s.text)) for n in cite.parse(lead.group(1), valid)
    ]
    return len(shown) >= 3 and opening[:3] == [1, 2, 3]


def _quote(standalone: str, passage: prompt.Passage, shown: list[prompt.Passage], reason: str) -> Verdict:
    """The verdict that shows `passage` itself, quoted, in place of the model's answer, with the other shown
    pieces of its note section (a long answer split in two: "7" and "7~2"), so the quote is the notes' whole
    answer there; each piece whole, not the evidence the model was given (`prompt.whole`)."""
    pieces = [prompt.whole(p) for p in prompt.section(passage, shown)]
    numbers = tuple(p.n for p in pieces)
    if len(pieces) > 1:
        reason += f" (with {', '.join(f'[{n}]' for n in numbers[1:])}, the rest of its section)"
    return Verdict(prompt.quote(standalone, *pieces), False, reason, quoted=True, passages=numbers)


def pasted_heading(shown: Sequence[prompt.Passage]) -> Callable[[str], bool]:
    """Is a sentence of the answer only headings of the evidence pasted back (the prompt's "（heading）"
    lines, a section's question title: "平衡二叉树和红黑树 应用PEFT包装模型 (Wrap Model with PEFT)",
    "为什么要这么做？" out of the title "…是怎样的？为什么要这么做？")? Such a sentence answers nothing,
    whatever its marks: the answer leaves it out (dev set: 11 answers, key points unchanged).

    The prompt's own closing instruction pasted back ("Answer in English (translate the Chinese evidence),",
    dev d009) answers nothing either: it counts as a heading.

    Compared without white space, punctuation, list numbers or case: a sentence of 4 characters or more
    within one heading, or one made of whole headings (numbers between them allowed)."""
    titles = {_flat(h) for p in shown for h in p.chunk.heading} | {_flat(r) for r in prompt.RULES}
    titles -= {""}

    def pasted(sentence: str) -> bool:
        flat = _flat(sentence)
        within = len(flat) >= 4 and any(flat in t for t in titles)  # "是的。" is no title's part
        return within or _made_of(flat, titles)

    return pasted


def _flat(text: str) -> str:
    text = unicodedata.normalize("NFKC", cite.strip_marks(text))
    text = re.sub(r"^[\W_]*\d+[.、)]?(?=\D)", "", text)  # "8. transformer在哪里…", "（6. 如何…）"
    return "".join(re.findall(r"[A-Za-z0-9\u3400-\u9fff]", text)).lower()


def _made_of(flat: str, titles: set[str]) -> bool:
    """Can `flat` be cut into whole titles (and list numbers between them)?"""
    ends = {0}
    for i in range(len(flat) + 1):
        if i not in ends:
            continue
        ends |= {i + len(t) for t in titles if flat.startswith(t, i)}
        if number := re.match(r"\d+", flat[i:]):
            ends.add(i + number.end())
    return len(flat) in ends and len(flat) > 0


def gate_terms(question: str, index: Index, share: float) -> str:
    """A refusal reason when at least `share` of the question's technical terms occur nowhere in the notes;
    "" otherwise. Technical terms are the names the answer check knows (`cite.is_name`: two capitals within
    one hyphen-free part, or a digit: DoRA, FP8, BLIP-2; not Kahneman-Tversky); only when there are none,
    capitalized words that do not open the question (Chinchilla)."""
    found = _latin_words(question)
    terms = [t for t in found if cite.is_name(t)]
    terms = terms or [t for t in found if t[0].isupper() and not _opens(question, t)]
    absent = [t for t in terms if not index.mentions(t)]
    if absent and len(absent) >= share * len(terms):
        return f"the notes never mention {', '.join(absent)}"
    return ""


def gate_shown(question: str, shown: Sequence[prompt.Passage]) -> str:
    """A refusal reason when the passages to be shown mention none of the names the question asks about
    ("K-means 聚类的 K 值怎么选？" over notes that have no K-means: the passages found are about top-k and
    Q/K/V, and the model would restate them as an answer). The names: in a Chinese question, its Latin words
    written with a capital or a digit (ViT, K-means, FP16; not "patch", "hallucination" or "dot-product",
    often the English word for what the notes say in Chinese: "点乘（dot-product）"); in an English
    question, `cite.is_name` ones; never the generic ones (LLM, GPU). A name counts as mentioned as BM25
    sees it (`Index.mentions`)."""
    found = _latin_words(question)
    if prompt.is_english(question):
        names = [t for t in found if cite.is_name(t)]
    else:
        names = [t for t in found if len(t) > 1 and (t.lower() != t or any(c.isdigit() for c in t))]
    names = [
        t for t in names if not any(part.lower().removesuffix("s") in cite.GENERIC for part in t.split("-"))
    ]
    if not names or not shown:
        return ""
    words = set(tokenize(" ".join(p.chunk.indexed for p in shown)))
    absent = [t for t in names if not mentioned(t, words)]
    if len(absent) < len(names):
        return ""
    return f"the passages found never mention {', '.join(absent)}"


def _latin_words(question: str) -> list[str]:
    """The question's Latin words and names (`cite.TERM`: ZeRO-3, nn.DataParallel), once each, in order."""
    return list(dict.fromkeys(m.group(0) for m in cite.TERM.finditer(question)))


def _opens(question: str, term: str) -> bool:
    """Does `term` start the question or a sentence in it (capitalized for grammar, not as a name)?"""
    before = question[: question.index(term)].rstrip()
    return not before or before[-1] in ".?!。？！"


def rewrite(
    question: str, history: Sequence[tuple[str, str]], model: ChatModel, *, style: str = "window"
) -> str:
    """A follow-up ("那 ZeRO-3 呢？", "why is that?") -> a standalone question, by the model.

    The request continues the conversation's own messages, so llama.cpp reuses their evaluated prefix.
    """
    ask = f"（这一步不回答问题）把追问“{question}”改写成一个不依赖上文、意思完整的问题，只输出改写后的问题。"
    request = prompt.history_messages(history, style=style) + [("user", ask)]
    lines = model.complete(request).strip().splitlines()
    text = lines[0].strip().strip('“”"「」') if lines else ""
    text = re.sub(r"^(改写后的问题|问题|Question)[:：]\s*", "", text)
    return text if 2 <= len(text) <= 200 else question


TRANSLATE = "（这一步不回答问题）把英文面试问题翻译成中文，专业术语保留英文原词。只输出翻译，不要回答问题。"
TRANSLATED = ("英文：Why does LoRA not add inference latency?\n中文：", "为什么 LoRA 不会增加推理延迟？")


def translate(question: str, model: ChatModel, *, style: str = "evidence") -> str:
    """An English question -> Chinese, for searching Chinese notes (one worked example: without it the
    1.5B model rephrases in English). The question itself when the reply is empty, too long or not Chinese.

    The request starts with the answer prompt's own system message, so llama.cpp keeps that prefix for the
    answer (a request of its own cost the answer ~3 s of re-evaluating it)."""
    request = [
        *prompt.fixed_start(style),
        ("user", f"{TRANSLATE}\n{TRANSLATED[0]}"),
        ("assistant", TRANSLATED[1]),
    ]
    lines = model.complete([*request, ("user", f"英文：{question}\n中文：")]).strip().splitlines()
    text = re.sub(r"^中文[:：]\s*", "", lines[0].strip()) if lines else ""
    return text if cjk_count(text) >= 2 and len(text) <= 2 * len(question) + 20 else question


def _similar(searcher: Searcher) -> cite.Similar:
    """e5 cosine of the question and each text: ranks evidence when the question shares no word with a
    passage (an English question over Chinese notes).

    A passage's atoms are embedded once per answer: each part of a question of several parts ranks them."""
    vectors: dict[tuple[str, ...], Any] = {}

    def similar(question: str, texts: Sequence[str]) -> Sequence[float]:
        embedder = searcher.embedder
        key = tuple(texts)
        if key not in vectors:
            vectors[key] = embedder.passages(list(texts))
        return [float(v) for v in vectors[key] @ embedder.query(question)]

    return similar


def _restates(searcher: Searcher) -> cite.Similar:
    """e5 cosine of an answer sentence and each piece of evidence (both embedded alike, as the eval's
    cross-lingual support check): an English sentence restating Chinese notes shares no words with them."""

    vectors: dict[str, Any] = {}  # each piece of evidence embedded once per answer, not once per sentence

    def similar(sentence: str, texts: Sequence[str]) -> Sequence[float]:
        embedder = searcher.embedder
        mine = embedder.query(sentence)
        for t in texts:
            if t not in vectors:
                vectors[t] = embedder.query(t)
        return [float(vectors[t] @ mine) for t in texts]

    return similar


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
        generated = result.diagnostics.generated
        self.turns.append((self.turn_of(result), result.passages if generated else []))
        return result

    @staticmethod
    def turn_of(result: Answer) -> tuple[tuple[str, str], ...]:
        """The (role, text) messages an answer adds: what the model saw and said, which the next prompt
        extends; for an answer refused before generating, the question and the refusal."""
        d = result.diagnostics
        if d.generated:
            return (("user", d.prompt), ("assistant", d.generated))
        return (("user", result.standalone_question), ("assistant", result.text))

    def clear(self) -> None:
        self.turns.clear()


def as_json(result: Answer) -> dict:
    """The JSON shape printed by `mianjing ask --json`."""
    return {
        "question": result.question,
        "standalone_question": result.standalone_question,
        "search_query": result.diagnostics.query or result.standalone_question,
        "answer": result.text,
        "refused": result.refused,
        "quoted": result.quoted,
        "reason": result.reason,
        "citations": [c.__dict__ for c in result.citations],
        "passages": [p.chunk.id for p in result.passages],
        "pointers": [{"id": h.chunk.id, "heading": " > ".join(h.chunk.heading)} for h in result.pointers],
        "uncited_sentences": [s.text.strip() for s in result.sentences if not s.numbers],
        "unsupported_sentences": [s.text.strip() for s in result.sentences if s.supported is False],
        "timings_ms": result.diagnostics.timings_ms,
        "tokens_per_s": result.diagnostics.tokens_per_s,
    }


def _ms(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 1)
