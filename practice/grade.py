"""Grade a free-text answer against the notes' answer: key points covered, missed or contradicted, and a
rating on FSRS's four (again / hard / good / easy) with a one-line reason.

Step 1: an empty answer or "不知道" / "I don't know" is `again`, without calling any model.
Step 2: the key points of the answering passages (`points.key_points`: by the model once per passage and
cached, else the passages' own sentences).
Step 3: a verdict per point. With a model: one line `n: covered|missed|contradicted` per point, parsed
strictly; a reply that does not label every point is a parse failure and falls back to step 3 without one.
Without a model (`lexical`): a point is covered when enough of it is in the answer: the larger of its CJK
bigram + Latin word recall and its jieba-term recall, or, with an embedder, a close answer sentence (e5
cosine, which carries English answers to Chinese notes). Overlap cannot see a contradiction: only the model
reports them.
A model's "covered" stands only where the answer's words back it (`_support`: overlap, or e5 for another
language): the 1.5B called every point of a wrong answer covered.
Step 4: the rating from the share of points covered (a contradiction caps it at `hard`).

Does not: pick the passages (see `answerable`), save anything (see `schedule`), or render.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ingest.chunk import Chunk, sentence_spans
from practice.points import LIMIT, Model, Point, PointCache, key_points, sentence_points
from retriever.dense import Embedder
from retriever.tokenize import bigrams, cjk_count, tokenize

RATINGS = ("again", "hard", "good", "easy")  # FSRS's Rating 1-4
# Lower bounds of the share of key points covered for hard, good, easy (chosen on the tune split of
# eval/data/grading.jsonl).
BOUNDS = (0.2, 0.45, 0.8)
COVERED = 0.35  # overlap recall from which a point counts as covered
# Share of an answer found in the notes that makes an answer covering too little hard, not again. A partial
# answer says part of a long point in its own words (recall 0.1-0.3 of the point); on the tune split 0.33-0.78
# of a partial answer is in the notes, of a wrong one under 0.3 but for two that put the notes' words in a
# wrong claim (0.35, 0.80).
PRECISE = 0.3
SAME = 0.855  # e5 cosine of an answer in another language and the key points from which it is good
NEAR = 0.85  # e5 cosine of a point and an answer sentence shown as covered (other-language answers)
DONT_KNOW = re.compile(
    r"^\W*(?:"
    r"(?:我|我也|真的|实在|这个|这题)*(?:不太?|没|记不)(?:知道|清楚|会|记得|了解|学过|印象|头绪|起来)|"
    r"(?:我)?(?:忘了|忘记了|想不起来)|"
    r"(?:sorry\W*)?i\s*(?:really\s*)?(?:don'?t|do\s*not|can'?t|cannot)\s*(?:know|remember|recall)"
    r"(?:\s*(?:this|that|it))?(?:\s*one)?|"
    r"no\s*idea|idk|not\s*sure|pass|skip"
    r")?(?:了|啊|呢|诶|哎)*\W*$",
    re.IGNORECASE,
)
VERDICT = re.compile(r"^\W*(\d{1,2})\s*[:：.、)]\s*\**\s*(covered|missed|contradicted|覆盖|遗漏|矛盾)", re.I)
WORDS = {"覆盖": "covered", "遗漏": "missed", "矛盾": "contradicted"}


@dataclass(frozen=True)
class Grade:
    rating: str  # again | hard | good | easy
    reason: str  # one line
    covered: list[Point]
    missed: list[Point]
    contradicted: list[Point] = field(default_factory=list)
    notes_answer: str = ""  # the passages' text: the notes' own answer, shown after grading
    method: str = "lexical"  # model | lexical | none (nothing to compare: an empty answer)
    failures: list[str] = field(default_factory=list)  # model replies that did not parse


def grade(
    answer: str,
    passages: Sequence[Chunk],
    *,
    model: Model | None = None,
    cache: PointCache | None = None,
    embedder: Embedder | None = None,
    question: str = "",
    focus: tuple[int, int] | None = None,
) -> Grade:
    """Grade `answer` to `question` against the answering `passages` (see the module docstring); with
    `focus` (source offsets in the first passage: the part of a long passage that answers), against the key
    points there only."""
    if not passages:
        raise ValueError("nothing to grade against: the notes hold no answering passage")
    notes = "\n\n".join(c.text for c in passages)
    # Step 1: no answer at all
    if DONT_KNOW.match(answer):
        points, _ = key_points(passages)  # the notes' sentences: no model for an empty answer
        return Grade(
            "again", "no answer given", [], within(points, passages[0], focus), [], notes, "none", []
        )
    # Step 2: the key points of the notes' answer
    points, failures = key_points(passages, model=model, cache=cache)
    points = within(points, passages[0], focus)
    if not points:
        raise ValueError(f"the passage {passages[0].id} has no sentence to grade against")
    # Step 3: a verdict per point, by the model, else by overlap (or e5 for an answer in another language)
    verdicts, failure = _model_verdicts(answer, points, model) if model is not None else (None, "")
    failures += [failure] if failure else []
    question = question or " ".join(passages[0].heading[1:])
    if verdicts is not None:
        support = _support(answer, points, notes, question, embedder)
        verdicts = [v if v != "covered" or s else "missed" for v, s in zip(verdicts, support, strict=True)]
        covered, missed, contradicted = _split(points, verdicts)
        return Grade(
            *rate(len(covered), len(points), len(contradicted)),
            covered,
            missed,
            contradicted,
            notes,
            "model",
            failures,
        )
    if embedder is not None and _other_language(answer, notes):
        return _cross_lingual(answer, points, notes, embedder, failures)
    covered, missed, _ = _split(points, lexical_verdicts(answer, points, question))
    rating, reason = rate(len(covered), len(points))
    precise = precision(answer, notes, question)
    if rating == "again" and precise >= PRECISE:
        rating, reason = "hard", f"{reason}; what you said is in the notes ({precise:.0%} of it)"
    return Grade(rating, reason, covered, missed, [], notes, "lexical", failures)


def within(points: list[Point], first: Chunk, focus: tuple[int, int] | None) -> list[Point]:
    """The points of `first` that overlap `focus`: a card one item of a long list answers is graded on that
    item, not on the list. When none of `points` does (the focus lies past the first LIMIT sentences), the
    passage's own sentences there; all `points` without a focus, or when the focus holds no sentence."""
    if focus is None:
        return points

    def inside(found: list[Point]) -> list[Point]:
        return [p for p in found if p.chunk == first.id and p.start < focus[1] and p.end > focus[0]]

    return inside(points) or inside(sentence_points(first, limit=len(first.text)))[:LIMIT] or points


