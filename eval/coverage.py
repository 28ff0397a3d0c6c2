"""Agreement of the coverage verdicts (`practice.answerable`) with hand-checked ones
(`eval/data/coverage.jsonl`).

Each line: `{"card", "question", "passage", "answered", "split"}`: a bank card of the bundled notes, the
passage the checker read (the one coverage shows: the answering passage, or the closest one for a gap; null
for a question answered right below it), and whether that passage answers the question, at least its main
part. Splits: `tune` (60 random bank cards, seed 11: the same-list rule and the 0.92 bar were chosen
looking at them), `heldout` (30 more, seed 2026, checked after those choices without seeing the verdicts;
the window size of the confidence was then chosen on `tune` and `heldout` together), `heldout2` (40 more,
seed 2027, checked without seeing the verdicts before the window was tried) and `heldout3` (40 more,
seed 2028, drawn and checked without seeing the verdicts after every choice above was made).
A card whose passage is now another than the one checked is counted apart (its verdict was not checked).

    python -m eval.coverage

Does not: change a verdict or a threshold (they live in practice/answerable.py and the settings).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from assistant.retrieval import Searcher
from assistant.settings import from_env
from practice import answerable, session

DATA = Path(__file__).resolve().parent / "data" / "coverage.jsonl"


def read(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check(items: list[dict], searcher: Searcher, *, answered_above: float) -> dict:
    """Per split: verdicts agreeing with the check, those checked, and the disagreements."""
    cards = {c.id: c for c in session.cards(searcher)}
    result: dict[str, dict] = defaultdict(lambda: {"agree": 0, "checked": 0, "moved": 0, "wrong": []})
    for item in items:
        split = result[item["split"]]
        card = cards.get(item["card"])
        if card is None:
            split["moved"] += 1
            continue
        a = answerable.answerability(card, searcher, answered_above=answered_above)
        shown = None if a.confidence >= answerable.OWN else (a.closest.id if a.closest else None)
        if shown != item["passage"]:
            split["moved"] += 1
            continue
        split["checked"] += 1
        if a.answered == item["answered"]:
            split["agree"] += 1
        else:
            split["wrong"].append(
                f"{item['question']} ({a.confidence:.3f}, said {'answered' if a.answered else 'gap'})"
            )
    return dict(result)


def main() -> int:
    settings = from_env()
    result = check(read(), Searcher(settings), answered_above=settings.answered_above)
    for name, split in result.items():
        share = split["agree"] / split["checked"] if split["checked"] else 0.0
        print(
            f"{name}: {split['agree']} of {split['checked']} verdicts right ({share:.3f}); "
            f"{split['moved']} with another passage now, not counted"
        )
        for line in split["wrong"]:
            print(f"  - {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
