"""Anki export read back with zipfile + sqlite3 (escaped fields, GUIDs from card ids, gaps left out) and
the markdown study sheet; the coverage rows and report."""

from __future__ import annotations

import re
import sqlite3
import zipfile
from pathlib import Path

import genanki

from ingest.chunk import Chunk
from practice import coverage, export
from practice.answerable import Answerability
from practice.pool import Card

TEXT = "**1、<KV> & Cache 是什么？**\n\n缓存历史 token 的 K 和 V，用显存换时间。"
CHUNK = Chunk("a.md#1", "a.md", 0, len(TEXT), ("a.md", "1、<KV> & Cache 是什么？"), TEXT, True)
ANSWERED = Card(
    "a.md#111111111111", "<KV> & Cache 是什么？", "a.md", CHUNK.heading, 0, 26, CHUNK.id, True, False
)
GAP = Card("b.md#222222222222", "什么是 MoE？", "b.md", ("b.md", "清单"), 5, 15, "b.md#清单", False, True)
FOUND = [
    Answerability(ANSWERED, True, 1.0, (CHUNK,), CHUNK),
    Answerability(GAP, False, 0.81, (), CHUNK),
]


def notes_in(apkg: Path, tmp_path: Path) -> list[tuple[str, str]]:
    with zipfile.ZipFile(apkg) as z:
        z.extract("collection.anki2", tmp_path / "unzipped")
    db = sqlite3.connect(tmp_path / "unzipped" / "collection.anki2")
    try:
        return db.execute("select guid, flds from notes").fetchall()
    finally:
        db.close()


def test_anki_deck_reads_back_with_escaped_fields_and_stable_guids(tmp_path: Path) -> None:
    apkg = tmp_path / "deck.apkg"
    assert export.anki(FOUND, apkg) == 1  # the gap is not a card
    [(guid, fields)] = notes_in(apkg, tmp_path)
    question, answer, source = fields.split("\x1f")
    assert guid == genanki.guid_for(ANSWERED.id)
    assert question == "&lt;KV&gt; &amp; Cache 是什么？"
    assert "缓存历史 token 的 K 和 V，用显存换时间。" in answer and "<br>" in answer and "<KV>" not in answer
    assert source.startswith("a.md &gt; 1、&lt;KV&gt;") and "[0:" in source
    assert (
        answer.startswith("<b>1、&lt;KV&gt; &amp; Cache 是什么？</b>") and "**" not in answer
    )  # bold, not markdown
    assert export._answer_html("## 标题\n\n正文 <u>重点</u>") == "<b>标题</b><br><br>正文 重点"
    again = tmp_path / "again.apkg"
    export.anki(FOUND, again)
    assert notes_in(again, tmp_path / "2")[0][0] == guid  # a re-export updates the same Anki note


def test_markdown_sheet_lists_answered_cards_with_their_passages() -> None:
    text = export.markdown(FOUND)
    assert "## <KV> & Cache 是什么？" in text and "`a.md#111111111111`" in text
    assert "> 缓存历史 token 的 K 和 V，用显存换时间。" in text and "— a.md#1 [0:" in text
    assert "MoE" not in text


def test_coverage_rows_put_the_bank_first_and_the_report_lists_gaps() -> None:
    rows = [coverage.row(a) for a in coverage.ordered(FOUND)]
    assert rows == [
        {
            "card": GAP.id,
            "question": "什么是 MoE？",
            "source": "b.md",
            "answered": False,
            "passage": None,
            "confidence": 0.81,
        },
        {
            "card": ANSWERED.id,
            "question": ANSWERED.question,
            "source": "a.md",
            "answered": True,
            "passage": "a.md#1",
            "confidence": 1.0,
        },
    ]
    report = coverage.report(FOUND)
    assert "**1 of 1 bank questions have no answer in your notes.**" in report
    assert "### b.md > 清单 (1)" in report and "- 什么是 MoE？ — closest: `a.md#1` (0.81)" in report


def test_coverage_html_is_one_escaped_page_with_a_bar_per_topic() -> None:
    listed = Card(
        "c.md#333333333333",
        "<script>alert(1)</script> 是什么？",
        "c.md",
        ("c.md", "清单"),
        0,
        9,
        "c.md#清单",
        False,
        True,
        topic="Attention 面试问题清单",
    )
    found = [*FOUND, Answerability(listed, False, 0.9, (), CHUNK)]
    page = coverage.html(found, title="Study plan — <notes>")
    assert page.startswith("<!doctype html>") and "<title>Study plan — &lt;notes&gt;</title>" in page
    assert "2 of 2 bank questions have no answer in your notes." in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; 是什么？" in page
    assert "&lt;KV&gt; &amp; Cache" in page  # the closest passage's text, escaped
    # one bar row per topic (the list title, else file > heading), each linking to its section
    assert page.count('<a href="#topic-') == 2 and 'id="topic-1"' in page
    assert ">Attention 面试问题清单<title>" in page and ">b.md &gt; 清单<title>" in page
    assert not re.search(r"(src|href)=\"(https?:|//)", page)  # nothing fetched: the page stands alone
