from __future__ import annotations

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
    assert decode("## 问题\r\n答案".encode("utf-8-sig")) == "## 问题\r\n答案"


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
