"""Citations, the refusal gates and follow-up rewriting, with a scripted model in place of the LLM."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from assistant import cite, prompt
from assistant.answer import Answer, Conversation, _similar, answer, gate_shown, gate_terms, pasted_heading
from assistant.retrieval import Searcher
from assistant.settings import Settings, from_env
from ingest.chunk import Chunk
from tests.conftest import HashEmbedder


class ScriptedModel:
    """Replies from a script, in order; records the messages it was sent."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.sent: list[list[tuple[str, str]]] = []

    def complete(self, messages: list[tuple[str, str]]) -> str:
        self.sent.append(messages)
        return self.replies.pop(0)

    def stream(self, messages: list[tuple[str, str]]) -> Iterator[str]:
        text = self.complete(messages)
        for i in range(0, len(text), 3):
            yield text[i : i + 3]


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("缓存 K 和 V [1]。用显存换时间[2]。", 3, [1, 2]),
        ("见 [1,3] 和 【2】，以及 [1、2]", 3, [1, 3, 2]),
        ("范围 [1-3]，越界 [7]，重复 [1]", 3, [1, 2, 3]),
        ("没有引用。", 3, []),
        ("全角［2］", 2, [2]),
    ],
)
def test_parse_citations(text: str, n: int, expected: list[int]) -> None:
    assert cite.parse(text, range(1, n + 1)) == expected


def test_mark_at_sentence_start_belongs_to_the_sentence_before() -> None:
    s = cite.sentences("KV Cache 缓存 K 和 V。[1] 它用显存换时间。", {1, 2})
    assert [x.cited for x in s] == [(1,), ()]


def test_an_answer_that_opens_with_a_mark_writes_each_mark_before_what_it_cites() -> None:
    # the model's other habit (46 dev answers): "[1] A。 [2] B。" — [2] is B's, not A's
    reply = "[1] 多轮 epoch 会降低性能； [2] 更大的数据集能缓解。\n[3]\n- 提高质量也无法挽救。[1]"
    s = cite.sentences(reply, {1, 2, 3})
    assert [(cite.strip_marks(x.text).strip(), x.cited) for x in s] == [
        ("多轮 epoch 会降低性能；", (1,)),
        ("更大的数据集能缓解。", (2,)),
        ("- 提高质量也无法挽救。", (3, 1)),  # a mark on its own line, and the marks closing the answer
    ]
    # shown with each mark at its sentence's end, and no space left where a mark opened a sentence
    assert (
        cite.render(reply, s)[0]
        == "多轮 epoch 会降低性能 [1]； 更大的数据集能缓解 [2]。\n- 提高质量也无法挽救 [3][1]。"
    )
    # marks alone are not an opening mark: "[1] [2]" stays an answer of marks
    assert [x.cited for x in cite.sentences("[1] [2]", {1, 2})] == []


def test_attribution_finds_the_passage_an_uncited_sentence_copies() -> None:
    passages = {1: "推理时缓存历史 token 的 K 和 V，避免重复计算。", 2: "梯度累积把多个小 batch 的梯度累加。"}
    s = cite.attribute("梯度累积会把多个小 batch 的梯度累加起来。太阳从东边升起来了。", passages)
    assert s[0].cited == () and s[0].attributed == (2,)
    assert s[1].numbers == ()  # matches nothing: stays visibly uncited


def test_support_is_high_for_copied_text_and_low_for_invented_text() -> None:
    passages = ["ZeRO-3 对优化器状态、梯度和参数都做分片，显存占用最低。"]
    assert cite.support("ZeRO-3 对优化器状态、梯度和参数都做分片 [1]。", passages) > 0.9
    assert cite.support("量子计算使用叠加态和纠缠来加速某些算法。", passages) < 0.3
    assert cite.support("", passages) == 0.0


def test_window_keeps_the_sentences_that_match_the_question() -> None:
    text = "无关的开头。" * 30 + "RMSNorm 去掉了均值中心化。" + "无关的结尾。" * 30
    shown = prompt.window(text, "RMSNorm 和均值中心化", 60)
    assert "RMSNorm 去掉了均值中心化。" in shown and len(shown) <= 60


def test_only_chinese_evidence_is_to_be_translated() -> None:
    def rule(text: str) -> str:
        chunk = Chunk("n.md#1", "n.md", 0, len(text), ("n.md", "KV"), text, True)
        shown = prompt.passages([chunk], "What does the KV cache store?", max_chars=250)
        return prompt.user_message("What does the KV cache store?", shown, style="evidence")

    assert "(translate the Chinese evidence)" in rule("推理时缓存历史 token 的 K 和 V，避免重复计算。")
    english = rule("The KV cache keeps the keys and values of earlier tokens.")
    assert "Answer in English, 1-4 sentences" in english and "translate" not in english


def test_language_of_the_question() -> None:
    assert prompt.is_english("How does LoRA work?") and not prompt.is_english("LoRA 的原理是什么")
    assert prompt.refusal("What is DoRA?") == prompt.REFUSAL_EN
    assert not prompt.is_english("KV Cache 是什么？") and not prompt.is_english("lora_alpha r 取值")
    # names and keywords with a Chinese word are a Chinese question; English grammar makes it English
    assert not prompt.is_english("P-tuning v2 prefix tuning prompt tuning 区别")
    assert prompt.is_english("What is the role of the 分隔符 delimiter in a prompt?")
    assert prompt.is_english("P-tuning v2 vs prefix tuning") and prompt.is_english("Prefix Tuning")


