"""Coverage of the question pool: which cards the notes answer, and a study plan for the gaps.

`rows` gives one JSON object per card (bank questions first): `{"card", "question", "source", "answered",
"passage", "confidence"}`. `report` (markdown) and `html` (one self-contained page: inline CSS and SVG, no
script, nothing fetched) read as a study plan: "N of M bank questions have no answer in your notes", a
chart of answered and unanswered bank questions per topic (`schedule.topic`: the question list), then the
gaps by topic, each with its closest passage.

Does not: search (callers pass `Answerability` results).
"""

from __future__ import annotations

import html as html_
import re
from collections import defaultdict
from collections.abc import Sequence

from practice.answerable import Answerability
from practice.schedule import topic

Topics = list[tuple[str, list[Answerability]]]


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


def topics(found: Sequence[Answerability]) -> Topics:
    """The bank questions by topic, the topics with the most gaps first."""
    by_topic: dict[str, list[Answerability]] = defaultdict(list)
    for a in found:
        if a.card.bank:
            by_topic[topic(a.card)].append(a)
    return sorted(by_topic.items(), key=lambda kv: (-_gaps(kv[1]), kv[0]))


def headline(found: Sequence[Answerability]) -> tuple[str, str]:
    bank = [a for a in found if a.card.bank]
    others = [a for a in found if not a.card.bank]
    return (
        f"{_gaps(bank)} of {len(bank)} bank questions have no answer in your notes.",
        f"Other questions of the notes answered: {sum(a.answered for a in others)} of {len(others)}.",
    )


def report(found: Sequence[Answerability]) -> str:
    """The study plan in markdown."""
    gaps_line, others_line = headline(found)
    lines = [
        "# Study plan",
        "",
        f"**{gaps_line}**",
        others_line,
        "",
        "| topic | bank questions | answered | gaps |",
        "| --- | --- | --- | --- |",
    ]
    grouped = topics(found)
    for name, items in grouped:
        lines.append(f"| {name} | {len(items)} | {len(items) - _gaps(items)} | {_gaps(items)} |")
    lines += ["", "## Gaps by topic", ""]
    for name, items in grouped:
        missing = [a for a in items if not a.answered]
        if missing:
            lines += [f"### {name} ({len(missing)})", ""]
            lines += [f"- {a.card.question} — {_closest(a)}" for a in missing]
            lines.append("")
    return "\n".join(lines)


def html(found: Sequence[Answerability], *, title: str = "Study plan") -> str:
    """The study plan as one self-contained HTML page (every note text escaped)."""
    gaps_line, others_line = headline(found)
    grouped = topics(found)
    body = [
        f"<h1>{_esc(title)}</h1>",
        f'<p class="lead"><strong>{_esc(gaps_line)}</strong><br>{_esc(others_line)}</p>',
        "<h2>Bank questions per topic</h2>",
        _chart(grouped),
        "<h2>Gaps by topic</h2>",
    ]
    body += [_section(n, name, items) for n, (name, items) in enumerate(grouped)]
    return PAGE.format(title=_esc(title), body="\n".join(body))


def _gaps(items: Sequence[Answerability]) -> int:
    return sum(not a.answered for a in items)


def _closest(a: Answerability) -> str:
    return f"closest: `{a.closest.id}` ({a.confidence:.2f})" if a.closest else "no passage close"


def _esc(text: str) -> str:
    return html_.escape(text, quote=True)


