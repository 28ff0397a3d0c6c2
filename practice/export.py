"""Export practice cards: an Anki deck (`genanki`) and a markdown study sheet.

The Anki model and deck ids are fixed here, and each note's GUID is `genanki.guid_for(card id)`, so
importing a new export updates the cards already in Anki instead of adding duplicates. Fields are HTML:
every text is escaped. The back holds the notes' answer (the answering passages) and its source.

Does not: decide which cards the notes answer (callers pass `Answerability` results; gaps are left out).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import genanki

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


def anki(found: Sequence[Answerability], path: Path, *, name: str = "mianjing") -> int:
    """Write the answered cards to an .apkg file; returns how many."""
    deck = genanki.Deck(DECK_ID, name)
    for a in found:
        if not a.answered:
            continue
        answer = "\n\n".join(c.text for c in a.passages)
        source = " · ".join(
            f"{c.source} > {' > '.join(c.heading[1:])} [{c.start}:{c.end}]" for c in a.passages
        )
        fields = [_html(a.card.question), _html(answer), _html(source)]
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
            lines += [f"> {line}" if line else ">" for line in chunk.text.splitlines()]
            lines += ["", f"— {chunk.id} [{chunk.start}:{chunk.end}]", ""]
    return "\n".join(lines)