@pytest.fixture
def searcher(notes: Path, tmp_path: Path) -> Searcher:
    settings = from_env(corpus=notes, index=tmp_path / "ix")
    return Searcher(settings, warn=lambda _: None, embedder=HashEmbedder())  # type: ignore[arg-type]


def test_answer_with_citations_streams_and_maps_citations(searcher: Searcher) -> None:
    model = ScriptedModel("推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。它用显存换时间。")
    streamed: list[str] = []
    result = answer("KV Cache 是什么？", searcher=searcher, model=model, on_text=streamed.append)
    assert not result.refused and "".join(streamed) == result.diagnostics.generated
    # shown: every sentence ends with the mark of the evidence it restates, the attributed one too
    assert result.text == "推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。它用显存换时间 [1]。"
    assert result.passages[0].chunk.heading[-1] == "4. KV Cache 是什么？"
    assert [c.n for c in result.citations] == [1] and result.citations[0].id == result.passages[0].chunk.id
    assert result.sentences[1].attributed == (1,)  # the uncited sentence copies passage 1
    system, user = model.sent[0][0][1], model.sent[0][-1][1]
    assert "[编号]" in system and user.endswith("回答：")
    assert "[1]（注意力机制 > 4. KV Cache 是什么？）" in user
    assert set(result.diagnostics.timings_ms) >= {"retrieve", "first_token", "total"}


def test_unknown_terms_refuse_before_generating(searcher: Searcher) -> None:
    model = ScriptedModel()  # must not be called
    result = answer("DoRA 和 GPTQ 有什么关系？", searcher=searcher, model=model)
    assert result.refused and "DoRA" in result.reason and result.text == prompt.REFUSAL_ZH
    assert result.pointers and not model.sent
    assert gate_terms("ZeRO-3 和 DoRA", searcher.index, 0.5) == "the notes never mention DoRA"
    assert gate_terms("ZeRO-3 和 KV Cache", searcher.index, 0.5) == ""
    assert (
        gate_terms("What does the Chinchilla paper say?", searcher.index, 0.5)
        == "the notes never mention Chinchilla"
    )
    assert (
        gate_terms("Which ZeRO stage splits parameters?", searcher.index, 0.5) == ""
    )  # "Which" opens the question
    assert gate_terms("ZeRO-3 的通信量", searcher.index, 0.5) == ""  # known as its parts: zero, 3


def test_passages_that_mention_none_of_the_question_names_refuse_before_generating(
    searcher: Searcher,
) -> None:
    model = ScriptedModel()  # must not be called
    result = answer("K-means 聚类的 K 值一般怎么选？", searcher=searcher, model=model)
    assert result.passages and not model.sent  # passages were found (about K and V), none about K-means
    assert result.refused and result.reason == "the passages found never mention K-means"

    def shown(*texts: str) -> list[prompt.Passage]:
        return [
            prompt.Passage(n, Chunk(f"n.md#{n}", "n.md", 0, len(t), ("n.md", "笔记"), t, True), t)
            for n, t in enumerate(texts, 1)
        ]

    passages = shown("Transformer 的多头注意力 [Q/K/V]。", "LayerNorm 放在残差之后。")
    assert gate_shown("ViT 怎么切 patch？", passages) == "the passages found never mention ViT"
    assert (
        gate_shown("ViT 和 Transformer 的区别？", passages) == ""
    )  # one name is there: the model may answer
    assert gate_shown("hallucination 怎么缓解？", passages) == ""  # a plain English word, not a name
    # an English gloss of the Chinese term beside it, hyphen or not, is no name the passages must hold
    assert gate_shown("attention 为啥用点乘（dot-product）？", shown("点乘注意力可以用矩阵乘法并行。")) == ""
    assert gate_shown("K-means 的 K 怎么选？", passages) == "the passages found never mention K-means"
    assert gate_shown("LLM 的 GPU 显存怎么估？", passages) == ""  # generic names are no subject
    assert (
        gate_shown("How does ZeRO-3 shard the optimizer?", shown("ZeRO-3 切分参数、梯度和优化器状态。")) == ""
    )
    assert gate_shown("Where does LayerNorm go?", passages) == ""  # found in the second passage
    assert (
        gate_shown("How do RoPE and ALiBi differ?", passages)
        == "the passages found never mention RoPE, ALiBi"
    )
    assert gate_shown("ViT 是什么？", []) == ""  # nothing shown: the other gate says so


def test_the_model_saying_no_answer_is_a_refusal(searcher: Searcher) -> None:
    result = answer("涌现是什么", searcher=searcher, model=ScriptedModel("笔记中没有相关内容。"))
    assert result.refused and result.reason == "the model found no answer in the passages"


