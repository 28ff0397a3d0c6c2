"""Export practice cards: an Anki deck (`genanki`) and a markdown study sheet.

The Anki model and deck ids are fixed here, and each note's GUID is `genanki.guid_for(card id)`, so
importing a new export updates the cards already in Anki instead of adding duplicates. Fields are HTML:
every text is escaped. The back holds the notes' answer (the answering passages, as an answer quotes them:
headings and bold shown as bold, not as raw markdown) and its source.

Does not: decide which cards the notes answer (callers pass `Answerability` results; gaps are left out).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

import genanki

from assistant import prompt
from practice.answerable import Answerability

MODEL_ID = 1_607_392_319  # fixed forever: Anki matches notes to this model by id
DECK_ID = 2_059_400_110
MODEL = genanki.Model(
    MODEL_ID,
    "mianjing practice",
    fields=[{"name": "Question"}, {"name": "Answer"}, {"name": "Source"}],
    templates=[
        {
            "name": "Card 1",
            "qfmt": "{{Question}}",
            "afmt": '{{FrontSide}}<hr id="answer">{{Answer}}<br><small>{{Source}}</small>',
        }
    ],
)


def _html(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _answer_html(text: str) -> str:
    """A passage as the back of a card: as an answer shows it (`prompt.readable`: the note's `<u>` tags
    dropped, its `#` heading lines bold), escaped, with its **bold** as bold: Anki shows the raw markdown
    otherwise."""
    escaped = _html(prompt.readable(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)


def anki(found: Sequence[Answerability], path: Path, *, name: str = "mianjing") -> int:
    """Write the answered cards to an .apkg file; returns how many."""
    deck = genanki.Deck(DECK_ID, name)
    for a in found:
        if not a.answered:
            continue
        answer = "<br><br>".join(_answer_html(c.text) for c in a.passages)
        source = " · ".join(
            f"{c.source} > {' > '.join(c.heading[1:])} [{c.start}:{c.end}]" for c in a.passages
        )
        fields = [_html(a.card.question), answer, _html(source)]
        deck.add_note(genanki.Note(model=MODEL, fields=fields, guid=genanki.guid_for(a.card.id)))
    path.parent.mkdir(parents=True, exist_ok=True)
    genanki.Package(deck).write_to_file(str(path))
    return len(deck.notes)


def markdown(found: Sequence[Answerability]) -> str:
    """A study sheet: each answered card, its answer from the notes and where it is."""
    lines = ["# Practice cards", ""]
    for a in found:
        if not a.answered:
            continue
        lines += [f"## {a.card.question}", "", f"`{a.card.id}` · {a.card.where}", ""]
        for chunk in a.passages:
            lines += [f"> {line}" if line else ">" for line in prompt.readable(chunk.text).splitlines()]
            lines += ["", f"— {chunk.id} [{chunk.start}:{chunk.end}]", ""]
    return "\n".join(lines)
