"""Time to a grade in `mianjing practice` with the bundled model: grading cold (the card's key points are
extracted first, then the answer judged) against grading after `session.prepare` made the key points while
the answer was being written (what the CLI and the app do now), on the same cards and the same machine.

    python benchmarks/bench_practice.py [--cards 4]

Each card is graded twice, each time with an empty key-point cache of its own: "cold" = grade_answer alone;
"prepared" = prepare (timed apart: the person is typing meanwhile) then grade_answer. The answers are the
first sentence of the notes' own answer, so the model has something to judge.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=4)
    args = parser.parse_args()

    from assistant.llm import Generator
    from assistant.retrieval import Searcher
    from assistant.settings import from_env
    from eval.command import machine
    from ingest.chunk import sentence_spans
    from practice import answerable, session

    settings = from_env()
    searcher = Searcher(settings, warn=lambda _: None)
    model = Generator.of(settings)
    own = [c for c in session.cards(searcher) if c.own_answer and not c.source.startswith("004")]
    step = max(1, len(own) // args.cards)
    cards = own[::step][: args.cards]
    cold: list[float] = []
    prepared: list[float] = []
    preparing: list[float] = []
    for card in cards:
        a = answerable.answerability(card, searcher, answered_above=settings.answered_above)
        text = a.passages[0].text
        start, end = sentence_spans(text)[min(1, len(sentence_spans(text)) - 1)]
        answer = text[start:end]
        for variant in ("cold", "prepared"):
            with tempfile.TemporaryDirectory() as cache:
                fresh = replace(settings, cache=Path(cache))
                began = time.perf_counter()
                if variant == "prepared":
                    session.prepare(a, model=model, settings=fresh)
                    preparing.append(time.perf_counter() - began)
                    began = time.perf_counter()
                session.grade_answer(a, answer, searcher=searcher, model=model, settings=fresh)
                (cold if variant == "cold" else prepared).append(time.perf_counter() - began)
        print(
            f"{card.question[:40]}: cold {cold[-1]:.1f} s, prepared {prepared[-1]:.1f} s "
            f"(prepare {preparing[-1]:.1f} s while typing)",
            flush=True,
        )
    print(f"\n{machine()}")
    mid_cold, mid_prepared = statistics.median(cold), statistics.median(prepared)
    print(
        f"grade after submit, median of {len(cards)}: cold {mid_cold:.1f} s, prepared {mid_prepared:.1f} s "
        f"(ratio {mid_prepared / mid_cold:.2f}); max cold {max(cold):.1f} s, "
        f"max prepared {max(prepared):.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