def test_an_unusable_answer_quotes_the_first_passage_when_retrieval_is_sure(searcher: Searcher) -> None:
    def ask(quote_above: float):  # noqa: ANN202
        model = ScriptedModel("笔记中没有相关内容。")
        return answer(
            "KV Cache 是什么？",
            searcher=searcher,
            model=model,
            settings=replace(searcher.settings, quote_above=quote_above),
        )

    sure, unsure = ask(-1.0), ask(1.01)
    first = sure.passages[0]
    assert (
        not sure.refused
        and sure.quoted
        and sure.text == f"笔记原文：\n\n{prompt.readable(first.text)} [{first.n}]"
    )
    assert [c.id for c in sure.citations] == [first.chunk.id] and all(s.numbers for s in sure.sentences)
    assert (
        sure.reason.startswith("the model found no answer")
        and sure.diagnostics.generated == "笔记中没有相关内容。"
    )
    assert unsure.refused and not unsure.quoted and unsure.text == prompt.REFUSAL_ZH


def test_an_answer_that_cuts_the_evidence_short_shows_the_evidence(searcher: Searcher) -> None:
    """One clause of the notes' answer is a thin answer: the notes' own evidence is shown instead, quoted."""

    def ask(reply: str, quote_thin: float = 0.5) -> Answer:
        settings = replace(searcher.settings, quote_thin=quote_thin)
        model = ScriptedModel(reply)
        return answer("为什么要除以根号 d_k？", searcher=searcher, model=model, settings=settings)

    thin = ask("防止梯度消失 [1]。")
    first = thin.passages[0]
    assert "防止 softmax 进入饱和区" in first.text
    assert (
        thin.quoted and not thin.refused and thin.text == f"笔记原文：\n\n{prompt.readable(first.text)} [1]"
    )
    assert thin.reason.startswith("the answer left out most of evidence [1]")
    assert thin.diagnostics.generated == "防止梯度消失 [1]。"
    assert [c.id for c in thin.citations] == [first.chunk.id]
    full = ask("点积的方差随 d_k 增大，除以 √d_k 防止 softmax 进入饱和区导致梯度消失 [1]。")
    assert not full.quoted and full.text.startswith("点积的方差随 d_k 增大")
    kept = ask("防止梯度消失 [1]。", quote_thin=0)
    assert not kept.quoted and kept.text == "防止梯度消失 [1]。"
    # judged on what it says: the same clause said under every mark, the question asked back, a pasted
    # heading do not make it longer (dev d012 said one clause under [1], [2] and [3]; d131 pasted headings)
    clause = "除以 d_k 防止梯度消失"
    padded = ask(
        f"{clause} [1]。{clause} [2]。{clause} [3]。\n为什么要除以根号 d_k？[1]\n（{first.heading}）"
    )
    assert padded.quoted and padded.text == thin.text
    assert padded.reason.startswith("the answer left out most of evidence [1]")


