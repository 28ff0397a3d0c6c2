from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.load import CorpusError, decode, load_notes
from tests.conftest import GBK_TEXT, SOURCES


def test_reads_md_and_txt_recursively_and_skips_bad_files(notes: Path) -> None:
    warnings: list[str] = []
    loaded = load_notes(notes, warn=warnings.append)
    assert [n.source for n in loaded] == SOURCES
    assert len(warnings) == 1 and "image.md" in warnings[0] and "binary" in warnings[0]


def test_gbk_is_decoded_and_text_kept_verbatim(notes: Path) -> None:
    gbk = next(n for n in load_notes(notes, warn=lambda _: None) if n.source == "gbk.md")
    assert gbk.text == GBK_TEXT


def test_utf8_bom_is_dropped_and_crlf_kept() -> None:
    assert decode("## 问题\r\n答案".encode("utf-8-sig")) == ("## 问题\r\n答案", "")


def test_undecodable_bytes_raise() -> None:
    with pytest.raises(ValueError):
        decode(b"\xff\xfe\xfd\x80\x81" * 10)


def test_missing_or_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not found"):
        load_notes(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert load_notes(tmp_path / "empty") == []


def test_huge_file_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "big.md").write_text("啊" * 1000)
    warnings: list[str] = []
    assert load_notes(tmp_path, warn=warnings.append, max_bytes=100) == []
    assert "too large" in warnings[0]


def test_a_pipe_named_like_a_note_is_skipped_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.md")
    (tmp_path / "a.md").write_text("# 注意力\n\nQKV。\n", encoding="utf-8")
    warnings: list[str] = []
    assert [n.source for n in load_notes(tmp_path, warn=warnings.append)] == ["a.md"]
    assert warnings == ["mianjing: skipped pipe.md: not a regular file"]


def test_utf16_with_a_bom_is_read(tmp_path: Path) -> None:
    (tmp_path / "u16.md").write_bytes("# 注意力\n\nQKV 的缩放因子是 √d。\n".encode("utf-16"))
    (note,) = load_notes(tmp_path, warn=lambda _: None)
    assert note.text == "# 注意力\n\nQKV 的缩放因子是 √d。\n" and not note.problem


def test_a_few_bad_bytes_are_replaced_and_said_with_their_byte_and_line(tmp_path: Path) -> None:
    good = "# 量化\n\n" + "GPTQ 逐层量化权重，用二阶信息补偿误差。\n" * 300
    data = good.encode("utf-8")
    at = data.index(b"\n", 2000) + 1
    (tmp_path / "bad.md").write_bytes(data[:at] + b"\xff\xfe\x80" + data[at:])
    warnings: list[str] = []
    (note,) = load_notes(tmp_path, warn=warnings.append)
    line = data[:at].count(b"\n") + 1
    assert note.text.count("\ufffd") == 3 and note.text.replace("\ufffd", "") == good
    said = f"3 undecodable byte(s) replaced by \ufffd, the first at byte {at} (line {line})"
    assert warnings == [f"mianjing: bad.md: {said}; the rest of the note is kept"]


@pytest.mark.parametrize(
    ("head", "tail", "encoding", "said"),
    [  # a short note with 5 bad bytes (more than 1% of it); a UTF-8 BOM counts in the offset
        ("## 坏字节？\n\n正常的话。", "后面的内容也保留。\n", "utf-8", "at byte 32 (line 3)"),
        ("\ufeff## 坏字节？\n", "后面的内容也保留。\n", "utf-8", "at byte 19 (line 2)"),
        ("## 显存？\n\nFP16 约 14 GB。", "再加 KV Cache。\n", "gbk", "at byte 26 (line 3), read as GB18030"),
    ],
)
def test_a_short_note_with_a_few_bad_bytes_keeps_the_rest(
    head: str, tail: str, encoding: str, said: str
) -> None:
    text, problem = decode(head.encode(encoding) + b"\xff\x80\xff\x80\xff" + tail.encode(encoding))
    assert text == head.lstrip("\ufeff") + "\ufffd" * 5 + tail
    assert problem == f"5 undecodable byte(s) replaced by \ufffd, the first {said}"


def test_an_indexed_note_that_gains_a_bad_byte_keeps_its_passages(tmp_path: Path) -> None:
    from assistant.settings import Settings, index_settings
    from retriever import index as index_
    from tests.conftest import HashEmbedder

    (tmp_path / "notes").mkdir()
    note = tmp_path / "notes" / "kv.md"
    note.write_text("# KV Cache\n\n## 省什么？\n\n缓存注意力的键和值，省去重复计算。\n", encoding="utf-8")
    settings = index_settings(Settings(embed_model="hash-test"))
    embedder = HashEmbedder()
    built, _ = index_.ingest(
        tmp_path / "notes", tmp_path / "ix", settings, embedder=lambda: embedder, warn=lambda _: None
    )
    size = len(note.read_bytes())
    note.write_bytes(note.read_bytes() + b"\xff")
    said: list[str] = []
    after, report = index_.ingest(
        tmp_path / "notes", tmp_path / "ix", settings, embedder=lambda: embedder, warn=said.append
    )
    assert report.changed == ["kv.md"] and [c.text + "\n\ufffd" for c in built.chunks] == [
        c.text for c in after.chunks
    ]
    place = f"the first at byte {size} (line 6)"
    assert said == [
        f"mianjing: kv.md: 1 undecodable byte(s) replaced by \ufffd, {place}; the rest of the note is kept"
    ]


def test_files_outside_the_notes_folder_are_never_read(tmp_path: Path) -> None:
    from ingest.load import inside

    (tmp_path / "secret.txt").write_text("password", encoding="utf-8")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "ok.md").write_text("# 笔记\n内容", encoding="utf-8")
    (notes / "link.md").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.md").write_text("# 外面\n内容", encoding="utf-8")
    (notes / "linked").symlink_to(tmp_path / "elsewhere")
    warnings: list[str] = []
    assert [n.source for n in load_notes(notes, warn=warnings.append)] == ["ok.md"]
    assert warnings == [
        "mianjing: skipped link.md: link.md is outside the notes folder",
        "mianjing: skipped linked/: a linked folder is not followed (copy its notes in instead)",
    ]
    for source in ("../secret.txt", str(tmp_path / "secret.txt"), "link.md"):
        with pytest.raises(ValueError, match="outside the notes folder"):
            inside(notes, source)
    assert inside(notes, "ok.md") == (notes / "ok.md").resolve()


def test_the_app_reads_notes_only_inside_the_folder(notes: Path, tmp_path: Path) -> None:
    from ui.resources import read_note

    (tmp_path / "secret.txt").write_text("password", encoding="utf-8")
    assert read_note(notes, "../secret.txt") is None
    assert read_note(notes, str(tmp_path / "secret.txt")) is None
    assert read_note(notes, "heading.md")
