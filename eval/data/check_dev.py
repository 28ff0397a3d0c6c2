#!/usr/bin/env python3
"""Validate the retrieval dev/eval set `eval/data/dev.jsonl` against the notes corpus.

Usage:
    python eval/data/check_dev.py [corpus_dir] [--data PATH]

`corpus_dir` defaults to the repo's `corpus/` folder if it exists, else /work/shared/notes.
`--data` defaults to `dev.jsonl` next to this script.

Checks (each failure is reported with its line number; exit status 1 if any):
  * every non-empty line is a JSON object with the required fields and types;
  * ids are unique, look like d001, d002, ... and appear in increasing order;
  * `kind` is one of KINDS;
  * `unanswerable` items have `evidence: []`, every other item has >= 1 quote, `multi` has >= 2;
  * each quote names a file in the corpus, is MIN_QUOTE..MAX_QUOTE characters long and occurs
    exactly once in that file (file read as UTF-8, BOM dropped, as the ingest loader does), so its
    [start, end) span is unambiguous;
  * overall minimums: MIN_TOTAL items, MIN_UNANSWERABLE unanswerable items, and every corpus file is
    the evidence source of at least MIN_PER_SOURCE items.

Warnings (printed, do not fail): a `multi` item whose quotes all sit within MULTI_MIN_GAP characters of
each other in one file (probably one passage, not two), and a quote that sits on a line that looks like
a bare question heading rather than answer text.

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

KINDS = ("paraphrase", "english", "mixed", "multi", "keyword", "unanswerable")
REQUIRED = {"id": str, "question": str, "kind": str, "evidence": list, "reference_answer": str}
OPTIONAL = ("key_points",)  # checked by check_key_points.py
MIN_QUOTE, MAX_QUOTE = 8, 80
MIN_TOTAL = 100
MIN_UNANSWERABLE = 10
MIN_PER_SOURCE = 6
MULTI_MIN_GAP = 300
ID_RE = re.compile(r"^d(\d{3,})$")
HEADING_RE = re.compile(r"^\s*(#{1,6}\s|-\s*\d+\.\s|\d+\.\s.*[?？]\s*$|\*\*\d+、)")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def default_corpus() -> Path:
    repo_corpus = REPO / "corpus"
    return repo_corpus if repo_corpus.is_dir() else Path("/work/shared/notes")


def load_corpus(corpus: Path) -> dict[str, str]:
    texts = {}
    for p in sorted(corpus.rglob("*")):
        if p.is_file() and p.suffix.lower() in (".txt", ".md") and not p.name.startswith("."):
            texts[p.relative_to(corpus).as_posix()] = p.read_bytes().decode("utf-8-sig")
    return texts


def line_of(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start : end if end != -1 else len(text)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("corpus_dir", nargs="?", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=HERE / "dev.jsonl")
    args = ap.parse_args(argv)
    corpus = args.corpus_dir or default_corpus()

    errors: list[str] = []
    warnings: list[str] = []

    def err(lineno: int | None, msg: str) -> None:
        errors.append(f"line {lineno}: {msg}" if lineno else msg)

    if not corpus.is_dir():
        print(f"ERROR: corpus folder not found: {corpus}", file=sys.stderr)
        return 2
    texts = load_corpus(corpus)
    if not texts:
        print(f"ERROR: no .txt/.md notes in {corpus}", file=sys.stderr)
        return 2
    if not args.data.is_file():
        print(f"ERROR: data file not found: {args.data}", file=sys.stderr)
        return 2

    kind_counts: Counter[str] = Counter()
    source_items: Counter[str] = Counter()  # items citing the source at least once
    source_quotes: Counter[str] = Counter()
    kind_source: dict[str, Counter[str]] = defaultdict(Counter)
    seen_ids: dict[str, int] = {}
    last_num = 0
    n_items = 0

    with args.data.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                err(lineno, f"invalid JSON: {e}")
                continue
            if not isinstance(item, dict):
                err(lineno, "not a JSON object")
                continue
            n_items += 1
            bad = False
            for field, typ in REQUIRED.items():
                if field not in item:
                    err(lineno, f"missing field {field!r}")
                    bad = True
                elif not isinstance(item[field], typ):
                    err(lineno, f"field {field!r} should be {typ.__name__}")
                    bad = True
                elif typ is str and not item[field].strip():
                    err(lineno, f"field {field!r} is empty")
            extra = set(item) - set(REQUIRED) - set(OPTIONAL)
            if extra:
                warnings.append(f"line {lineno}: extra fields {sorted(extra)}")
            if bad:
                continue

            iid = item["id"]
            m = ID_RE.match(iid)
            if not m:
                err(lineno, f"id {iid!r} is not of the form d001")
            else:
                num = int(m.group(1))
                if num <= last_num:
                    err(lineno, f"id {iid!r} is not in increasing order")
                last_num = max(last_num, num)
            if iid in seen_ids:
                err(lineno, f"duplicate id {iid!r} (first on line {seen_ids[iid]})")
            else:
                seen_ids[iid] = lineno

            kind = item["kind"]
            if kind not in KINDS:
                err(lineno, f"unknown kind {kind!r} (allowed: {', '.join(KINDS)})")
            kind_counts[kind] += 1

            ev = item["evidence"]
            if kind == "unanswerable" and ev:
                err(lineno, "unanswerable item must have evidence: []")
            if kind != "unanswerable" and not ev:
                err(lineno, f"{kind} item has no evidence (use kind 'unanswerable' for that)")
            if kind == "multi" and len(ev) < 2:
                err(lineno, "multi item needs at least two evidence quotes")

            spans: list[tuple[str, int, int]] = []
            item_sources = set()
            for j, q in enumerate(ev):
                where = f"evidence[{j}]"
                if (
                    not isinstance(q, dict)
                    or not isinstance(q.get("source"), str)
                    or not isinstance(q.get("quote"), str)
                ):
                    err(lineno, f"{where} must be an object with string 'source' and 'quote'")
                    continue
                src, quote = q["source"], q["quote"]
                if src not in texts:
                    err(lineno, f"{where} source {src!r} is not a file in {corpus}")
                    continue
                if not (MIN_QUOTE <= len(quote) <= MAX_QUOTE):
                    err(
                        lineno,
                        f"{where} quote is {len(quote)} chars (allowed {MIN_QUOTE}-{MAX_QUOTE}): {quote!r}",
                    )
                text = texts[src]
                count = text.count(quote)
                if count == 0:
                    err(lineno, f"{where} quote not found in {src}: {quote!r}")
                    continue
                if count > 1:
                    err(
                        lineno,
                        f"{where} quote occurs {count} times in {src} (must be exactly once): {quote!r}",
                    )
                    continue
                start = text.find(quote)
                spans.append((src, start, start + len(quote)))
                item_sources.add(src)
                source_quotes[src] += 1
                if HEADING_RE.match(line_of(text, start)):
                    warnings.append(
                        f"line {lineno}: {where} quote sits on a heading/question-looking line: "
                        f"{line_of(text, start)[:70]!r}"
                    )
            for s in item_sources:
                source_items[s] += 1
                kind_source[kind][s] += 1
            if kind == "multi" and len(spans) >= 2:
                same_file = len({s for s, _, _ in spans}) == 1
                if same_file:
                    lo = min(a for _, a, _ in spans)
                    hi = max(b for _, _, b in spans)
                    if hi - lo < MULTI_MIN_GAP:
                        warnings.append(
                            f"line {lineno}: multi quotes lie within {hi - lo} chars of each other"
                        )

    # overall minimums
    if n_items < MIN_TOTAL:
        err(None, f"only {n_items} items (need >= {MIN_TOTAL})")
    if kind_counts["unanswerable"] < MIN_UNANSWERABLE:
        err(None, f"only {kind_counts['unanswerable']} unanswerable items (need >= {MIN_UNANSWERABLE})")
    for src in texts:
        if source_items[src] < MIN_PER_SOURCE:
            err(
                None,
                f"source {src} is evidence for only {source_items[src]} items (need >= {MIN_PER_SOURCE})",
            )

    # summary
    print(f"data:   {args.data}")
    print(f"corpus: {corpus} ({len(texts)} files)")
    print(f"items:  {n_items}\n")
    print(f"{'kind':<14}{'items':>6}")
    for k in KINDS:
        print(f"{k:<14}{kind_counts[k]:>6}")
    for k in sorted(set(kind_counts) - set(KINDS)):
        print(f"{k:<14}{kind_counts[k]:>6}  (unknown kind)")
    print()
    header = f"{'source':<28}{'items':>6}{'quotes':>7}  " + "".join(f"{k[:6]:>7}" for k in KINDS[:-1])
    print(header)
    for s in texts:
        row = f"{s:<28}{source_items[s]:>6}{source_quotes[s]:>7}  "
        row += "".join(f"{kind_source[k][s]:>7}" for k in KINDS[:-1])
        print(row)
    print()
    for w in warnings:
        print(f"WARNING {w}")
    if errors:
        for error in errors:
            print(f"ERROR {error}", file=sys.stderr)
        print(f"\n{len(errors)} error(s)", file=sys.stderr)
        return 1
    print("OK: no errors" + (f" ({len(warnings)} warning(s))" if warnings else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