def _chart(grouped: Topics, *, label: int = 260, bar: int = 420, row: int = 22) -> str:
    """Horizontal bars, one per topic: answered (green) then gaps (red), to scale; each links to its
    section."""
    most = max((len(items) for _, items in grouped), default=1)
    height = row * len(grouped) + 24
    parts = [
        f'<svg class="chart" width="{label + bar + 90}" height="{height}" role="img" '
        'aria-label="answered and unanswered bank questions per topic">'
    ]
    for n, (name, items) in enumerate(grouped):
        y, answered, gaps = 20 + n * row, len(items) - _gaps(items), _gaps(items)
        w_answered, w_gaps = bar * answered / most, bar * gaps / most
        parts += [
            f'<a href="#topic-{n}"><text x="{label - 8}" y="{y + 13}" text-anchor="end">{_esc(_short(name))}'
            f"<title>{_esc(name)}</title></text></a>",
            f'<rect x="{label}" y="{y}" width="{w_answered:.1f}" height="16" class="answered"/>',
            f'<rect x="{label + w_answered:.1f}" y="{y}" width="{w_gaps:.1f}" height="16" class="gap"/>',
            f'<text x="{label + w_answered + w_gaps + 6:.1f}" y="{y + 13}">{answered} / {len(items)}</text>',
        ]
    parts.append(
        f'<text x="{label}" y="12" class="legend">■ answered</text>'
        f'<text x="{label + 90}" y="12" class="legend gaptext">■ no answer in the notes</text></svg>'
    )
    return "\n".join(parts)


def _short(name: str, most: int = 30) -> str:
    return name if len(name) <= most else name[: most - 1] + "…"


def _section(n: int, name: str, items: list[Answerability]) -> str:
    """One topic: its share answered as a bar, the gaps with their closest passages, the answered ones."""
    gaps, answered = [a for a in items if not a.answered], [a for a in items if a.answered]
    share = len(answered) / len(items)
    out = [
        f'<section id="topic-{n}"><h3>{_esc(name)} <small>{len(gaps)} of {len(items)} without an answer'
        "</small></h3>",
        f'<svg width="300" height="12" role="img" aria-label="{share:.0%} answered">'
        f'<rect width="300" height="12" class="gap"/>'
        f'<rect width="{300 * share:.1f}" height="12" class="answered"/>'
        "</svg>",
    ]
    if gaps:
        out.append("<table><tr><th>question</th><th>closest passage in your notes</th><th>cosine</th></tr>")
        out += [_gap_row(a) for a in gaps]
        out.append("</table>")
    if answered:
        listed = "".join(
            f"<li>{_esc(a.card.question)} — <code>{_esc(a.passages[0].id)}</code></li>" for a in answered
        )
        out.append(f"<details><summary>{len(answered)} answered</summary><ul>{listed}</ul></details>")
    out.append("</section>")
    return "\n".join(out)


def _gap_row(a: Answerability) -> str:
    where = f'<div class="where">{_esc(a.card.where)}</div>'
    if a.closest is None:
        return f"<tr><td>{_esc(a.card.question)}{where}</td><td>no passage close</td><td></td></tr>"
    snippet = re.sub(r"\s+", " ", a.closest.text).strip()
    snippet = snippet if len(snippet) <= 160 else snippet[:159] + "…"
    heading = " › ".join(a.closest.heading)
    return (
        f"<tr><td>{_esc(a.card.question)}{where}</td>"
        f'<td><code>{_esc(a.closest.id)}</code><div class="where">{_esc(heading)}</div>{_esc(snippet)}</td>'
        f"<td>{a.confidence:.2f}</td></tr>"
    )


PAGE = """<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 15px/1.5 system-ui, "Noto Sans CJK SC", sans-serif; max-width: 980px; margin: 2em auto;
       padding: 0 1em; color: #222; }}
.lead {{ font-size: 1.15em; }}
svg text {{ font-size: 12px; fill: #333; }}
svg a text {{ fill: #1a5fb4; }}
.answered {{ fill: #4c9a52; }} .gap {{ fill: #d9534f; }}
.legend {{ fill: #4c9a52; }} .gaptext {{ fill: #d9534f; }}
table {{ border-collapse: collapse; width: 100%; margin: .5em 0 1em; }}
th, td {{ border-top: 1px solid #ddd; padding: .35em .5em; text-align: left; vertical-align: top; }}
th {{ font-weight: 600; background: #f6f6f6; }}
td:last-child {{ white-space: nowrap; }}
.where {{ color: #777; font-size: .85em; }}
code {{ font-size: .85em; }}
section {{ margin-top: 1.5em; }}
h3 small {{ font-weight: normal; color: #777; }}
</style></head>
<body>
{body}
</body></html>
"""