def _support(
    answer: str, points: Sequence[Point], notes: str, question: str, embedder: Embedder | None
) -> list[bool]:
    """Per point, whether the answer's own words back a "covered" verdict: the 1.5B model called every
    point of "两者完全一样" covered. Overlap for an answer in the notes' language, e5 closeness for one in
    another language (without an embedder, the model is believed there)."""
    if _other_language(answer, notes):
        if embedder is None:
            return [True] * len(points)
        return [c >= NEAR for c in _closeness(answer, points, embedder)]
    return [v == "covered" for v in lexical_verdicts(answer, points, question)]


def _split(points: Sequence[Point], verdicts: Sequence[str]) -> tuple[list[Point], list[Point], list[Point]]:
    pairs = list(zip(points, verdicts, strict=True))
    return tuple([p for p, v in pairs if v == kind] for kind in ("covered", "missed", "contradicted"))  # type: ignore[return-value]


def rate(covered: int, total: int, contradicted: int = 0) -> tuple[str, str]:
    """(rating, one-line reason) from the number of key points covered out of `total`.

    >>> rate(3, 4)
    ('good', 'covered 3 of 4 key points')
    """
    share = covered / total if total else 0.0
    level = sum(share >= bound for bound in BOUNDS)
    reason = f"covered {covered} of {total} key points"
    if contradicted:
        level = min(level, 1)
        reason += f"; {contradicted} contradicted by the notes"
    return RATINGS[level], reason


