"""Replay a stored `mianjing eval --generate` run through today's answer pipeline without generating: a
stand-in model returns each item's stored answer (greedy decoding: the model's text does not change between
runs while its prompt does not), so retrieval, evidence, every check, quote and citation run for real on
exactly that text. A change made after generation (a check, a quote rule, rendering) is measured on the whole
dev set in ~3 minutes instead of ~30. English questions over Chinese notes are translated again by the real
model, since their translation is not stored.

    python -m eval.replay RUN_DIR [--out FILE.json] [--dataset FILE.jsonl]

Prints key-point recall stored -> replayed (answerable questions, and per kind), refusals, grounded answers
(a cited passage is relevant), citation precision, marks without a target, and every item whose verdict or
score moved.

Does not: generate, judge, or change the stored run. A change before generation (retrieval, evidence, the
prompt) changes what the model would write, which a replay cannot know: items whose passages differ from
the stored ones are listed as not comparable.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from assistant import answer as pipeline
from assistant.retrieval import Searcher
from assistant.settings import Settings, from_env
from eval.compare import load
from eval.dataset import Item, load_dataset, relevant
from eval.generation import cited_support, plain
from eval.metrics import key_point_recall

DEV = Path(__file__).resolve().parent / "data" / "dev.jsonl"


class Stored:
    """The model's part played back: `stream` yields the stored answer; `complete` (translation) goes to
    `translator`, the real model, when there is one."""

    def __init__(self, translator: Any = None) -> None:
        self.text = ""
        self.translator = translator

    def stream(self, messages: list[tuple[str, str]]) -> Iterator[str]:
        yield self.text

    def complete(self, messages: list[tuple[str, str]]) -> str:
        if self.translator is None:
            raise RuntimeError("this replay needs the model to translate an English question")
        return str(self.translator.complete(messages))


def replay(
    rows: Sequence[dict], items: dict[str, Item], searcher: Searcher, model: Stored, settings: Settings
) -> list[dict]:
    """One dict per stored row: the stored and replayed score, refusal and quote, the replayed text and
    reason, and whether the passages shown are the stored ones."""
    out = []
    for row in rows:
        item = items.get(row["id"])
        if item is None:
            continue
        model.text = row.get("answer") or ""
        result = pipeline.answer(item.question, searcher=searcher, model=model, settings=settings)
        score = (
            0.0
            if result.refused or not item.answerable
            else key_point_recall(plain(result.text), item.key_points)
        )
        precision, without = (None, 0) if result.refused else cited_support(result, searcher.embedder)
        out.append(
            {
                "id": item.id,
                "kind": item.kind,
                "answerable": item.answerable,
                "stored": row.get("key_point_recall") or 0.0,
                "replayed": score,
                "stored_refused": bool(row.get("refused")),
                "refused": result.refused,
                "stored_quoted": bool(row.get("quoted")),
                "quoted": result.quoted,
                "reason": result.reason,
                "stored_grounded": bool(row.get("cited_relevant")),
                "grounded": any(relevant(item, c.source, c.start, c.end) for c in result.citations),
                "stored_precision": row.get("citation_precision"),
                "precision": precision,
                "stored_without": row.get("marks_without_target") or 0,
                "without": without,
                "text": result.text,
                "same_passages": [p.chunk.id for p in result.passages] == list(row.get("passages") or []),
            }
        )
    return out


def summary(found: Sequence[dict]) -> list[str]:
    """The lines `main` prints."""
    answerable = [f for f in found if f["answerable"]]
    mean = statistics.fmean
    others = [f for f in found if not f["answerable"]]
    lines = [
        f"key-point recall, {len(answerable)} answerable: stored {mean(f['stored'] for f in answerable):.4f}"
        f" -> replayed {mean(f['replayed'] for f in answerable):.4f}"
        if answerable
        else "no answerable item replayed",
        f"answerable refused {_count(answerable, 'stored_refused')} -> {_count(answerable, 'refused')};"
        f" unanswerable refused {_count(others, 'stored_refused')} -> {_count(others, 'refused')}"
        f" of {len(others)}",
    ]
    if answerable:
        lines.append(
            f"grounded {_count(answerable, 'stored_grounded')} -> {_count(answerable, 'grounded')}"
            f" of {len(answerable)}; citation precision {_precision(answerable, 'stored_precision')}"
            f" -> {_precision(answerable, 'precision')}; marks without a target"
            f" {sum(f['stored_without'] for f in answerable)} -> {sum(f['without'] for f in answerable)}"
        )
    for kind in sorted({f["kind"] for f in answerable}):
        same = [f for f in answerable if f["kind"] == kind]
        lines.append(
            f"  {kind}: {mean(f['stored'] for f in same):.3f} -> {mean(f['replayed'] for f in same):.3f}"
        )
    moved = [
        f
        for f in found
        if f["stored"] != f["replayed"]
        or (f["stored_refused"], f["stored_quoted"]) != (f["refused"], f["quoted"])
    ]
    for f in moved:
        verdict = "refused" if f["refused"] else "quoted" if f["quoted"] else "answered"
        why = f["reason"] or "checks passed"
        lines.append(f"  {f['id']}: {f['stored']:.2f} -> {f['replayed']:.2f}, {verdict} ({why})")
    apart = [f["id"] for f in found if not f["same_passages"]]
    if apart:
        lines.append(
            f"not comparable (other passages than stored: retrieval or evidence changed): {', '.join(apart)}"
        )
    return lines


def _count(found: Sequence[dict], key: str) -> int:
    return sum(bool(f[key]) for f in found)


def _precision(found: Sequence[dict], key: str) -> str:
    """Mean citation precision over the answers with a marked sentence, and how many they are."""
    values = [f[key] for f in found if f.get(key) is not None]
    return f"{statistics.fmean(values):.3f} ({len(values)})" if values else "none"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run", type=Path, help="folder of a `mianjing eval --generate` run (its metrics.json)"
    )
    parser.add_argument("--out", type=Path, help="write every replayed item here (JSON)")
    parser.add_argument(
        "--dataset", type=Path, default=DEV, help="the question set of the run (default: the dev set)"
    )
    args = parser.parse_args(argv)
    if args.out and not args.out.parent.is_dir():  # found out before minutes of replaying, not after
        print(f"mianjing: cannot write {args.out}: no folder {args.out.parent}", file=sys.stderr)
        return 2
    if not args.dataset.is_file():
        print(f"mianjing: no question set at {args.dataset}", file=sys.stderr)
        return 2
    try:
        rows = load(args.run / "metrics.json").get("generation", {}).get("rows") or []
    except ValueError as e:
        print(f"mianjing: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(
            f"mianjing: {args.run}/metrics.json has no generated answers (run eval with --generate)",
            file=sys.stderr,
        )
        return 2
    settings = from_env()
    items = {i.id: i for i in load_dataset(args.dataset, settings.corpus)[0]}
    from assistant.loading import model  # the real model, only to translate English questions

    searcher = Searcher(settings)
    found = replay(rows, items, searcher, Stored(model(settings)), settings)
    for line in summary(found):
        print(line)
    if args.out:
        args.out.write_text(json.dumps(found, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
