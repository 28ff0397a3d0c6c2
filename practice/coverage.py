"""Coverage of the question pool: which cards the notes answer, and a study plan for the gaps.

`rows` gives one JSON object per card (bank questions first): `{"card", "question", "source", "answered",
"passage", "confidence"}`. `report` is markdown that reads as a study plan: "N of M bank questions have no
answer in your notes", then the gaps by topic, each with its closest passage.

Does not: search (callers pass `Answerability` results), or draw charts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from practice.answerable import Answerability
from practice.schedule import topic


def ordered(found: Sequence[Answerability]) -> list[Answerability]:
    """Bank questions first, each group in notes order."""
    return sorted(found, key=lambda a: not a.card.bank)


def row(a: Answerability) -> dict:
    return {
        "card": a.card.id,
        "question": a.card.question,
        "source": a.card.source,
        "answered": a.answered,
        "passage": a.passages[0].id if a.answered else None,
        "confidence": round(a.confidence, 4),
    }


def report(found: Sequence[Answerability]) -> str:
    bank = [a for a in found if a.card.bank]
    gaps = [a for a in bank if not a.answered]
    others = [a for a in found if not a.card.bank]
    lines = [
        "# Study plan",
        "",
        f"**{len(gaps)} of {len(bank)} bank questions have no answer in your notes.**",
        f"Other questions of the notes answered: {sum(a.answered for a in others)} of {len(others)}.",
        "",
        "| topic | bank questions | answered | gaps |",
        "| --- | --- | --- | --- |",
    ]
    by_topic: dict[str, list[Answerability]] = defaultdict(list)
    for a in bank:
        by_topic[topic(a.card)].append(a)
    for name, items in sorted(by_topic.items(), key=lambda kv: -sum(not a.answered for a in kv[1])):
        answered = sum(a.answered for a in items)
        lines.append(f"| {name} | {len(items)} | {answered} | {len(items) - answered} |")
    lines += ["", "## Gaps by topic", ""]
    for name, items in sorted(by_topic.items()):
        missing = [a for a in items if not a.answered]
        if not missing:
            continue
        lines += [f"### {name} ({len(missing)})", ""]
        for a in missing:
            near = f"closest: `{a.closest.id}` ({a.confidence:.2f})" if a.closest else "no passage close"
            lines.append(f"- {a.card.question} — {near}")
        lines.append("")
    return "\n".join(lines)
