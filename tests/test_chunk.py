from __future__ import annotations

import hashlib
from pathlib import Path

from ingest.chunk import chunk_note
from ingest.load import Note, load_notes

FIXTURES = Path(__file__).parent / "fixtures" / "notes"


def note(name: str) -> Note:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return Note(name, text, hashlib.sha256(text.encode()).hexdigest())


def test_spans_index_the_file_text_exactly() -> None:
    for n in load_notes(FIXTURES, warn=lambda _: None):
        for c in chunk_note(n):
            assert n.text[c.start : c.end] == c.text
            assert c.id.startswith(n.source + "#")


def test_markdown_headings_give_one_chunk_per_question_with_heading_path() -> None:
    chunks = chunk_note(note("heading.md"))
    headings = [c.heading for c in chunks]
    assert ("heading.md", "注意力机制", "1. 什么是 Self-Attention？") in headings
    kv = next(c for c in chunks if "KV Cache" in c.heading[-1])
    assert kv.text.startswith("## 4. KV Cache 是什么？") and "用显存换时间" in kv.text
    assert kv.id == "heading.md#注意力机制/4"
    assert "heading.md > 注意力机制 > 4. KV Cache 是什么？\n" in kv.indexed


def test_question_without_answer_is_marked() -> None:
    chunks = chunk_note(note("heading.md"))
    flash = [c for c in chunks if "Flash" in c.text]
    assert len(flash) == 1 and not flash[0].has_answer
    assert "KV Cache" not in flash[0].text  # a bare question does not swallow the next one
    assert all(c.has_answer for c in chunks if c not in flash)


def test_bold_question_lines_open_units_and_a_lone_question_mark_is_no_answer() -> None:
    chunks = chunk_note(note("bold.txt"))
    titles = [c.heading[-1] for c in chunks]
    assert titles == ["1、如何让llm具备工具调用能力", "2、什么是LLM的涌现", "3、ZeRO-3 和 ZeRO-2 的区别"]
    assert [c.has_answer for c in chunks] == [True, False, True]


def test_numbered_questions_split_but_numbered_answer_lists_do_not() -> None:
    chunks = chunk_note(note("sub/numbered.md"))
    assert [c.heading[-1] for c in chunks] == ["1. RAG切分方法", "2. RAG有什么缺点？"]
    assert "4. 再选 batch size" in chunks[-1].text


def test_long_unit_splits_at_sentences_with_overlap_and_never_inside_table_or_formula() -> None:
    n = note("table_formula.md")
    chunks = chunk_note(n, max_chars=200, overlap=40, min_chars=20)
    assert len(chunks) >= 2
    table = n.text[n.text.index("| 方法") : n.text.index("| RMSNorm | 只除均方根 | 更快 |") + 20]
    formula = n.text[n.text.index("$$") : n.text.rindex("$$") + 2]
    for block in (table.strip(), formula):
        assert any(block in c.text for c in chunks), "block cut in the middle"
        for c in chunks:
            inside = c.start < n.text.index(block) + len(block) and n.text.index(block) < c.end
            assert not inside or block in c.text
    assert all(c.text[-1] in "。|$？\n" or c.end == len(n.text.rstrip()) for c in chunks)
    assert any(a.end > b.start for a, b in zip(chunks, chunks[1:], strict=False)), "no overlap"
    assert len({c.id for c in chunks}) == len(chunks)


def test_tiny_fragment_joins_its_neighbour() -> None:
    text = "## 问题一？\n\n答案写在这里，足够长的一段解释，说明了原因和做法，并且给出例子和结论。\n\n补充。\n"
    chunks = chunk_note(Note("t.md", text, ""), min_chars=20)
    assert len(chunks) == 1 and chunks[0].text.endswith("补充。")


def test_empty_note_gives_no_chunks() -> None:
    assert chunk_note(Note("e.md", "", "")) == []
    assert chunk_note(Note("e.md", "\n\n  \n", "")) == []


def test_unclosed_code_fence_is_not_split_inside() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(60))
    text = "## 代码题？\n\n实现如下。\n\n" + code
    chunks = chunk_note(Note("c.md", text, ""), max_chars=120, overlap=0)
    assert any(code in c.text for c in chunks)


def test_an_unclosed_fence_or_formula_swallows_nothing() -> None:
    sections = "".join(f"## 问题 {i}\n答案 {i}，写得足够长以成为一个独立的段落内容。\n\n" for i in range(30))
    for opener in ("```python\nx = 1\n", "$$\nE = mc^2\n"):
        chunks = chunk_note(Note("open.md", f"# 笔记\n\n{opener}\n{sections}", ""))
        assert len(chunks) >= 30 and max(len(c.text) for c in chunks) < 200, opener


def test_text_without_sentence_ends_is_cut_into_bounded_chunks() -> None:
    text = "# 长笔记\n\n" + " ".join(f"word{i}" for i in range(60_000))  # one 400 kB line
    chunks = chunk_note(Note("long.md", text, ""), max_chars=800, overlap=100, min_chars=60)
    assert max(len(c.text) for c in chunks) <= 1600 and len(chunks) > 300
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "").count("word59999") == 1