def lexical_verdicts(answer: str, points: Sequence[Point], question: str = "") -> list[str]:
    """covered / missed per point: the larger of its bigram recall and its term recall in the answer, the
    terms counted beyond the question's own (every answer repeats those: `ZeRO-3`)."""
    asked = _terms(question)
    units, terms = bigrams(answer), _terms(answer)
    verdicts = []
    for p in points:
        wanted = _terms(p.text) - asked or _terms(p.text)
        recall = max(_recall(bigrams(p.text), units), _recall(wanted, terms))
        verdicts.append("covered" if recall >= COVERED else "missed")
    return verdicts


def _terms(text: str) -> set[str]:
    """jieba terms without single characters, numbers, and the parts of a term also present whole
    (`ZeRO-3` counts once, as `zero3`)."""
    found = {t for t in tokenize(text) if len(t) > 1 and not t.isdigit()}
    return {t for t in found if not any(t != other and t in other for other in found)}


def precision(answer: str, notes: str, question: str) -> float:
    """Share of the answer's own units (those not already in the question) found in the notes."""
    own = bigrams(answer) - bigrams(question)
    return _recall(own, bigrams(notes)) if len(own) >= 3 else 0.0


def _other_language(answer: str, notes: str) -> bool:
    """An answer with (almost) no CJK to notes that are mostly CJK: overlap cannot judge a translation."""
    return cjk_count(answer) < 0.1 * len(answer) and cjk_count(notes) > 0.3 * len(notes)


def _cross_lingual(
    answer: str, points: Sequence[Point], notes: str, embedder: Embedder, failures: list[str]
) -> Grade:
    """The e5 cosine of the whole answer and the key points decides; points near an answer sentence count
    as covered (shown only: per point closeness is too coarse to rate on)."""
    vectors = embedder.passages([answer, "\n".join(p.text for p in points)])
    whole = float(vectors[0] @ vectors[1])
    near = _closeness(answer, points, embedder)
    covered = [p for p, c in zip(points, near, strict=True) if c >= NEAR]
    missed = [p for p, c in zip(points, near, strict=True) if c < NEAR]
    rating = "good" if whole >= SAME else "again"
    reason = f"answer in another language: e5 similarity {whole:.2f} to the notes' key points"
    return Grade(rating, reason, covered, missed, [], notes, "embedding", failures)


def _recall(wanted: set[str], found: set[str]) -> float:
    return len(wanted & found) / len(wanted) if wanted else 0.0


def _closeness(answer: str, points: Sequence[Point], embedder: Embedder) -> list[float]:
    """Per point, the e5 cosine of its closest answer sentence."""
    sentences = [answer[a:b].strip() for a, b in sentence_spans(answer)] or [answer]
    vectors = embedder.passages(sentences + [p.text for p in points])
    similar = vectors[len(sentences) :] @ vectors[: len(sentences)].T
    return [float(v) for v in np.max(similar, axis=1)]


def messages(answer: str, points: Sequence[Point]) -> list[tuple[str, str]]:
    listed = "\n".join(f"{n}. {p.text}" for n, p in enumerate(points, start=1))
    system = (
        "You grade a candidate's interview answer against the key points of the reference notes. "
        "For each key point write one line `<number>: covered` if the answer states it (in any words or "
        "language), `<number>: missed` if it does not, `<number>: contradicted` if the answer states the "
        "opposite. One line per key point, nothing else."
    )
    return [("system", system), ("user", f"Key points:\n{listed}\n\nCandidate's answer:\n{answer.strip()}")]


def _model_verdicts(answer: str, points: Sequence[Point], model: Model) -> tuple[list[str] | None, str]:
    """(verdict per point, "") or (None, the parse failure)."""
    raw = model.complete(messages(answer, points))
    found: dict[int, str] = {}
    for line in raw.splitlines():
        if m := VERDICT.match(line.strip()):
            found.setdefault(int(m.group(1)), WORDS.get(m.group(2), m.group(2).lower()))
    if set(found) >= set(range(1, len(points) + 1)):
        return [found[n] for n in range(1, len(points) + 1)], ""
    return (
        None,
        f"grading reply labels {len(set(found) & set(range(1, len(points) + 1)))} of {len(points)} points",
    )