def test_a_thin_answer_quotes_the_evidence_it_restates_not_always_the_first(tmp_path: Path) -> None:
    """[1] is a sibling passage on the question's topic and the answer restates [2] (dev d001 in rerank mode:
    batch size ramp-up first, the scaling rule the answer states second): [2] is quoted, not [1]."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "train.md").write_text(
        "# 训练技巧\n\n## 1. Batch Size 渐进式增大\n\n不要一开始就用很大的 Global Batch Size。先从小 batch"
        " size 开始，随着训练步数逐步增加到目标 batch size，训练早期更新更频繁，后期梯度方向更精确，能减少"
        "训练总时长。\n\n## 2. 学习率缩放规则\n\n当 Batch Size 扩大 N 倍时，为了保持梯度方差一致，学习率"
        "通常也应扩大 N 倍，这是线性缩放规则。在超大规模模型下，学习率按根号 N 增加会比线性缩放更稳定，"
        "这是平方根缩放规则。\n",
        encoding="utf-8",
    )
    searcher = Searcher(
        from_env(corpus=notes, index=tmp_path / "ix"), warn=lambda _: None, embedder=HashEmbedder()
    )  # type: ignore[arg-type]

    def ask(reply: str) -> Answer:
        question = "batch size 渐进式增大的时候，学习率要跟着调吗？"
        return answer(question, searcher=searcher, model=ScriptedModel(reply))

    thin = ask("当 Batch Size 扩大 N 倍时，学习率也应扩大 N 倍 [1]。")
    first, second = thin.passages[:2]
    assert "渐进式" in first.chunk.heading[-1] and "缩放" in second.chunk.heading[-1]
    assert thin.quoted and thin.reason.startswith("the answer left out most of evidence [2]")
    assert "线性缩放规则" in thin.text and "渐进式" not in thin.text
    assert [c.id for c in thin.citations] == [second.chunk.id]
    # an answer that says the whole of what it restates stays the model's own, marked where it came from
    full = ask(
        "当 Batch Size 扩大 N 倍时，为了保持梯度方差一致，学习率也应扩大 N 倍，这是线性缩放规则 [1]。"
        "超大规模模型下学习率按根号 N 增加更稳定 [1]。"
    )
    assert not full.quoted and not full.refused and [c.n for c in full.citations] == [2]


def test_a_quote_shows_the_whole_passage_not_the_evidence_cut_for_the_model(tmp_path: Path) -> None:
    """The evidence keeps ~150 characters around the best sentence, which can end inside an enumerated point
    ("①不稳定性：…" without its second sentence, ② left out); a quote is read by the person, so it shows the
    passage whole (up to `evidence.LONGEST`; beyond, the evidence widened to whole lines), and its sources
    show the same."""
    notes = tmp_path / "notes"
    notes.mkdir()
    filler = (
        "训练开始的若干步内，学习率从较小的初始值线性增加到最大学习率。这一阶段通常只占总步数的一小部分。"
    )
    point_1 = (
        "**①不稳定性：**训练初期参数随机初始化，模型状态不稳定。此时较大的学习率会让参数变动太大，难以收敛。"
    )
    point_2 = "**②避免过拟合：**一开始就用大步长可能过早拟合训练数据，等模型稳定后再加大。"
    (notes / "bert.md").write_text(
        f"# BERT\n\n## 36. BERT 的学习率 warm-up 是怎样的？\n\n{filler}\n\n{point_1}\n{point_2}\n",
        encoding="utf-8",
    )
    searcher = Searcher(
        from_env(corpus=notes, index=tmp_path / "ix"), warn=lambda _: None, embedder=HashEmbedder()
    )  # type: ignore[arg-type]
    settings = replace(searcher.settings, evidence_context=40, quote_above=1.01)
    question = "warm-up 时学习率从初始值怎么增加？"
    result = answer(question, searcher=searcher, model=ScriptedModel("[1]"), settings=settings)
    chunk = result.passages[0].chunk
    assert result.quoted and point_2 not in result.diagnostics.prompt  # the model saw ① cut, no ②
    assert "此时较大的学习率" in result.text and "②避免过拟合" in result.text  # both points, each whole
    assert result.passages[0].text == chunk.text  # the sources show what the quote shows
    long = replace(result.passages[0], text=point_1[:20])  # a passage longer than LONGEST: whole lines
    longer = replace(chunk, text=f"{filler * 20}\n{point_1}\n{point_2}")
    assert prompt.whole(replace(long, chunk=longer)).text == point_1


def test_evidence_pasted_back_piece_by_piece_is_quoted_as_the_first(searcher: Searcher) -> None:
    """ "[1] … [2] … [3] …": the prompt's evidence walked through in order (the issue's passage dump, 19 dev
    answers) is not an answer chosen from it; the first evidence is shown, quoted."""

    def ask(reply: str) -> Answer:
        settings = replace(searcher.settings, quote_thin=0, n_passages=3)
        return answer("KV Cache 是什么？", searcher=searcher, model=ScriptedModel(reply), settings=settings)

    shown = ask("x").passages
    assert len(shown) == 3
    pieces = [p.text.split("。")[0] for p in shown]
    dump = ask(f"[1] {pieces[0]}。\n[2] {pieces[1]}。\n[3] {pieces[2]}。")
    assert dump.quoted and dump.reason == "the model pasted the evidence back piece by piece; quoted [1]"
    assert dump.text.startswith("笔记原文：") and [c.n for c in dump.citations][:1] == [1]
    # an answer that cites as it goes, or picks two pieces, is the model's own
    for reply in (
        f"{pieces[0]} [1]。{pieces[1]} [2]。{pieces[2]} [3]。",
        f"[1] {pieces[0]}。 [3] {pieces[2]}。",
    ):
        assert not ask(reply).quoted


def test_an_answer_of_marks_alone_quotes_the_evidence_it_points_at(searcher: Searcher) -> None:
    settings = replace(searcher.settings, quote_above=1.01)  # retrieval's sureness plays no part
    result = answer("KV Cache 是什么？", searcher=searcher, model=ScriptedModel("[2]。"), settings=settings)
    second = result.passages[1]
    assert (
        result.quoted
        and not result.refused
        and result.text == f"笔记原文：\n\n{prompt.readable(second.text)} [2]"
    )
    assert result.reason == "the model only pointed at [2]; quoted it"
    assert [c.id for c in result.citations] == [second.chunk.id] and [c.n for c in result.citations] == [2]


def test_headings_the_model_pastes_back_are_left_out(searcher: Searcher) -> None:
    reply = "（注意力机制 > 4. KV Cache 是什么？）\n推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。"
    result = answer("KV Cache 是什么？", searcher=searcher, model=ScriptedModel(reply))
    assert not result.refused and not result.quoted
    assert result.text == "推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。"  # no blank line where it was
    assert [s.text for s in result.sentences] == ["推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。"]


def test_questions_the_model_writes_instead_of_answers_are_left_out(searcher: Searcher) -> None:
    # the question restated, or one of the notes' questions pasted, with marks: it says nothing
    reply = "KV Cache 有什么用？[1]\n推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。为什么能省时间？[2]"
    result = answer("KV Cache 是什么？", searcher=searcher, model=ScriptedModel(reply))
    assert not result.refused and not result.quoted
    assert result.text == "推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。"
    # a checklist's items may ask: they stay, and so does the rest of an item's line
    checklist = (
        "1. 检查数据：token ID 是否正常 [1]？标签是否正确 [1]？\n2. 检查学习率是否过大 [2]。\n数据对吗？[1]"
    )
    text, _ = cite.render(checklist, cite.attribute(checklist, {1: "a", 2: "b"}), questions=True)
    assert text == "1. 检查数据：token ID 是否正常 [1]？标签是否正确 [1]？\n2. 检查学习率是否过大 [2]。"


def test_marks_used_as_words_leave_no_stray_words_behind() -> None:
    # "[1] 和 [2] 中提到，X" (dev d118) once read " 和  中提到，X": the marks were the phrase's words
    def shown(reply: str) -> str:
        return cite.render(reply, cite.attribute(reply, {1: "a", 2: "b"}))[0]

    assert shown("[1] 和 [2] 中提到，Off-Policy 可以重用经验。") == "Off-Policy 可以重用经验 [1][2]。"
    assert shown("在 [1] 中，我们看到 r 是 LoRA 的秩。") == "我们看到 r 是 LoRA 的秩 [1]。"
    assert shown("根据证据 [1]，KV 缓存按层累加。") == "根据证据，KV 缓存按层累加 [1]。"
    assert shown("其中提到，显存够用 [1]。") == "其中提到，显存够用 [1]。"  # no mark there: words of its own


def test_the_prompts_instruction_pasted_back_is_left_out(searcher: Searcher) -> None:
    reply = "推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。\n请用中文根据证据回答，1 到 4 句 [1]。"
    result = answer("KV Cache 是什么？", searcher=searcher, model=ScriptedModel(reply))
    assert result.text == "推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。"
    pasted = pasted_heading([])
    assert pasted("Answer in English (translate the Chinese evidence),")  # dev d009, as the model wrote it
    assert pasted("Answer in English, 1-4 sentences, each ending with its [number].")  # English notes' form
    assert not pasted("Answer: the KV cache keeps the keys and values of earlier tokens.")


def test_an_answer_of_headings_alone_quotes_the_first_evidence(searcher: Searcher) -> None:
    # neither retrieval's sureness nor the thin-answer rule plays a part
    settings = replace(searcher.settings, quote_above=1.01, quote_thin=0)
    reply = "注意力机制 > 4. KV Cache 是什么？ [1]"
    result = answer("KV Cache 是什么？", searcher=searcher, model=ScriptedModel(reply), settings=settings)
    first = result.passages[0]
    assert result.quoted and not result.refused
    assert result.reason == "the model only repeated headings; quoted [1]"
    assert result.text.startswith("笔记原文：") and [c.id for c in result.citations] == [first.chunk.id]


def test_a_pasted_heading_is_told_from_an_answer() -> None:
    def passage(n: int, *heading: str) -> prompt.Passage:
        chunk = Chunk(f"n.md#{n}", "n.md", 0, 10, ("n.md", *heading), "正文", True)
        return prompt.Passage(n, chunk, "正文")

    pasted = pasted_heading(
        [
            passage(1, "数据结构", "2. 平衡二叉树和红黑树"),
            passage(2, "3. 应用PEFT包装模型 (Wrap Model with PEFT):"),
            passage(3, "BERT 的 warm-up 策略是怎样的？为什么要这么做？"),
        ]
    )
    assert pasted("平衡二叉树和红黑树  应用PEFT包装模型 (Wrap Model with PEFT) ")  # two headings, pasted
    assert pasted("（数据结构 > 2. 平衡二叉树和红黑树）")  # the prompt's heading line, numbered
    assert pasted("为什么要这么做？")  # part of a question title
    assert not pasted("是的。")  # too short to tell
    assert not pasted("红黑树是一种弱平衡的二叉搜索树。")  # says something of its own
    assert not pasted("平衡二叉树和红黑树都是二叉搜索树。")


def test_a_quoted_passage_reads_as_markdown_and_keeps_the_notes_words() -> None:
    note = (
        "### 4. 异常值处理\n\n    18.  <u>什么是长度外推？</u>⭐\n\n    训练短、测试长。<br>\n\n"
        "    - 识别：Z-score\n      - 超过 3 倍\n    - 处理：盖帽\n\n"
        "    ```python\n    def f(x):\n        return x\n    ```\n   | a | b |\n   | - | - |"
    )
    assert prompt.readable(note).splitlines() == [
        "**4. 异常值处理**",
        "",
        "18.  什么是长度外推？⭐",
        "",
        "训练短、测试长。",
        "",
        "- 识别：Z-score",
        "  - 超过 3 倍",
        "- 处理：盖帽",
        "",
        "```python",
        "    def f(x):",
        "        return x",
        "```",
        "| a | b |",
        "| - | - |",
    ]
    chunk = Chunk("n.md#1", "n.md", 0, len(note), ("n.md", "x"), note, True)
    quoted = prompt.quote("什么是长度外推？", prompt.Passage(1, chunk, note))
    assert quoted.startswith("笔记原文：\n\n**4. 异常值处理**") and quoted.endswith("| - | - |\n\n[1]")
    plain = prompt.Passage(2, chunk, "训练短、测试长。")
    assert prompt.quote("What is it?", plain) == "From your notes: 训练短、测试长。 [2]"


def test_a_quote_shows_the_pieces_of_one_section_in_the_notes_order_without_repeating() -> None:
    """A long answer split into two chunks (same heading, overlapping): quoting the second piece shows the
    first too, in the notes' order, the overlap once, each stretch with its mark; other sections stay out."""
    note = "1. 建立评测集，抽 50-100 条样本。\n2. LLM-as-a-Judge 打分。\n3. ELO 竞技场两两盲测。\n"
    head = ("n.md", "7. 怎么挑 prompt")
    one = Chunk("n.md#7", "n.md", 0, 40, head, note[:40], True)
    two = Chunk("n.md#7~2", "n.md", 25, len(note), head, note[25:], True)
    other = Chunk("n.md#8", "n.md", 80, 90, ("n.md", "8. 别的"), "别的问题的答案。", True)
    shown = [prompt.Passage(1, two, two.text.strip()), prompt.Passage(2, one, one.text.strip())]
    shown.append(prompt.Passage(3, other, other.text))
    pieces = prompt.section(shown[0], shown)
    assert [p.n for p in pieces] == [1, 2]
    assert prompt.quote("怎么挑出最好的 prompt？", *pieces) == f"笔记原文：\n\n{note.strip()} [2] [1]"
    apart = prompt.Passage(2, one, "1. 建立评测集，抽 50-100 条样本。")  # no overlap: two stretches
    text = prompt.quote("怎么挑？", shown[0], apart)  # "2. " lies between them: "…" says words are left out
    assert text == f"笔记原文：\n\n1. 建立评测集，抽 50-100 条样本。 [2]\n\n…\n\n{two.text.strip()} [1]"
    whole = Chunk("n.md#7~3", "n.md", 0, len(note), head, note, True)
    next_line = prompt.Passage(1, whole, "2. LLM-as-a-Judge 打分。")  # only a line break between: no "…"
    assert prompt.quote("怎么挑？", next_line, apart).endswith("样本。 [2]\n\n2. LLM-as-a-Judge 打分。 [1]")
    stray = prompt.Passage(4, two, "不在这段笔记里的文字。")  # not the chunk's own text: a stretch of its own
    assert prompt.quote("怎么挑？", stray, apart).endswith("样本。 [2]\n\n…\n\n不在这段笔记里的文字。 [4]")
    assert prompt.quote("怎么挑？", shown[2]) == "笔记原文：别的问题的答案。 [3]"
    last = prompt.Passage(1, two, "3. ELO 竞技场两两盲测。")  # the notes' words between are left out: "…"
    assert prompt.quote("怎么挑？", apart, last).endswith("样本。 [2]\n\n…\n\n3. ELO 竞技场两两盲测。 [1]")


