"""`mianjing tune`: train a reranker on the user's own notes, and use it only when it ranks them better.

Step 1 says what the run will cost (passages still to write questions for, training pairs, minutes).
Step 2 writes the questions (tune/questions.py: cached per passage content, so an interrupted run resumes
and a changed note regenerates only its own passages) into `<index folder>/tune/`. Step 3 trains an
adapter on all but a held-out share of the passages (tune/train.py) into `<index folder>/tune/candidate/`.
Step 4 compares hybrid, the reranker in use and the tuned one on the held-out questions (hit@1, hit@5,
MRR@10, through the real search). Step 5 activates the tuned reranker for this notes folder
(`<index folder>/reranker/`, moved into place whole) only when its MRR@10 beats both; otherwise it stays in
`candidate/` and the reason is said. The bundled reranker and other notes folders are never touched.

Does not: change the default retrieval mode, or train when there are too few questions to hold some out.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.retrieval import TUNED, Searcher
from assistant.settings import Settings
from tune import questions as questions_
from tune import train as train_

PAIRS_PER_SECOND = 18.0  # measured on 2 cores (method full, 6 layers, 128 tokens), for the estimate only
QUESTIONS_PER_PASSAGE = 3.0  # kept after the round trip (the model writes three, headings add some)
MIN_PASSAGES = 10  # fewer answering passages than this: nothing worth training on

Log = Callable[[str], None]


def folder(settings: Settings) -> Path:
    return settings.index_dir / "tune"


def estimate(searcher: Searcher, settings: Settings, train: train_.TrainSettings) -> dict[str, float]:
    """Passages to generate for, seconds per passage, expected training pairs and seconds in all."""
    chunks = [c for c in searcher.index.chunks if c.has_answer]
    cached = questions_.read_cache(questions_.cache_path(settings.cache, settings.llm), lambda _: None)
    todo = [c for c in chunks if questions_.passage_key(settings.llm, c) not in cached]
    per = questions_.estimate(todo or chunks, cached)
    per_question = 1 + train.negatives + train.random_negatives  # the positive and its negatives
    pairs = QUESTIONS_PER_PASSAGE * len(chunks) * (1 - train.holdout) * per_question * train.epochs
    return {
        "passages": len(chunks),
        "todo": len(todo),
        "seconds_per_passage": per,
        "pairs": pairs,
        "seconds": per * len(todo) + pairs / PAIRS_PER_SECOND,
    }


def better(heldout: dict[str, Any]) -> tuple[bool, str]:
    """Whether the tuned reranker beats hybrid and the current reranker on held-out MRR@10, and why."""
    tuned = heldout["tuned"]["mrr@10"]
    rivals = {name: m["mrr@10"] for name, m in heldout.items() if name in ("hybrid", "current")}
    best = max(rivals, key=lambda name: rivals[name])
    verdict = tuned > rivals[best]
    word = "beats" if verdict else "does not beat"
    return verdict, f"tuned MRR@10 {tuned:.3f} {word} {best} {rivals[best]:.3f}"


def activate(candidate: Path, settings: Settings) -> Path:
    """Move the candidate adapter into `<index folder>/reranker`, replacing an older tuned one whole."""
    target = settings.index_dir / TUNED
    old = target.with_name(f"{TUNED}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    candidate.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def run(
    settings: Settings,
    searcher: Searcher,
    load: Callable[[], questions_.Model],
    *,
    train: train_.TrainSettings | None = None,
    log: Log = questions_._stderr,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Steps 1-5 for the searcher's notes; returns the training record with "activated" and "verdict"."""
    train = train or train_.TrainSettings()
    out = folder(settings)
    # Step 1: the cost, said before anything starts
    cost = estimate(searcher, settings, train)
    if cost["passages"] < MIN_PASSAGES:
        raise RuntimeError(f"{cost['passages']} answering passages: too few to train a reranker on")
    log(
        f"tune: {cost['passages']} answering passages, questions to write for {cost['todo']} "
        f"(~{cost['seconds_per_passage']:.0f} s each), ~{cost['pairs']:.0f} training pairs; "
        f"about {questions_._clock(cost['seconds'])} in all on this machine"
    )
    # Step 2: questions (resumable)
    questions_.run(settings, searcher, load, out=out, log=log, command="mianjing tune")
    # Step 3 and 4: train the candidate, compare on the held-out questions
    current, _ = searcher.reranker
    candidate = out / "candidate"
    shutil.rmtree(candidate, ignore_errors=True)
    log("tune: training the reranker (progress bar below)")
    began = time.perf_counter()
    _, record = train_.build(
        out / "questions.jsonl", candidate, train, searcher, argv=argv or [], current=current,
        command="mianjing tune",
    )  # fmt: skip
    log(f"tune: trained in {questions_._clock(time.perf_counter() - began)}")
    heldout = record["heldout"]
    if heldout is None:
        raise RuntimeError("no held-out questions to compare on: too few passages with questions")
    for name in ("hybrid", "current", "tuned"):
        if name in heldout:
            m = heldout[name]
            log(f"tune: held out ({heldout['questions']} questions) {name}: hit@1 {m['hit@1']:.3f} "
                f"hit@5 {m['hit@5']:.3f} MRR@10 {m['mrr@10']:.3f}")  # fmt: skip
    # Step 5: activate only when better
    verdict, why = better(heldout)
    record = {**record, "activated": verdict, "verdict": why}
    (candidate / "training.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", "utf-8")
    if verdict:
        where = activate(candidate, settings)
        log(f"tune: {why}: now used in rerank mode for {settings.corpus} ({where})")
    else:
        log(f"tune: {why}: kept aside in {candidate}, not used")
    return record
