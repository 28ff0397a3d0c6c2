"""Tokenizer, BM25, fusion, the search modes and the real CrossEncoder path on a tiny model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from rank_bm25 import BM25Okapi

from assistant.settings import Settings, index_settings
from ingest.chunk import windows
from retriever import index as index_
from retriever.bm25 import BM25, top
from retriever.fuse import rrf
from retriever.rerank import WINDOWS, WindowReranker, load_reranker, locate
from retriever.search import as_json, search
from retriever.tokenize import tokenize
from tests.conftest import HashEmbedder


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ZeRO-3 是什么？", ["zero3", "zero", "3"]),
        ("RMSNorm和LayerNorm的区别", ["rmsnorm", "layernorm"]),
        ("Qwen2.5 用了 LoRA 吗", ["qwen2.5", "lora"]),
        ("KV Cache", ["kv", "cache", "kvcache"]),
        ("how does the KV-Cache work", ["kvcache", "kv", "cache", "work", "cachework"]),
    ],
)
def test_tokenize_keeps_terms_whole_and_drops_function_words(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_tokenize_spellings_of_a_term_meet() -> None:
    assert "kvcache" in tokenize("KVCache") and "kvcache" in tokenize("KV Cache")
    assert "zero3" in tokenize("zero3") and "zero3" in tokenize("ZeRO-3")


def test_bm25_matches_rank_bm25_reference() -> None:
    docs = [["注意力", "机制", "softmax"], ["lora", "低秩"], ["softmax", "溢出", "softmax"]]
    ours = BM25(docs).scores(["softmax"])
    reference = BM25Okapi(docs).get_scores(["softmax"])
    assert ours.tolist() == pytest.approx(reference.tolist(), rel=1e-5)
    assert [i for i, _ in top(ours, 5)] == [2, 0]  # zero scores are not hits


def test_bm25_empty_query_and_empty_corpus() -> None:
    assert BM25([["a"]]).scores([]).tolist() == [0.0]
    assert BM25([]).scores(["a"]).tolist() == []


def test_rrf_by_hand() -> None:
    fused = rrf([[3, 1], [1, 2]], k=60)
    assert fused == pytest.approx({3: 1 / 61, 1: 1 / 62 + 1 / 61, 2: 1 / 62})
    assert rrf([[5, 5, 6]], k=60) == pytest.approx({5: 1 / 61, 6: 1 / 62})  # a repeat counts once


@pytest.fixture
def index(notes: Path, tmp_path: Path, embedder: HashEmbedder) -> index_.Index:
    built, _ = index_.ingest(
        notes,
        tmp_path / "ix",
        index_settings(Settings(embed_model="hash-test")),
        embedder=lambda: embedder,
        warn=lambda _: None,
    )
    return built


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_modes_find_the_answering_passage(index: index_.Index, embedder: HashEmbedder, mode: str) -> None:
    result = search(index, "ZeRO-3 和 ZeRO-2 有什么区别", mode=mode, k=3, embedder=embedder)
    assert result.hits[0].chunk.heading[-1] == "3、ZeRO-3 和 ZeRO-2 的区别"
    scores = result.hits[0].scores
    assert (scores["bm25"] is not None) == (mode != "dense")
    assert (scores["dense"] is not None) == (mode != "bm25")
    assert (scores["fused"] is not None) == (mode == "hybrid") and scores["rerank"] is None


def test_unanswered_passages_rank_below_answers(index: index_.Index, embedder: HashEmbedder) -> None:
    strict = search(index, "Flash Attention 原理", mode="bm25", k=10, unanswered_weight=0.0)
    assert strict.hits[-1].chunk.has_answer is False or all(h.chunk.has_answer for h in strict.hits)
    flags = [h.chunk.has_answer for h in strict.hits]
    assert flags == sorted(flags, reverse=True)


def test_json_shape(index: index_.Index, embedder: HashEmbedder) -> None:
    out = as_json(search(index, "KV Cache", mode="hybrid", k=2, embedder=embedder))
    assert set(out) == {"query", "mode", "hits", "timings_ms"}
    hit = out["hits"][0]
    assert {"rank", "id", "source", "start", "end", "heading", "text", "score", "scores"} <= set(hit)
    assert set(hit["scores"]) == {"bm25", "dense", "fused", "rerank"} and hit["rank"] == 1


def tiny_cross_encoder(folder: Path) -> Path:
    """A random 2-layer BERT cross-encoder with a character vocabulary, saved like a hub model (seeded: the
    same weights every run, so its scores, rounded in `Hit.scores`, order the same way)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(0)

    chars = sorted(
        set(
            "".join(
                (Path(__file__).parent / "fixtures" / "notes" / n).read_text()
                for n in ("heading.md", "bold.txt")
            )
        )
        - set(" \n")
    )
    (folder).mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]))
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), tokenize_chinese_chars=True)
    config = BertConfig(
        vocab_size=len(chars) + 5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("fusion", ["pure", "rrf"])
def test_rerank_runs_the_real_cross_encoder(
    index: index_.Index, embedder: HashEmbedder, tmp_path: Path, fusion: str
) -> None:
    reranker, reason = load_reranker(str(tiny_cross_encoder(tmp_path / "ce")))
    assert reranker is not None, reason
    result = search(
        index,
        "KV Cache 是什么",
        mode="rerank",
        k=5,
        embedder=embedder,
        reranker=reranker,
        rerank_candidates=5,
        rerank_fusion=fusion,
    )
    assert all(h.scores["rerank"] is not None for h in result.hits)
    assert "rerank" in result.timings_ms and not result.reranker
    if fusion == "pure":
        answered = [h.scores["rerank"] for h in result.hits if h.chunk.has_answer]
        assert answered == sorted(answered, reverse=True)
        return
    # rrf: the order is that of 1/(60 + cross-encoder rank) + 1/(60 + fused rank), where the cross-encoder
    # ranking halves the (shifted) score of passages without an answer, as search does
    low = min(h.scores["rerank"] for h in result.hits)
    ce = sorted(  # scores are rounded in Hit.scores: a tie there keeps the cross-encoder's own rank
        result.hits,
        key=lambda h: (-((h.scores["rerank"] - low) * (1 if h.chunk.has_answer else 0.5)), h.ranks["rerank"]),
    )
    fused = sorted(result.hits, key=lambda h: h.ranks["fused"])
    both = [1 / (61 + ce.index(h)) + 1 / (61 + fused.index(h)) for h in result.hits]
    assert both == sorted(both, reverse=True)  # two hits may tie (ranks 1 and 3 against 3 and 1)


def test_unavailable_reranker_is_found_out_fast_and_fused_order_kept(
    index: index_.Index, embedder: HashEmbedder, tmp_path: Path
) -> None:
    t = time.perf_counter()
    reranker, reason = load_reranker("mianjing-test/no-such-reranker")
    assert time.perf_counter() - t < 5 and reranker is None and "not in the Hugging Face cache" in reason
    assert locate(str(tmp_path / "missing")).reason.startswith("folder not found")
    result = search(index, "KV Cache", mode="rerank", k=3, embedder=embedder, reranker_reason=reason)
    hybrid = search(index, "KV Cache", mode="hybrid", k=3, embedder=embedder)
    assert [h.chunk.id for h in result.hits] == [h.chunk.id for h in hybrid.hits]
    assert result.reranker == reason and result.hits[0].scores["rerank"] is None


def test_the_window_reranker_scores_each_passage_by_its_closest_window(
    index: index_.Index, embedder: HashEmbedder
) -> None:
    reranker, reason = load_reranker(WINDOWS)
    assert isinstance(reranker, WindowReranker) and not reason
    question = "KV Cache 是什么"
    assert len(index.chunks) <= 20  # every passage is a candidate (20) and a hit: the BM25 share is over all
    result = search(index, question, mode="rerank", k=20, embedder=embedder, reranker=reranker)
    assert not result.reranker and "rerank" in result.timings_ms and len(result.hits) == len(index.chunks)
    q = embedder.query(question)
    words = index.bm25.scores(tokenize(question))
    best = words.max()
    assert best > 0
    for hit in result.hits:
        pieces = [hit.chunk.indexed_part(*span) for span in windows(hit.chunk.text)]
        closest = float((embedder.passages(pieces) @ q).max())
        lexical = reranker.lexical * words[index.positions[hit.chunk.id]] / best
        assert hit.scores["rerank"] == pytest.approx(closest + lexical, abs=1e-5)
    answered = [h.scores["rerank"] for h in result.hits if h.chunk.has_answer]
    assert answered == sorted(answered, reverse=True)  # pure: its order alone (the default)


def test_the_question_s_own_words_settle_near_ties_of_the_window_reranker(
    index: index_.Index, embedder: HashEmbedder
) -> None:
    """Without its lexical part the reranker scores by the closest window alone; with it, a passage sharing
    the question's words gains at most `lexical`, the one with the best BM25 score exactly that."""
    question = "KV Cache 是什么"
    q = embedder.query(question)
    positions = list(range(len(index.chunks)))
    words = index.bm25.scores(tokenize(question))
    alone = WindowReranker(lexical=0).rank(index, question, q, words, positions)
    assert alone.tolist() == pytest.approx(index.closest_windows(q, positions).tolist())
    both = WindowReranker(lexical=0.005).rank(index, question, q, words, positions)
    gain = both - alone
    assert gain.max() == pytest.approx(0.005) and int(gain.argmax()) == int(words.argmax())
    assert all(g == pytest.approx(0.0) for g, w in zip(gain, words, strict=True) if w == 0)
    # a question none of whose words the notes hold is ranked by the windows alone
    absent = "zzqx"
    none = index.bm25.scores(tokenize(absent))
    assert WindowReranker().rank(index, absent, q, none, positions).tolist() == pytest.approx(alone.tolist())


def test_the_window_reranker_finds_the_one_item_of_a_long_passage_that_answers(
    tmp_path: Path, embedder: HashEmbedder
) -> None:
    """A long list of training tricks answers the question in one item; a short passage on the question's
    topic does not. Against whole passages the short one is closer; against windows, the item wins."""
    notes = tmp_path / "notes"
    notes.mkdir()
    items = [  # with the clause added below, each ~70 characters: a window (at most 120) holds one
        "学习率预热：训练开始时从很小的学习率逐步增大到峰值，避免早期参数更新过猛造成的损失震荡和发散问题。",
        "梯度裁剪：每一步都把梯度的全局范数限制在一个阈值以内，防止个别异常样本引起梯度爆炸、训练崩溃。",
        "混合精度：前向和反向传播用 FP16 或 BF16 计算以节省时间，主权重和优化器状态仍用 FP32 保存。",
        "梯度累积：多个小批次的梯度累加起来再更新一次参数，这样用很小的显存也能模拟大批次训练的效果。",
        "权重衰减：在优化器里对参数额外加 L2 惩罚项，让权重保持较小的数值，从而抑制模型的过拟合倾向。",
        "数据打乱：每个 epoch 开始前重新打乱全部样本的顺序，减少数据排列顺序给训练结果带来的系统偏差。",
        "早停：持续观察验证集上的损失，它连续多轮不再下降时就停止训练，并保留表现最好的那个检查点。",
        "标签平滑：把 one-hot 标签稍微软化，给非目标类别也分一点概率，缓解模型在训练集上过度自信的问题。",
    ]
    lines = [f"- {item[:-1]}，这是大模型训练里常用的一个技巧。" for item in items]
    (notes / "tricks.md").write_text("## 训练技巧有哪些？\n\n" + "\n".join(lines) + "\n")
    (notes / "batch.md").write_text(
        "## 小批次的梯度怎么更新参数？\n\n小批次的梯度噪声大，参数更新更频繁；批次越大梯度越稳定。\n"
    )
    built, _ = index_.ingest(
        notes, tmp_path / "ix", index_settings(Settings(embed_model="hash-test")), embedder=lambda: embedder
    )
    question = "梯度累积：小批次的梯度累加起来再更新参数吗？"
    dense = search(built, question, mode="dense", k=2, embedder=embedder)
    reranked = search(built, question, mode="rerank", k=2, embedder=embedder, reranker=WindowReranker())
    assert dense.hits[0].chunk.source == "batch.md"  # the whole list's vector is diluted by its other items
    assert reranked.hits[0].chunk.source == "tricks.md"


def test_embedding_progress_says_the_time_left_at_the_pace_so_far(monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant import retrieval

    clock = iter([0.0, 10.0, 11.0, 200.0])  # started, then three reports
    monkeypatch.setattr(retrieval.time, "monotonic", lambda: next(clock))
    said: list[str] = []
    report = retrieval.progress_lines(said.append, every=5.0)
    report(100, 1300)  # 10 s for 100: 1,200 more take 2 min
    report(110, 1300)  # a second later: not said again yet
    report(1300, 1300)  # the end is always said, without an estimate
    assert said == [
        "mianjing: embedded 100/1300 passages, about 2 min left",
        "mianjing: embedded 1300/1300 passages",
    ]
