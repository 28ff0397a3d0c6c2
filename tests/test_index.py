"""Ingest: incremental updates, deletions, interruption, changed settings, broken index files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.settings import Settings, index_settings
from ingest.chunk import windows
from retriever import index as index_
from tests.conftest import SOURCES, HashEmbedder

SETTINGS = index_settings(Settings(embed_model="hash-test"))


def ingest(notes: Path, where: Path, embedder: HashEmbedder, settings: index_.IndexSettings = SETTINGS):
    return index_.ingest(notes, where, settings, embedder=lambda: embedder, warn=lambda _: None)


def test_build_then_load_round_trip(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> None:
    built, report = ingest(notes, tmp_path / "ix", embedder)
    assert report.rebuilt == "new index" and report.files == 6 and report.chunks == len(built.chunks)
    loaded = index_.load(tmp_path / "ix")
    assert loaded.chunks == built.chunks and loaded.tokens == built.tokens
    assert (loaded.vectors == built.vectors).all()
    assert set(loaded.manifest["files"]) == set(SOURCES)
    assert (tmp_path / "ix" / "manifest.json").is_file()


def test_unchanged_corpus_embeds_nothing(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> None:
    ingest(notes, tmp_path / "ix", embedder)
    before = embedder.calls
    _, report = ingest(notes, tmp_path / "ix", embedder)
    assert embedder.calls == before and report.unchanged == 6 and not report.added + report.changed


def test_changed_file_is_the_only_one_reembedded(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> None:
    first, _ = ingest(notes, tmp_path / "ix", embedder)
    (notes / "bold.txt").write_text(
        "**1、新问题：什么是 DPO？**\n\nDPO 直接用偏好数据优化策略，不需要奖励模型。\n", encoding="utf-8"
    )
    before = embedder.calls
    index, report = ingest(notes, tmp_path / "ix", embedder)
    assert report.changed == ["bold.txt"] and embedder.calls - before == 1  # its one window is the passage
    assert [c.heading[-1] for c in index.chunks if c.source == "bold.txt"] == ["1、新问题：什么是 DPO？"]
    others = [c for c in first.chunks if c.source != "bold.txt"]
    assert [c for c in index.chunks if c.source != "bold.txt"] == others


def test_deleted_and_added_files(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> None:
    ingest(notes, tmp_path / "ix", embedder)
    (notes / "heading.md").unlink()
    (notes / "new.md").write_text(
        "## LoRA 是什么？\n\n低秩分解的增量矩阵，只训练 A、B 两个小矩阵。\n", encoding="utf-8"
    )
    index, report = ingest(notes, tmp_path / "ix", embedder)
    assert report.deleted == ["heading.md"] and report.added == ["new.md"]
    assert {c.source for c in index.chunks} == {
        "bold.txt",
        "gbk.md",
        "new.md",
        "sub/numbered.md",
        "table_formula.md",
    }
    assert len(index.vectors) == len(index.chunks)


def test_interrupted_ingest_leaves_the_old_index_whole(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    first, _ = ingest(notes, tmp_path / "ix", embedder)
    (notes / "heading.md").write_text("## 改过的问题？\n\n改过的答案，内容更新了。\n", encoding="utf-8")

    class Crash(HashEmbedder):
        def passages(self, texts, *, progress=False):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt  # the user pressed Ctrl-C while embedding

    with pytest.raises(KeyboardInterrupt):
        ingest(notes, tmp_path / "ix", Crash())
    assert index_.load(tmp_path / "ix").chunks == first.chunks
    assert not [p for p in (tmp_path / "ix").iterdir() if p.name.endswith(".tmp")]


def test_interrupted_write_leaves_no_half_file(
    notes: Path, tmp_path: Path, embedder: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = ingest(notes, tmp_path / "ix", embedder)
    (notes / "extra.md").write_text("## 新增？\n\n新增的答案内容在这里。\n", encoding="utf-8")

    def die(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(index_.os, "replace", die)
    with pytest.raises(OSError):
        ingest(notes, tmp_path / "ix", embedder)
    monkeypatch.undo()
    assert index_.load(tmp_path / "ix").chunks == first.chunks
    assert sorted(p.name for p in (tmp_path / "ix").iterdir()) == ["index.npz", "manifest.json"]


def test_changed_settings_rebuild_everything(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> None:
    ingest(notes, tmp_path / "ix", embedder)
    before = embedder.calls
    other = index_settings(Settings(embed_model="hash-test", max_chars=300))
    index, report = ingest(notes, tmp_path / "ix", embedder, other)
    assert index.windows is not None and report.rebuilt == "settings changed"
    pieces = [c.indexed_part(*s) for i, c in enumerate(index.chunks) for s in index.windows.of_chunk(i)[0]]
    own = sum(text in {c.indexed for c in index.chunks} for text in pieces)  # a one-window chunk's is its own
    assert 0 < own < len(pieces) and embedder.calls - before == len(index.chunks) + len(pieces) - own
    assert index_.load(tmp_path / "ix").manifest["settings"]["max_chars"] == 300


def test_corrupted_index_is_reported_then_rebuilt(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    ingest(notes, tmp_path / "ix", embedder)
    path = tmp_path / "ix" / "index.npz"
    path.write_bytes(path.read_bytes()[:500])  # half-written by something else
    with pytest.raises(index_.IndexUnusable, match="unreadable"):
        index_.load(tmp_path / "ix")
    warnings: list[str] = []
    index, report = index_.ingest(
        notes, tmp_path / "ix", SETTINGS, embedder=lambda: embedder, warn=warnings.append
    )
    assert report.rebuilt == "unreadable index" and index.chunks
    assert any("unreadable" in w and "rebuilding" in w for w in warnings)


def test_empty_corpus_is_an_error(tmp_path: Path, embedder: HashEmbedder) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(index_.CorpusError, match="no readable"):
        ingest(tmp_path / "empty", tmp_path / "ix", embedder)
    assert not (tmp_path / "ix").exists()  # the folder it made for nothing is gone
    (tmp_path / "kept").mkdir()  # a folder the user made stays
    with pytest.raises(index_.CorpusError, match="no readable"):
        ingest(tmp_path / "empty", tmp_path / "kept", embedder)
    assert (tmp_path / "kept").is_dir()


def test_every_setting_variable_is_read() -> None:
    from assistant.settings import ENV, from_env

    values = {
        "MIANJING_LLM": "/x/m.gguf",
        "MIANJING_LLM_THREADS": "1",
        "MIANJING_N_CTX": "2048",
        "MIANJING_K": "3",
        "MIANJING_LLM_BASE_URL": "http://127.0.0.1:1/v1",
        "MIANJING_CORPUS": "/notes",
    }
    s = from_env(values, k=5)
    assert (s.llm, s.llm_threads, s.n_ctx, s.k, s.llm_base_url) == (
        "/x/m.gguf",
        1,
        2048,
        5,
        "http://127.0.0.1:1/v1",
    )
    assert str(s.corpus) == "/notes" and set(values) <= set(ENV)


def test_embedding_keeps_text_order_and_reports_progress(embedder: HashEmbedder) -> None:
    texts = [f"第{i}段：" + "显存" * (i % 7) for i in range(150)]  # lengths out of order, > one group
    seen: list[tuple[int, int]] = []
    vectors = index_.embed(embedder, texts, lambda done, total: seen.append((done, total)))
    assert (vectors == embedder.passages(texts)).all()  # each row is its own text's vector
    assert seen == [(n, 150) for n in range(16, 150, 16)] + [(150, 150)]  # a line every few seconds


def test_searcher_says_how_far_a_build_has_got(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> None:
    from assistant.retrieval import Searcher

    said: list[str] = []
    Searcher(Settings(corpus=notes, index=tmp_path / "ix"), warn=said.append, embedder=embedder)
    assert said[0].startswith("mianjing: no index") and said[-1].startswith("mianjing: embedded ")
    done, total = said[-1].split()[2].split("/")
    assert done == total != "0"


def searcher_on(notes: Path, where: Path, embedder: HashEmbedder, said: list[str], model: str = "hash-test"):  # type: ignore[no-untyped-def]  # noqa: E501
    from assistant.retrieval import Searcher

    return Searcher(
        Settings(corpus=notes, index=where, embed_model=model), warn=said.append, embedder=embedder
    )


def test_an_index_of_other_notes_is_never_served_or_overwritten(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    ingest(notes, tmp_path / "ix", embedder)
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.md").write_text("# 别的笔记\n\n完全不同的内容。\n", encoding="utf-8")
    before = (tmp_path / "ix" / "index.npz").read_bytes()
    with pytest.raises(ValueError, match="holds the index of .*notes, not of .*other"):
        searcher_on(other, tmp_path / "ix", embedder, [])
    with pytest.raises(ValueError, match="holds the index of"):
        ingest(other, tmp_path / "ix", embedder)
    assert (tmp_path / "ix" / "index.npz").read_bytes() == before


def test_an_index_of_another_embedding_model_is_rebuilt(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    ingest(notes, tmp_path / "ix", embedder)
    said: list[str] = []
    searcher = searcher_on(notes, tmp_path / "ix", embedder, said, "another-model")
    assert any("built with other settings; rebuilding it" in line for line in said)
    assert searcher.index.manifest["settings"]["embed_model"] == "another-model"


def test_another_model_behind_the_same_name_is_noticed(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"v1")
    settings = index_settings(Settings(embed_model=str(model)))
    built, _ = ingest(notes, tmp_path / "ix", embedder, settings)
    assert index_.settings_changed(built, settings) == ""
    (model / "weights.bin").write_bytes(b"v2, another size")  # the folder's model replaced
    assert index_.settings_changed(built, settings) == "embedding model changed"
    _, report = ingest(notes, tmp_path / "ix", embedder, settings)
    assert report.rebuilt == "embedding model changed"


def test_vectors_of_another_size_are_a_one_line_error(index_of_notes: index_.Index) -> None:
    from retriever.search import search

    class Smaller(HashEmbedder):
        dim = 32

    with pytest.raises(ValueError, match="64-dimensional vectors but the embedding model gives 32"):
        search(index_of_notes, "显存", mode="dense", embedder=Smaller())


@pytest.fixture
def index_of_notes(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> index_.Index:
    return ingest(notes, tmp_path / "ix", embedder)[0]


def test_a_broken_index_is_kept_aside_and_rebuilt(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    ingest(notes, tmp_path / "ix", embedder)
    (tmp_path / "ix" / "index.npz").write_bytes(b"garbage")
    said: list[str] = []
    index_.ingest(notes, tmp_path / "ix", SETTINGS, embedder=lambda: embedder, warn=said.append)
    (aside,) = (tmp_path / "ix").glob("index.npz.bad-*")
    assert aside.read_bytes() == b"garbage" and aside.name in said[-1]
    assert index_.load(tmp_path / "ix").chunks


def test_changed_notes_are_pointed_out_on_search(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> None:
    ingest(notes, tmp_path / "ix", embedder)
    said: list[str] = []
    searcher_on(notes, tmp_path / "ix", embedder, said)
    assert not said
    (notes / "new.md").write_text("# 新\n\n新的内容。\n", encoding="utf-8")
    (notes / "bold.txt").unlink()
    searcher_on(notes, tmp_path / "ix", embedder, said)
    assert said == ["mianjing: notes changed since the last ingest (1 new, 1 deleted): run `mianjing ingest`"]


def test_a_second_ingest_waits_for_the_first_and_sees_its_result(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    import threading

    from filelock import FileLock

    ingest(notes, tmp_path / "ix", embedder)
    (notes / "extra.md").write_text("## 新增？\n\n新增的答案内容在这里。\n", encoding="utf-8")
    said: list[str] = []
    holder = FileLock(tmp_path / ".ix.ingest.lock")
    holder.acquire()  # "run A" is still embedding
    done: list[object] = []
    second = threading.Thread(
        target=lambda: done.append(
            index_.ingest(notes, tmp_path / "ix", SETTINGS, embedder=lambda: embedder, warn=said.append)
        )
    )
    second.start()
    second.join(timeout=2)
    assert second.is_alive() and said == [
        f"mianjing: another ingest of {tmp_path / 'ix'} is running; waiting for it to finish"
    ]
    holder.release()
    second.join(timeout=30)
    assert done and "extra.md" in index_.load(tmp_path / "ix").manifest["files"]


def test_leftover_temporary_files_are_removed(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> None:
    ingest(notes, tmp_path / "ix", embedder)
    (tmp_path / "ix" / ".index.npz.abc123.tmp").write_bytes(b"half")
    ingest(notes, tmp_path / "ix", embedder)
    assert sorted(p.name for p in (tmp_path / "ix").iterdir()) == ["index.npz", "manifest.json"]


def test_an_index_path_that_is_a_file_fails_before_embedding(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    (tmp_path / "ix").write_text("not a folder", encoding="utf-8")
    with pytest.raises(ValueError, match="is a file"):
        ingest(notes, tmp_path / "ix", embedder)
    assert embedder.calls == 0


def test_a_touched_note_is_pointed_out_once(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> None:
    import time

    ingest(notes, tmp_path / "ix", embedder)
    time.sleep(0.05)
    (notes / "heading.md").touch()  # modified after the build, contents the same
    assert index_.stale(index_.load(tmp_path / "ix"), notes) == "1 changed"
    _, report = ingest(notes, tmp_path / "ix", embedder)
    assert report.unchanged == 6 and not report.changed
    assert index_.stale(index_.load(tmp_path / "ix"), notes) == ""


def test_windows_are_kept_with_their_chunks_through_updates(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    """Every chunk is embedded window by window too (`ingest.chunk.windows`, under its heading path); the
    windows follow their chunk when other files change, and load back as saved."""
    ingest(notes, tmp_path / "ix", embedder)
    (notes / "heading.md").unlink()  # chunks move: every later position shifts
    index, _ = ingest(notes, tmp_path / "ix", embedder)
    assert index.windows is not None and not all(c.has_answer for c in index.chunks)
    for position, chunk in enumerate(index.chunks):
        spans, vectors = index.windows.of_chunk(position)
        whole = [(0, len(chunk.text))]  # a chunk without an answer (a question list) is one window
        assert [tuple(s) for s in spans.tolist()] == (windows(chunk.text) if chunk.has_answer else whole)
        assert np.allclose(vectors, embedder.passages([chunk.indexed_part(*s) for s in spans]))
    loaded = index_.load(tmp_path / "ix")
    assert loaded.windows is not None
    assert (loaded.windows.owner == index.windows.owner).all()
    assert (loaded.windows.vectors == index.windows.vectors).all()


def test_an_index_without_windows_is_rebuilt_and_damaged_windows_are_unusable(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    index, _ = ingest(notes, tmp_path / "ix", embedder)
    manifest = {
        **index.manifest,
        "settings": {k: v for k, v in index.manifest["settings"].items() if k != "window_chars"},
    }
    index_.save(index_.Index(index.chunks, index.tokens, index.vectors, manifest), tmp_path / "old")
    with np.load(tmp_path / "old" / "index.npz") as data:  # as an index of before windows was written
        np.savez(tmp_path / "old" / "index.npz", vectors=data["vectors"], meta=data["meta"])
    assert index_.load(tmp_path / "old").windows is None
    rebuilt, report = ingest(notes, tmp_path / "old", embedder)
    assert report.rebuilt == "settings changed" and rebuilt.windows is not None
    assert index_.settings_changed(index_.load(tmp_path / "old"), SETTINGS) == ""
    with np.load(tmp_path / "ix" / "index.npz") as data:  # a window row lost: never served
        arrays = {name: data[name] for name in data.files}
    np.savez(tmp_path / "ix" / "index.npz", **{**arrays, "window_owner": arrays["window_owner"][:-1]})
    with pytest.raises(index_.IndexUnusable, match="inconsistent windows"):
        index_.load(tmp_path / "ix")


def test_searcher_says_once_that_an_unreadable_index_is_kept_aside(
    notes: Path, tmp_path: Path, embedder: HashEmbedder
) -> None:
    from assistant.retrieval import Searcher

    settings = Settings(corpus=notes, index=tmp_path / "ix")
    Searcher(settings, warn=lambda _: None, embedder=embedder)
    (tmp_path / "ix" / index_.INDEX_FILE).write_bytes(b"half a file")
    said: list[str] = []
    Searcher(settings, warn=said.append, embedder=embedder)
    about = [line for line in said if "unreadable" in line]
    assert len(about) == 1 and "kept it aside as index.npz.bad-" in about[0]
    (tmp_path / "afile").write_text("x")
    before = len(said)
    with pytest.raises(ValueError, match="is a file"):
        Searcher(Settings(corpus=notes, index=tmp_path / "afile"), warn=said.append, embedder=embedder)
    assert len(said) == before  # no "building it" said first
