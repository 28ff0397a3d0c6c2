#!/usr/bin/env python3
"""Check the `key_points` annotations of the dev set `eval/data/dev.jsonl`.

Every answerable item carries `key_points`: 2-4 facts a correct answer must state, each a list of
alternative strings. A key point counts as present in an answer when ANY of its alternatives occurs
in the answer as a case- and whitespace-insensitive substring (both lowercased, all whitespace
deleted, then `in`); an answer's key-point recall is the fraction of key points present.

Usage:
    python3 eval/data/check_key_points.py [--data PATH] [--offset K] [--show N]

Checks (failures are listed with the item id; exit status 1 if any):
  1. structure: every answerable item has 2-4 key points, each a non-empty list of strings that are
     non-empty after normalisation; `key_points` sits right after `reference_answer`; unanswerable
     items have no `key_points`; no alternative (normalised) is a substring of its own question
     (normalised), so echoing the question cannot satisfy a key point;
  2. self recall: the recall of each item's key points on its own `reference_answer`; the mean
     must be >= MIN_SELF_RECALL, and items below 1 are listed;
  3. mismatch recall: the recall of each item's key points on the `reference_answer` of the
     answerable item K places later (cyclically, skipping items with an identical reference
     answer); the mean must be <= MAX_MISMATCH_RECALL. The mean over all other answerable items
     (all pairs) is printed as well, for information, with the items scoring highest at offset K;
  4. per-kind means of both recalls are printed.

Warnings (printed, do not fail): an alternative that normalises to a single character, and
duplicate alternatives within one key point.

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIN_POINTS, MAX_POINTS = 2, 4
MIN_SELF_RECALL = 0.97
MAX_MISMATCH_RECALL = 0.05
DEFAULT_OFFSET = 7


def norm(text: str) -> str:
    """Lowercase and delete all whitespace."""
    return "".join(text.lower().split())


def point_present(point: list[str], answer: str) -> bool:
    a = norm(answer)
    return any(norm(alt) in a for alt in point)


def recall(points: list[list[str]], answer: str) -> float:
    if not points:
        return 0.0
    return sum(point_present(p, answer) for p in points) / len(points)


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def check_structure(items: list[dict]) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    for it in items:
        iid = it.get("id", "?")
        kps = it.get("key_points")
        if it.get("kind") == "unanswerable":
            if "key_points" in it:
                errors.append(f"{iid}: unanswerable item has key_points")
            continue
        if not isinstance(kps, list):
            errors.append(f"{iid}: missing key_points (or not a list)")
            continue
        keys = list(it)
        if "reference_answer" in keys and keys.index("key_points") != keys.index("reference_answer") + 1:
            errors.append(f"{iid}: key_points is not placed right after reference_answer")
        if not MIN_POINTS <= len(kps) <= MAX_POINTS:
            errors.append(f"{iid}: {len(kps)} key points (want {MIN_POINTS}-{MAX_POINTS})")
        q = norm(it.get("question", ""))
        for k, point in enumerate(kps, 1):
            if not isinstance(point, list) or not point:
                errors.append(f"{iid}: key point {k} is not a non-empty list")
                continue
            seen: set[str] = set()
            for alt in point:
                if not isinstance(alt, str) or not norm(alt):
                    errors.append(f"{iid}: key point {k} has an empty or non-string alternative {alt!r}")
                    continue
                n = norm(alt)
                if n in q:
                    errors.append(f"{iid}: key point {k} alternative {alt!r} occurs in the question")
                if len(n) == 1:
                    warnings.append(f"{iid}: key point {k} alternative {alt!r} is a single character")
                if n in seen:
                    warnings.append(f"{iid}: key point {k} has duplicate alternative {alt!r}")
                seen.add(n)
    return errors, warnings


def mismatch_partner(answerable: list[dict], i: int, offset: int) -> int | None:
    n = len(answerable)
    ref = answerable[i]["reference_answer"]
    for step in range(n - 1):
        j = (i + offset + step) % n
        if j != i and answerable[j]["reference_answer"] != ref:
            return j
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--data", type=Path, default=HERE / "dev.jsonl")
    ap.add_argument(
        "--offset",
        type=int,
        default=DEFAULT_OFFSET,
        help=f"mismatch partner: the answerable item this many places later (default {DEFAULT_OFFSET})",
    )
    ap.add_argument("--show", type=int, default=10, help="how many top mismatch items to list (default 10)")
    args = ap.parse_args(argv)

    items = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    errors, warnings = check_structure(items)
    answerable = [
        it for it in items if it.get("kind") != "unanswerable" and isinstance(it.get("key_points"), list)
    ]

    print(f"data:  {args.data}")
    print(f"items: {len(items)} ({len(answerable)} answerable with key_points)")
    if not answerable:
        errors.append("no answerable item has key_points")
    else:
        n_points = [len(it["key_points"]) for it in answerable]
        n_alts = [len(p) for it in answerable for p in it["key_points"]]
        print(
            f"key points per item: mean {mean(n_points):.2f}; "
            f"alternatives per key point: mean {mean(n_alts):.2f}"
        )

        self_r = {it["id"]: recall(it["key_points"], it["reference_answer"]) for it in answerable}
        mis_r: dict[str, float] = {}
        partner: dict[str, str] = {}
        for i, it in enumerate(answerable):
            j = mismatch_partner(answerable, i, args.offset)
            if j is None:
                continue
            partner[it["id"]] = answerable[j]["id"]
            mis_r[it["id"]] = recall(it["key_points"], answerable[j]["reference_answer"])
        all_pairs = []
        for i, it in enumerate(answerable):
            rs = [
                recall(it["key_points"], other["reference_answer"])
                for j, other in enumerate(answerable)
                if j != i and other["reference_answer"] != it["reference_answer"]
            ]
            all_pairs.append(mean(rs))

        m_self, m_mis, m_all = mean(list(self_r.values())), mean(list(mis_r.values())), mean(all_pairs)
        print()
        print(f"2. self recall (key points vs own reference_answer):           mean {m_self:.4f}")
        below = [(iid, r) for iid, r in self_r.items() if r < 1]
        if below:
            print("   below 1: " + ", ".join(f"{iid} ({r:.2f})" for iid, r in below))
        else:
            print("   below 1: none")
        print(
            f"3. mismatch recall (vs reference_answer {args.offset} answerable items later): mean {m_mis:.4f}"
        )
        print(f"   mismatch recall, all pairs (for information):               mean {m_all:.4f}")
        top = sorted(((r, iid) for iid, r in mis_r.items() if r > 0), reverse=True)[: args.show]
        if top:
            print("   highest: " + ", ".join(f"{iid} vs {partner[iid]} ({r:.2f})" for r, iid in top))

        print()
        print("4. per-kind means")
        by_kind: dict[str, list[str]] = defaultdict(list)
        for it in answerable:
            by_kind[it["kind"]].append(it["id"])
        print(f"   {'kind':<12}{'items':>6}{'self':>9}{'mismatch':>10}")
        for kind in sorted(by_kind):
            ids = by_kind[kind]
            print(
                f"   {kind:<12}{len(ids):>6}{mean([self_r[i] for i in ids]):>9.4f}"
                f"{mean([mis_r[i] for i in ids if i in mis_r]):>10.4f}"
            )
        print(f"   {'all':<12}{len(answerable):>6}{m_self:>9.4f}{m_mis:>10.4f}")

        if m_self < MIN_SELF_RECALL:
            errors.append(f"mean self recall {m_self:.4f} < {MIN_SELF_RECALL}")
        if m_mis > MAX_MISMATCH_RECALL:
            errors.append(f"mean mismatch recall {m_mis:.4f} > {MAX_MISMATCH_RECALL}")

    print()
    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"ERROR: {e}")
    print("OK: no errors" if not errors else f"FAILED: {len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
