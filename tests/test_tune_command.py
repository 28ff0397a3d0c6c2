"""`mianjing tune` end to end on the fixture notes: scripted question writer, tiny base, hashing embedder."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.retrieval import TUNED, Searcher, reranker_for
from assistant.settings import Settings, from_env
from retriever import rerank
from tests.conftest import FIXTURES, HashEmbedder
from tests.test_rerank_train import tiny_base
from tune import command, train
from tune import questions as q

EXTRA = "\n\n".join(
    f"## 第{n}题 {topic}\n\n{topic}的要点：{detail}。面试时先讲定义，再讲代价和适用场景。"
    for n, (topic, detail) in enumerate(
        [
            ("梯度裁剪", "按全局范数缩放梯度，防止梯度爆炸"),
            ("混合精度", "前向和反向用 FP16，主权重保留 FP32，配合 loss scaling"),
            ("学习率预热", "训练初期线性增大学习率，避免早期不稳定"),
            ("权重衰减", "AdamW 把衰减从梯度更新里解耦出来"),
            ("数据并行", "每张卡一份完整模型，梯度 all-reduce 后同步更新"),
            ("张量并行", "把矩阵乘法按行或列切到多张卡上"),
            ("流水线并行", "按层切分模型，micro-batch 填充流水线气泡"),
            ("激活重计算", "反向时重新计算前向激活，用计算换显存"),
        ],
        start=1,
    )
)


class Writer:
    """A scripted question writer: asks about the start of the passage it is shown; can be interrupted."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after, self.seen = fail_after, 0

    def complete(self, messages: list[tuple[str, str]]) -> str:
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise KeyboardInterrupt
        self.seen += 1
        text = messages[1][1].split("正文：", 1)[1]
        return f"改写：{text[:16]}是怎么回事？\n关键词：{text[:8]}\nEnglish: What does {text[:12]} mean here?"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    notes = tmp_path / "notes"
    shutil.copytree(FIXTURES, notes)
    (notes / "train.md").write_text(f"# 训练技巧\n\n{EXTRA}\n", encoding="utf-8")
    return from_env(
        {},
        corpus=notes,
        index=tmp_path / "ix",
        cache=tmp_path / "cache",
        embed_model="hash-test",
        reranker="",
        rerank_max_length=96,  # the tiny base model has 130 positions
    )


@pytest.fixture
def tiny(tmp_path: Path) -> train.TrainSettings:
    base = tiny_base(tmp_path / "base")
    return train.TrainSettings(base=str(base), layers=1, max_length=96, batch_size=8, lr=5e-3, holdout=0.2)


def test_better_needs_to_beat_hybrid_and_the_current_reranker() -> None:
    def m(mrr: float) -> dict[str, float]:
        return {"hit@1": 0.0, "hit@5": 0.0, "mrr@10": mrr}

    assert command.better({"hybrid": m(0.5), "tuned": m(0.6)})[0]
    assert not command.better({"hybrid": m(0.5), "current": m(0.7), "tuned": m(0.6)})[0]
    verdict, why = command.better({"hybrid": m(0.6), "tuned": m(0.6)})
    assert not verdict and why == "tuned MRR@10 0.600 does not beat hybrid 0.600"


def test_tune_resumes_after_an_interruption_and_activates_only_when_better(
    settings: Settings, tiny: train.TrainSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted while writing questions, resumed without asking again; kept aside when not better;
    activated for these notes when better, and then used by rerank mode."""
    searcher = Searcher(settings, embedder=HashEmbedder(), warn=lambda _: None)
    lines: list[str] = []
    answering = [c for c in searcher.index.chunks if c.has_answer]
    with pytest.raises(KeyboardInterrupt):
        command.run(settings, searcher, lambda: Writer(fail_after=4), train=tiny, log=lines.append)
    assert "questions to write for" in lines[0] and "in all on this machine" in lines[0]  # the cost, first
    cache = q.cache_path(settings.cache, settings.llm)
    assert len(q.read_cache(cache)) == 4

    monkeypatch.setattr(
        command, "better", lambda heldout: (False, "tuned MRR@10 0.1 does not beat hybrid 0.2")
    )
    writer = Writer()
    record = command.run(settings, searcher, lambda: writer, train=tiny, log=lines.append)
    assert writer.seen == len(answering) - 4  # resumed: only the passages not yet cached were asked
    assert set(record["heldout"]) == {"questions", "hybrid", "tuned"} and not record["activated"]
    assert reranker_for(settings) == settings.reranker == ""  # not activated: nothing changes
    kept = json.loads((settings.index_dir / "tune" / "candidate" / "training.json").read_text())
    assert kept["command"] == "mianjing tune" and kept["verdict"].startswith("tuned MRR@10")

    monkeypatch.setattr(command, "better", lambda heldout: (True, "tuned MRR@10 0.3 beats hybrid 0.2"))
    monkeypatch.setattr(rerank, "BUNDLED_DIR", settings.cache / "no-bundled-adapter")  # keep the test small
    tuned = replace(settings, reranker="mianjing")
    again = Writer()
    record = command.run(tuned, Searcher(tuned, embedder=HashEmbedder(), warn=lambda _: None),
                         lambda: again, train=tiny, log=lines.append)  # fmt: skip
    assert again.seen == 0 and record["activated"]  # every question cached: no model call at all
    assert reranker_for(tuned) == str(settings.index_dir / TUNED)
    assert not (settings.index_dir / "tune" / "candidate").exists()
    searcher = Searcher(tuned, embedder=HashEmbedder(), warn=lambda _: None)
    result = searcher.search("梯度裁剪", mode="rerank", k=3)
    assert result.reranker == "" and result.hits[0].scores["rerank"] is not None  # the tuned one reranked
    assert any("now used in rerank mode" in line for line in lines)


def test_too_few_passages_is_one_line(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "one.md").write_text(
        "# 一\n\n只有一段话，讲的是注意力机制为什么要除以根号 d。\n", encoding="utf-8"
    )
    settings = from_env(
        {}, corpus=notes, index=tmp_path / "ix", cache=tmp_path / "c", embed_model="hash-test"
    )
    searcher = Searcher(settings, embedder=HashEmbedder(), warn=lambda _: None)
    with pytest.raises(RuntimeError, match="too few to train a reranker on"):
        command.run(settings, searcher, Writer, log=lambda _: None)