def test_a_quoted_section_cites_every_piece(tmp_path: Path) -> None:
    answer_text = "\n".join(f"{i}. 第{i}步：{'评测' * 30}要点{i}。" for i in range(1, 7))
    corpus = tmp_path / "notes"
    corpus.mkdir()
    (corpus / "n.md").write_text(f"# 笔记\n\n## 怎么挑出最好的 prompt\n\n{answer_text}\n", encoding="utf-8")
    settings = from_env(corpus=corpus, index=tmp_path / "ix", max_chars=250)
    searcher = Searcher(settings, warn=lambda _: None, embedder=HashEmbedder())  # type: ignore[arg-type]
    split = [c for c in searcher.index.chunks if c.has_answer]
    assert len(split) >= 2 and len({c.heading for c in split}) == 1  # one section in pieces
    settings = replace(settings, quote_above=1.01, n_passages=2)
    model = ScriptedModel("[1]")
    result = answer("怎么挑出最好的 prompt？", searcher=searcher, model=model, settings=settings)
    rest = "the rest of its section"
    assert result.quoted and result.reason == f"the model only pointed at [1]; quoted it (with [2], {rest})"
    assert sorted(c.n for c in result.citations) == [1, 2]
    assert {c.id for c in result.citations} == {p.chunk.id for p in result.passages}
    assert all(s.numbers for s in result.sentences)  # every sentence of the quote is a passage's
    assert "\n\n…\n\n" in result.text  # piece 2 of the section was not shown: its words are left out


