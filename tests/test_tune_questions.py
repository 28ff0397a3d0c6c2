"""tune/questions.py with a scripted model: parsing, heading questions, the cache, the filter, the outputs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from assistant.retrieval import Searcher
from assistant.settings import Settings, from_env
from ingest.chunk import Chunk
from tests.conftest import HashEmbedder
from tune import questions as q

GOOD = (
    "改写：显存不够时怎么缓存历史的键值？\n关键词：KV Cache 显存\n"
    "English: Why does caching keys and values speed up decoding?"
)


class Scripted:
    """A fake model: a reply made from the passage it is shown; counts calls, can fail after `fail_after`."""

    def __init__(self, reply: str | None = None, fail_after: int | None = None) -> None:
        self.reply, self.fail_after, self.seen = reply, fail_after, []

    def complete(self, messages: list[tuple[str, str]]) -> str:
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt  # the run is interrupted mid-way
        self.seen.append(messages[1][1])
        if self.reply is not None:
            return self.reply
        n = len(self.seen)
        return (
            f"改写：第{n}段笔记讲的是哪个知识点？\n关键词：笔记 {n}\nEnglish: What does passage {n} explain?"
        )


def chunk(heading: tuple[str, ...], text: str = "正文。", *, source: str = "a.md", start: int = 0) -> Chunk:
    return Chunk(f"{source}#{'/'.join(heading[1:])}", source, start, start + len(text), heading, text, True)


@pytest.fixture
def settings(notes: Path, tmp_path: Path) -> Settings:
    return from_env(
        {}, corpus=notes, index=tmp_path / "ix", cache=tmp_path / "cache", embed_model="hash-test"
    )


@pytest.fixture
def searcher(settings: Settings, embedder: HashEmbedder) -> Searcher:
    return Searcher(settings, embedder=embedder, warn=lambda _: None)


def answering(searcher: Searcher) -> list[Chunk]:
    return [c for c in searcher.index.chunks if c.has_answer]


# parsing


def test_parse_good_output() -> None:
    valid, rejected = q.parse(GOOD)
    assert valid == {
        "paraphrase": "显存不够时怎么缓存历史的键值？",
        "keyword": "KV Cache 显存",
        "english": "Why does caching keys and values speed up decoding?",
    }
    assert rejected == {}


def test_parse_messy_output() -> None:
    raw = (
        "好的，以下是三个问题：\n"
        "1. **改写**：“推理时为什么要把历史 token 的 K 和 V 存起来？”\n"
        "(b) 关键字:\n"
        "  「KV缓存 推理加速」\n"
        "3）english：  'How does a KV cache trade memory for speed?'\n"
        "English: a second English line is ignored\n"
    )
    valid, _ = q.parse(raw)
    assert valid["paraphrase"] == "推理时为什么要把历史 token 的 K 和 V 存起来？"
    assert valid["keyword"] == "KV缓存 推理加速"
    assert valid["english"] == "How does a KV cache trade memory for speed?"


def test_parse_rejects_wrong_language_and_too_long_keywords() -> None:
    valid, rejected = q.parse(
        "改写：What is it?\n关键词：" + "很长的关键词 " * 10 + "\nEnglish: 这是中文问题吗？"
    )
    assert valid == {}
    assert set(rejected) == {"paraphrase", "keyword", "english"}


def test_statements_are_not_questions() -> None:
    raw = "改写：本指南覆盖从基础到前沿的所有知识点。\nEnglish: This guide covers every key point."
    assert q.parse(raw) == (
        {},
        {
            "paraphrase": "本指南覆盖从基础到前沿的所有知识点。",
            "english": "This guide covers every key point.",
        },
    )
    assert set(q.parse("改写：训练初期怎样逐步加大 batch\nEnglish: how is warmup done")[0]) == {
        "paraphrase",
        "english",
    }


def test_garbage_is_a_parse_failure_not_a_crash() -> None:
    passage = chunk(("a.md", "KV Cache 是什么？"), "缓存 K 和 V。")
    record = q.ask(Scripted("I cannot help with that."), passage, "k1")
    assert record["failed"] and record["questions"] == {}
    assert record["raw"] == "I cannot help with that." and record["passage"] == passage.id


def test_prompt_prefix_is_shared_and_passage_cut_at_sentence_end() -> None:
    long_text = "这是一句话。" * 200
    a, b = q.messages(chunk(("a.md", "甲"), long_text)), q.messages(chunk(("b.md", "乙", "丙"), "短。"))
    assert a[0] == b[0] == ("system", q.SYSTEM)
    assert b[1][1] == "标题：乙 > 丙\n正文：短。"
    body = a[1][1].split("正文：", 1)[1]
    assert len(body) <= q.PASSAGE_CHARS and body.endswith("。")


# heading questions


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("1. 什么是 Self-Attention？", "什么是 Self-Attention？"),
        ("<u>RAG有什么缺点？</u>", "RAG有什么缺点？"),
        ("**3、ZeRO-3 和 ZeRO-2 的区别**", "ZeRO-3 和 ZeRO-2 的区别"),
        ("12. 如何做长度外推", "如何做长度外推"),
        ("Why pre-norm?", "Why pre-norm?"),
        ("Flash Attention 的原理", None),
        ("# 1 Transformer", None),
    ],
)
def test_heading_question(title: str, expected: str | None) -> None:
    assert q.heading_question(chunk(("a.md", "section", title))) == expected


def test_a_file_name_alone_is_not_a_question() -> None:
    assert q.heading_question(chunk(("什么是.md",))) is None


# the cache


def test_interrupted_run_resumes_without_asking_again(searcher: Searcher, settings: Settings) -> None:
    chunks, path = answering(searcher), q.cache_path(settings.cache, "fake")
    with pytest.raises(KeyboardInterrupt):
        q.generate(chunks, {}, lambda: Scripted(fail_after=2), model="fake", path=path, log=lambda _: None)
    assert len(path.read_text().splitlines()) == 2
    again = Scripted()
    records = q.generate(
        chunks, q.read_cache(path), lambda: again, model="fake", path=path, log=lambda _: None
    )
    assert len(again.seen) == len(chunks) - 2
    assert len(records) == len(chunks) == len(q.read_cache(path))
    untouched = Scripted()
    q.generate(chunks, q.read_cache(path), lambda: untouched, model="fake", path=path)
    assert untouched.seen == []


def test_changed_note_regenerates_only_its_passages(
    searcher: Searcher, settings: Settings, notes: Path
) -> None:
    path = q.cache_path(settings.cache, "fake")
    before = answering(searcher)
    q.generate(before, {}, Scripted, model="fake", path=path, log=lambda _: None)
    note = notes / "heading.md"
    note.write_text(note.read_text().replace("用显存换时间", "用显存换计算时间"), encoding="utf-8")
    searcher.ingest()
    after, model = answering(searcher), Scripted()
    q.generate(after, q.read_cache(path), lambda: model, model="fake", path=path, log=lambda _: None)
    changed = {c.indexed for c in after} - {c.indexed for c in before}
    assert len(changed) == 1 and len(model.seen) == 1
    assert "用显存换计算时间" in model.seen[0]


def test_truncated_cache_line_is_skipped_and_regenerated(searcher: Searcher, settings: Settings) -> None:
    chunks, path = answering(searcher)[:3], q.cache_path(settings.cache, "fake")
    q.generate(chunks, {}, Scripted, model="fake", path=path, log=lambda _: None)
    text = path.read_text()
    path.write_text(text[: len(text) - 25])  # the last write was cut short
    warnings: list[str] = []
    records = q.read_cache(path, warnings.append)
    assert len(records) == 2 and len(warnings) == 1 and "skipped 1" in warnings[0]
    model = Scripted()
    q.generate(chunks, records, lambda: model, model="fake", path=path, log=lambda _: None)
    assert len(model.seen) == 1 and len(q.read_cache(path, warnings.append)) == 3


def test_key_depends_on_prompt_version_model_and_passage() -> None:
    a = chunk(("a.md", "甲"), "一。")
    assert q.passage_key("m", a) != q.passage_key("n", a)
    assert q.passage_key("m", a) != q.passage_key("m", chunk(("a.md", "甲"), "二。"))
    assert "-" + q.PROMPT_VERSION + ".jsonl" in q.cache_path(Path("/c"), "qwen2.5-coder-1.5b").name


# the filter and duplicates


@dataclass(frozen=True)
class FakeHit:
    chunk: Chunk


@dataclass(frozen=True)
class FakeResult:
    hits: list[FakeHit]


class FakeSearcher:
    """Returns `ranked` for every query, and records the queries."""

    def __init__(self, ranked: list[Chunk]) -> None:
        self.ranked, self.queries = ranked, []

    def search(self, query: str, *, mode: str | None = None, k: int | None = None) -> FakeResult:
        assert (mode, k) == ("hybrid", 50)
        self.queries.append(query)
        return FakeResult([FakeHit(c) for c in self.ranked[:k]])


def test_round_trip_keeps_only_questions_that_find_their_passage() -> None:
    kv = chunk(("a.md", "KV Cache"), "缓存 K 和 V。", start=0)
    kv_part = Chunk("a.md#KV Cache~2", "a.md", 5, 30, kv.heading, "重叠的后半段。", True)  # overlaps kv
    lost = chunk(("b.md", "LoRA"), "低秩分解。", source="b.md")
    searcher = FakeSearcher([chunk(("c.md", "x"), source="c.md"), kv_part])
    found = [("KV 缓存是什么", "paraphrase", kv), ("LoRA 原理", "keyword", lost)]
    rows, counts = q.select(found, searcher, set())
    assert [(r["question"], r["rank"], r["passage"]) for r in rows] == [("KV 缓存是什么", 2, kv.id)]
    assert counts["failed_round_trip"] == {"keyword": 1}


def test_duplicates_and_dev_questions_are_dropped() -> None:
    a = chunk(("a.md", "KV Cache"), source="a.md")
    b = chunk(("b.md", "KV Cache 2"), source="b.md")
    found = [
        ("什么是 KV Cache？", "heading", a),
        ("什么是kv cache?", "paraphrase", b),  # the same question, normalized: b ranks better
        ("什么是 KV Cache", "english", a),
        ("batch size 翻了几倍之后，学习率要不要跟着调？", "paraphrase", a),
    ]
    dev = {
        q.normalize("batch size 翻了几倍之后，学习率要不要跟着调？按什么规则调？"),
        q.normalize(found[3][0]),
    }
    rows, counts = q.select(found, FakeSearcher([b, a]), dev)
    assert [(r["question"], r["passage"], r["rank"]) for r in rows] == [("什么是kv cache?", b.id, 1)]
    assert counts["dropped_duplicates"] == 2 and counts["dropped_dev"] == 1
    assert counts["kept"] == {"heading": 0, "paraphrase": 1, "keyword": 0, "english": 0}


def test_normalize() -> None:
    assert q.normalize(" 什么是 ＫＶ Cache？ ") == q.normalize("什么是kv-cache?") == "什么是kvcache"


def test_dev_set_questions(tmp_path: Path) -> None:
    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"question": "A B?"}\nnot json\n{"id": "x"}\n')
    assert q.dev_questions(dev) == {"ab"}
    assert q.dev_questions(tmp_path / "absent.jsonl") == set()


# the whole run


def test_run_writes_sorted_questions_and_meta(searcher: Searcher, settings: Settings, tmp_path: Path) -> None:
    model, logged = Scripted(), []
    out = tmp_path / "out"
    meta = q.run(settings, searcher, lambda: model, out=out, command="cmd", log=logged.append)
    chunks = answering(searcher)
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert len(model.seen) == len(chunks) and rows
    assert rows == sorted(rows, key=lambda r: (r["passage"], q.ORDER.index(r["style"])))
    assert {r["style"] for r in rows} == {"heading", "paraphrase", "keyword", "english"}
    assert all(r["rank"] >= 1 and " > " in r["heading"] for r in rows)
    saved = json.loads((out / "questions.meta.json").read_text())
    assert saved == meta and saved["prompt"]["system"] == q.SYSTEM and saved["command"] == "cmd"
    assert saved["counts"]["passages"] == len(chunks) and saved["counts"]["parse_failures"] == 0
    assert saved["counts"]["dropped_dev"] == 0 and set(saved["corpus_fingerprint"]) >= {"heading.md"}
    assert any("not yet in" in line for line in logged)
    q.run(settings, searcher, lambda: pytest.fail("everything is cached"), out=out, log=logged.append)


def test_lines_copying_the_heading_or_the_prompt_are_rejected() -> None:
    passage = chunk(("a.md", "3. 大模型常见的评估方法有哪些? 它们适用于哪些场景?"), "人工评估、自动指标……")
    raw = (
        "改写：大模型评估方法有哪些？它们适用于哪些场景？\n"
        "关键词：a short keyword search query of 2 to 6 words\n"
        "English: Which evaluation methods suit open-ended generation?"
    )
    usable, rejected = q.screen(raw, passage)
    assert usable == {"english": "Which evaluation methods suit open-ended generation?"}
    assert set(rejected) == {"paraphrase", "keyword"}
    fresh = (
        "改写：开放式生成的回答，靠什么办法判断好坏？\n关键词：batch size\nEnglish: How are LLMs evaluated?"
    )
    assert set(q.screen(fresh, passage)[0]) == {"paraphrase", "keyword", "english"}  # short words may recur
    example = "关键词：小显存 大batch 训练\nEnglish: How can I train with a large effective batch size?"
    assert q.screen(example, passage)[0] == {}  # the worked example, echoed


def test_estimate_prefers_measured_seconds() -> None:
    passages = [chunk(("a.md", "甲"), "一句话。" * 50)]
    assert q.estimate(passages, {"k": {"seconds": 12.0}, "j": {"seconds": 20.0}, "i": {}}) == 16.0
    assert 5 < q.estimate(passages, {}) < 20  # from the 2-core llama.cpp speeds


def test_command_reproduces_the_run_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MIANJING_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MIANJING_LLM_THREADS", "1")
    monkeypatch.setenv("MIANJING_LLM_API_KEY", "secret")
    command = q._command(["--limit", "5", "--corpus", "my notes"])
    assert (
        command == "MIANJING_LLM_THREADS=1 .venv/bin/python -m tune.questions --limit 5 --corpus 'my notes'"
    )
