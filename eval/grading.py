"""Agreement of the practice grader with hand-set ratings (`eval/data/grading.jsonl`).

Each line: `{"id", "question", "passage": chunk id, "answer", "expected": again|hard|good|easy, "kind":
full|partial|wrong|empty, "lang", "split"}`. The answer is graded against the named passage (and the pieces it
was split into); a passage id the index does not hold is reported and the question's own search used instead.
Reported per split (`tune`, the default: g01-g48, the answers the thresholds were chosen on; `heldout`:
g49-g72 on 6 other passages, written before the last tuning and never tuned on): exact agreement, agreement
within one rating step, and per kind the share graded good/easy (full answers), hard (partial ones) or
again/hard (wrong and empty ones), the issue's targets.

    python -m eval.grading [--embed] [--llm]   # lexical only by default; --embed adds e5, --llm the model

Does not: tune the grader's thresholds (they live in practice/grade.py), or write files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from assistant.retrieval import Searcher
from assistant.settings import from_env
from practice import answerable, grade
from practice.points import Model, PointCache

DATA = Path(__file__).resolve().parent / "data" / "grading.jsonl"


def read(path: Path = DATA) -> list[dict]:
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        item = json.loads(line)
        if item.get("expected") not in grade.RATINGS:
            raise ValueError(f"{path}:{n}: expected must be one of {', '.join(grade.RATINGS)}")
        items.append(item)
    return items


def agreement(rows: list[tuple[str, str, str]]) -> dict:
    """rows of (kind, expected, got) -> exact, within one step, and the targets per kind."""
    step = {r: i for i, r in enumerate(grade.RATINGS)}
    n = len(rows) or 1
    out: dict = {
        "n": len(rows),
        "exact": round(sum(e == g for _, e, g in rows) / n, 3),
        "within_one": round(sum(abs(step[e] - step[g]) <= 1 for _, e, g in rows) / n, 3),
    }
    for kind, wanted in (
        ("full", {"good", "easy"}),
        ("partial", {"hard"}),
        ("wrong", {"again", "hard"}),
        ("empty", {"again"}),
    ):
        got = [g for k, _, g in rows if k == kind]
        out[f"{kind}_as_wanted"] = round(sum(g in wanted for g in got) / len(got), 3) if got else None
    out["confusion"] = {f"{e}->{g}": c for (e, g), c in sorted(Counter((e, g) for _, e, g in rows).items())}
    return out


def run(searcher: Searcher, items: list[dict], *, embed: bool, model: Model | None = None) -> dict:
    chunks = {c.id: c for c in searcher.index.chunks}
    cache = PointCache(searcher.settings.cache, getattr(model, "name", "model")) if model else None
    rows: dict[str, list[tuple[str, str, str]]] = {}
    details, seconds = [], []
    for item in items:
        chunk = chunks.get(item["passage"])
        if chunk is None:
            print(f"grading: {item['id']}: no passage {item['passage']}; searching instead", file=sys.stderr)
            found = answerable.for_question(item["question"], searcher, answered_above=0.0)
            passages = found.passages
        else:
            passages = answerable.with_parts(chunk, searcher.index.chunks)
        began = time.perf_counter()
        result = grade.grade(
            item["answer"],
            passages,
            model=model,
            cache=cache,
            embedder=searcher.embedder if embed else None,
            question=item["question"],
        )
        seconds.append(time.perf_counter() - began)
        split = item.get("split", "tune")
        rows.setdefault(split, []).append((item["kind"], item["expected"], result.rating))
        details.append(
            {
                "id": item["id"],
                "split": split,
                "expected": item["expected"],
                "got": result.rating,
                "why": result.reason,
            }
        )
    per_split = {split: agreement(found) for split, found in rows.items()}
    return {**per_split, "seconds_per_grade": round(sum(seconds) / len(seconds), 3), "rows": details}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.grading")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--embed", action="store_true", help="also compare by e5 cosine")
    parser.add_argument("--llm", action="store_true", help="grade with the settings' model")
    args = parser.parse_args(argv)
    settings = from_env()
    searcher = Searcher(settings)
    model = None
    if args.llm:
        from assistant.llm import Generator

        model = Generator.of(settings)
    report = run(searcher, read(args.data), embed=args.embed, model=model)
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