def test_readable_keeps_comparisons_nesting_and_the_mark_outside_blocks() -> None:
    mask = "位置 j<i 的可见，其中 i>0；"
    assert prompt.readable(f"{mask}LoRA<br>QLoRA") == f"{mask}LoRA QLoRA"
    assert prompt.readable("```html\n<b>x</b>\n```") == "```html\n<b>x</b>\n```"
    assert prompt.readable("18.  问题\n    - 子项").splitlines() == ["18.  问题", "     - 子项"]
    chunk = Chunk("n.md#1", "n.md", 0, 9, ("n.md", "x"), "x", True)
    fenced = prompt.quote("代码？", prompt.Passage(1, chunk, "代码：\n```\nx = 1\n```"))
    assert fenced.endswith("```\n\n[1]")
    # a chunk that ends on an empty item (the notes' "- **3. 实战案例**" began the next section)
    ended = prompt.quote("方案？", prompt.Passage(1, chunk, "- 方案：\n  - i. ShardKV 切分 KV。\n-"))
    assert ended == "笔记原文：\n\n- 方案：\n  - i. ShardKV 切分 KV。 [1]"


def test_an_answer_from_outside_the_notes_is_refused(searcher: Searcher) -> None:
    invented = "涌现是指模型规模超过某个阈值后，突然出现小模型不具备的能力，比如思维链推理 [1]。"
    result = answer(
        "LLM 的涌现是什么",
        searcher=searcher,
        model=ScriptedModel(invented),
        settings=replace(searcher.settings, min_support=0.6),
    )
    assert result.refused and "not supported" in result.reason and result.diagnostics.generated == invented


def test_an_english_answer_to_chinese_notes_is_judged_across_languages(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overlap cannot judge a translation: an English sentence is supported by the evidence it is close to
    in meaning (e5 in use; here a stub that finds the ZeRO-3 evidence close) and moved to it."""
    import assistant.answer as answer_module

    def restates(_searcher: Searcher) -> Any:
        return lambda sentence, texts: [0.9 if "ZeRO-3 还切分" in t else 0.2 for t in texts]

    model = ScriptedModel(
        "ZeRO-3 切分什么？",  # the question in the notes' language, for searching
        "ZeRO-3 also partitions the model parameters, using the least memory [3].",
    )
    monkeypatch.setattr(answer_module, "_restates", restates)
    three = replace(searcher.settings, english_passages=3)  # a mark on [3] to move
    result = answer("What does ZeRO-3 partition?", searcher=searcher, model=model, settings=three)
    assert result.diagnostics.query == "ZeRO-3 切分什么？" and "Answer in English" in model.sent[1][-1][1]
    assert not result.refused and result.diagnostics.support < 0.45
    target = next(p.n for p in result.passages if "ZeRO-3 还切分" in p.text)
    assert [c.n for c in result.citations] == [target] and result.text.endswith(f"memory [{target}].")
    assert result.sentences[0].supported and result.sentences[0].moved == (target != 3)


def test_an_english_answer_close_to_no_evidence_is_not_shown_as_the_notes(searcher: Searcher) -> None:
    """With nothing close in meaning (the hash embedder), the English answer is the model's own."""
    model = ScriptedModel(
        "ZeRO-3 切分什么？", "ZeRO-3 partitions everything across the cluster with magic [1]."
    )
    result = answer("What does ZeRO-3 partition?", searcher=searcher, model=model)
    assert result.refused and "restates no evidence" in result.reason and not result.citations


def test_english_question_gets_the_english_rule_and_refusal(searcher: Searcher) -> None:
    model = ScriptedModel("The notes do not cover this.")
    off = replace(searcher.settings, translate="off")  # searched as asked: the model is asked once
    result = answer("How does gradient checkpointing work?", searcher=searcher, model=model, settings=off)
    assert result.refused and result.text == prompt.REFUSAL_EN
    assert "Answer in English" in model.sent[0][-1][1] and result.diagnostics.query == result.question
    user = model.sent[0][-1][1]  # framed in English: Chinese labels pulled half the answers into Chinese
    assert user.startswith("Question: How does") and user.endswith("\nAnswer:") and "问题" not in user


@pytest.mark.parametrize(
    ("reply", "searched"),
    [
        ("梯度检查点是如何工作的？", "梯度检查点是如何工作的？"),
        (
            "中文：梯度检查点是如何工作的？\n（说明）",
            "梯度检查点是如何工作的？",
        ),  # label and extra lines dropped
        ("How does gradient checkpointing work in practice?", "How does gradient checkpointing work?"),
        ("", "How does gradient checkpointing work?"),  # nothing usable: the question as asked
    ],
)
def test_an_english_question_is_searched_in_the_notes_language(
    searcher: Searcher, reply: str, searched: str
) -> None:
    model = ScriptedModel(reply, "The notes do not cover this.")
    result = answer("How does gradient checkpointing work?", searcher=searcher, model=model)
    assert result.diagnostics.query == searched and "translate" in result.diagnostics.timings_ms
    assert "英文：How does gradient checkpointing work?" in model.sent[0][-1][1]
    assert model.sent[1][-1][1].count("How does gradient checkpointing work?") == 2  # the prompt: as asked
    chinese = answer(
        "梯度检查点是如何工作的？", searcher=searcher, model=ScriptedModel("笔记中没有相关内容。")
    )
    assert (
        chinese.diagnostics.query == "梯度检查点是如何工作的？"
        and "translate" not in chinese.diagnostics.timings_ms
    )


def follow_up(searcher: Searcher, settings: Settings) -> tuple[Conversation, Answer, Answer, str]:
    """A question and its follow-up in one conversation; checks what every style shares (the rewrite,
    the shared prompt prefix); returns the chat, both answers and the follow-up's user message."""
    model = ScriptedModel(
        "ZeRO-2 切分优化器状态和梯度 [1]。",
        "ZeRO-3 和 ZeRO-2 的区别是什么？",
        "ZeRO-3 还切分模型参数，显存最省 [1]。",
    )
    chat = Conversation()
    first = chat.ask("ZeRO-2 切分什么？", searcher=searcher, model=model, settings=settings)
    second = chat.ask("那 ZeRO-3 呢？", searcher=searcher, model=model, settings=settings)
    assert (
        second.standalone_question == "ZeRO-3 和 ZeRO-2 的区别是什么？"
        and second.question == "那 ZeRO-3 呢？"
    )
    rewrite_request, final_prompt = model.sent[1], model.sent[2]
    assert rewrite_request[:3] == final_prompt[:3]  # same prefix: system + the first turn
    assert final_prompt[1:3] == list(Conversation.turn_of(first))
    assert not second.refused
    return chat, first, second, final_prompt[-1][1]


def test_follow_up_is_rewritten_and_extends_the_conversation(searcher: Searcher) -> None:
    chat, first, second, user = follow_up(searcher, searcher.settings)
    again = {p.chunk.id for p in first.passages} & {p.chunk.id for p in second.passages}
    assert again, "the follow-up should land on passages of the first turn"
    # every answer numbers its own evidence from [1] and shows it in full, also evidence seen before
    assert [p.n for p in second.passages] == list(range(1, len(second.passages) + 1))
    assert all(f"[{p.n}]（{p.heading}）\n{p.text}" in user for p in second.passages)
    assert all(c.id in {p.chunk.id for p in second.passages} for c in second.citations)
    chat.clear()
    assert chat.messages == [] and chat.known == []


def test_follow_up_in_the_window_style_refers_to_earlier_passages_by_number(searcher: Searcher) -> None:
    chat, first, second, user = follow_up(searcher, replace(searcher.settings, answer_style="window"))
    reused = [p for p in second.passages if p in first.passages]
    assert reused, "the follow-up should land on passages of the first turn"
    assert "前面的片段" in user and all(p.text not in user for p in reused)  # by number, not repeated
    assert {p.n for p in second.passages} >= {p.n for p in reused}
    assert all(c.id in {p.chunk.id for p in second.passages} for c in second.citations)
    chat.clear()
    assert chat.messages == [] and chat.known == []


def test_a_turn_refused_after_generation_keeps_what_the_model_saw(searcher: Searcher) -> None:
    invented = "涌现是指模型规模超过某个阈值后突然出现的能力，例如思维链推理。"
    model = ScriptedModel(invented, "KV Cache 是什么？", "推理时缓存历史 token 的 K 和 V [1]。")
    chat = Conversation()
    first = chat.ask("LLM 的涌现是什么", searcher=searcher, model=model)
    assert first.refused and first.diagnostics.generated == invented
    turn = Conversation.turn_of(first)
    assert turn[0] == model.sent[0][-1] and turn[1] == ("assistant", invented)
    chat.ask("那 KV Cache 呢？", searcher=searcher, model=model)
    assert model.sent[2][: len(model.sent[0])] == model.sent[0]  # the next prompt extends the refused one
    shown_before = {p.n for p in first.passages}
    assert shown_before <= {p.n for p in chat.known}  # numbers the history really shows


def test_the_cli_shows_each_source_as_a_short_excerpt_without_tags(
    searcher: Searcher, capsys: pytest.CaptureFixture[str]
) -> None:
    from ui.cli import print_answer

    result = answer(
        "KV Cache 是什么？", searcher=searcher, model=ScriptedModel("推理时缓存历史 token 的 K 和 V [1]。")
    )
    first = replace(
        result.passages[0], text="4. <u>KV Cache 是什么？</u>\n\n    推理时缓存历史 token 的 K 和 V。"
    )
    print_answer(replace(result, passages=[first, *result.passages[1:]]))
    shown = capsys.readouterr().out
    assert "      4. KV Cache 是什么？ 推理时缓存历史 token 的 K 和 V。" in shown and "<u>" not in shown
    assert "as checked" not in shown  # the streamed text was the answer


def test_the_cli_shows_the_checked_answer_when_the_check_left_lines_out(
    searcher: Searcher, capsys: pytest.CaptureFixture[str]
) -> None:
    from ui.cli import print_answer

    reply = "（注意力机制 > 4. KV Cache 是什么？）\n推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。"
    print_answer(answer("KV Cache 是什么？", searcher=searcher, model=ScriptedModel(reply)))
    shown = capsys.readouterr().out
    assert "as checked against your notes:\n推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。" in shown


def test_an_english_question_over_chinese_notes_gets_at_most_english_passages(searcher: Searcher) -> None:
    english = answer(
        "What does ZeRO-3 partition?",
        searcher=searcher,
        model=ScriptedModel("ZeRO-3 切分什么？", "ZeRO-3 also partitions the parameters [1]."),
    )
    chinese = answer(
        "ZeRO-3 切分什么？", searcher=searcher, model=ScriptedModel("ZeRO-3 还切分模型参数 [1]。")
    )
    assert len(english.passages) == searcher.settings.english_passages == 2 < len(chinese.passages) == 3


def test_a_question_of_several_parts_is_shown_one_passage_more(searcher: Searcher) -> None:
    reply = "ZeRO-3 还切分模型参数 [1]。"
    one = answer("ZeRO-3 切分什么？", searcher=searcher, model=ScriptedModel(reply))
    two = answer("ZeRO-3 切分什么？通信量有多大？", searcher=searcher, model=ScriptedModel(reply))
    assert len(one.passages) == searcher.settings.n_passages == 3
    assert len(two.passages) == searcher.settings.part_passages == 4
    window = answer(
        "ZeRO-3 切分什么？通信量有多大？",
        searcher=searcher,
        model=ScriptedModel(reply),
        settings=replace(searcher.settings, answer_style="window"),
    )
    assert len(window.passages) == 3  # the earlier prompt keeps its number


def test_the_atoms_of_a_passage_are_embedded_once_per_answer(searcher: Searcher) -> None:
    similar, atoms = _similar(searcher), ["KV Cache 缓存 K 和 V。", "用显存换时间。"]
    embedder = searcher.embedder
    before = embedder.calls  # type: ignore[attr-defined]
    first = similar("What does the KV cache store?", atoms)
    again = similar("Why is it faster?", atoms)  # the next part of the question: same atoms
    assert embedder.calls - before == len(atoms)  # type: ignore[attr-defined]
    assert len(first) == len(again) == 2 and list(first) != list(again)
