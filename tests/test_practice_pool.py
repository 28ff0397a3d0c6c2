"""The question pool on the test notes (headings, bold, numbered, a question bank) and answerability with
the deterministic hash embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.retrieval import Searcher
from assistant.settings import Settings, from_env, index_settings
from ingest.chunk import atoms, chunk_note, windows
from ingest.load import load_notes
from practice import answerable, grade
from practice.pool import Card, card_id, normalize, pool, select
from retriever import index as index_
from tests.conftest import HashEmbedder

BANK = """大模型面试清单(5题)

注意力

- 1. 什么是 Self-Attention？它的计算公式是什么?
- 2. 为什么要除以根号 d_k？
- 3. ？

并行训练

- 4. ZeRO-3 和 ZeRO-2 有什么区别?
- 5. 什么是 MoE 的负载均衡损失？
"""


def cards_of(folder: Path) -> list[Card]:
    return pool([c for note in load_notes(folder) for c in chunk_note(note)])


@pytest.fixture
def bank(notes: Path) -> Path:
    (notes / "bank.md").write_text(BANK, encoding="utf-8")
    return notes


def test_every_question_of_the_notes_is_one_card(bank: Path) -> None:
    by_question = {c.question: c for c in cards_of(bank)}
    assert set(by_question) == {
        "什么是 Self-Attention？它的计算公式是什么?",  # bank lines: one card each
        "为什么要除以根号 d_k？",
        "ZeRO-3 和 ZeRO-2 有什么区别?",
        "什么是 MoE 的负载均衡损失？",
        "如何让llm具备工具调用能力",  # bold titles
        "什么是LLM的涌现",
        "ZeRO-3 和 ZeRO-2 的区别",
        "什么是 Self-Attention？",  # markdown headings (and "为什么要除以根号 d_k？" again)
        "Flash Attention 的原理",
        "KV Cache 是什么？",
        "RAG切分方法",  # numbered question with an indented answer, no question word
        "RAG有什么缺点？",  # <u> removed
        "LayerNorm 和 RMSNorm 的区别？",
        "7B 模型推理要多少显存？",  # the GBK note
    }
    assert len([c for c in cards_of(bank) if c.question == "为什么要除以根号 d_k？"]) == 2  # two files
    assert (
        by_question["如何让llm具备工具调用能力"].own_answer
        and not by_question["如何让llm具备工具调用能力"].bank
    )
    assert not by_question["什么是LLM的涌现"].own_answer  # its answer is a lone "？"
    assert not by_question["Flash Attention 的原理"].own_answer
    bank_line = by_question["ZeRO-3 和 ZeRO-2 有什么区别?"]
    assert bank_line.bank and not bank_line.own_answer and bank_line.heading[-1] == "并行训练"


def test_a_card_points_at_its_question_line(bank: Path) -> None:
    for card in cards_of(bank):
        if card.source == "gbk.md":
            continue
        text = (bank / card.source).read_text(encoding="utf-8")
        assert normalize(text[card.start : card.end]) == normalize(card.question), card
        assert "\n" not in text[card.start : card.end]
        assert card.where.endswith(f"· {card.source} characters {card.start}–{card.end}")  # not lines


def test_statements_placeholders_and_sections_are_not_questions(bank: Path) -> None:
    questions = " ".join(c.question for c in cards_of(bank))
    for not_a_question in ("先定模型规模", "再选 batch size", "注意力机制", "归一化", "并行训练", "面试清单"):
        assert not_a_question not in questions


def test_card_ids_survive_a_move_and_deleted_questions_retire(bank: Path) -> None:
    before = {c.question: c.id for c in cards_of(bank)}
    heading = bank / "heading.md"
    text = heading.read_text(encoding="utf-8")
    kv = "## 4. KV Cache 是什么？\n\n推理时缓存历史 token 的 K 和 V，避免重复计算，用显存换时间。\n"
    gone = (
        "## 2. 为什么要除以根号 d_k？\n\n"
        "点积的方差随维度 d_k 增大，除以 √d_k 防止 softmax 进入饱和区导致梯度消失。\n\n"
    )
    assert kv in text and gone in text
    heading.write_text(kv + "\n" + text.replace(kv, "").replace(gone, ""), encoding="utf-8")
    after = {c.id: c for c in cards_of(bank)}
    assert before["KV Cache 是什么？"] in after  # moved to the top of its file: same card
    assert card_id("heading.md", "为什么要除以根号 d_k？") not in after  # deleted: retired
    assert card_id("bank.md", "为什么要除以根号 d_k？") in after  # the same question in another file stays


def test_card_ids_ignore_numbering_and_markup_but_not_the_file() -> None:
    assert normalize("12. <u>什么是 KV-Cache？</u>⭐") == "什么是kvcache"
    assert card_id("a.md", "1. 什么是 KV Cache？") == card_id("a.md", "**什么是KV cache?**")
    assert card_id("a.md", "什么是 KV Cache？") != card_id("b.md", "什么是 KV Cache？")


TWO_LISTS = """小黄的面试目录

Normalization面试清单(2题)

基础理论

- 1. LayerNorm的计算公式是什么?
- 2. RMSNorm相比LayerNorm有什么特点?

大模型(LLMs)评测面

基础理论

- 1. 大模型评测有哪些常用基准?
- 2. 如何评估大模型的幻觉?
"""


def test_bank_cards_take_the_title_of_their_list(notes: Path) -> None:
    # both lists reuse the subheading "基础理论": the list title, not the subheading, tells them apart
    (notes / "lists.txt").write_text(TWO_LISTS, encoding="utf-8")
    topics = {c.question: c.topic for c in cards_of(notes) if c.source == "lists.txt"}
    assert topics == {
        "LayerNorm的计算公式是什么?": "Normalization面试清单",  # a title that counts its questions
        "RMSNorm相比LayerNorm有什么特点?": "Normalization面试清单",
        "大模型评测有哪些常用基准?": "大模型(LLMs)评测面",  # a list starting again at 1 below two titles
        "如何评估大模型的幻觉?": "大模型(LLMs)评测面",
    }
    assert {c.topic for c in cards_of(notes) if c.source != "lists.txt" and not c.bank} == {""}


def test_select_by_file_heading_and_topic(bank: Path) -> None:
    cards = cards_of(bank)
    assert {c.source for c in select(cards, source="sub/*")} == {"sub/numbered.md"}
    assert {c.source for c in select(cards, source="bold.txt")} == {"bold.txt"}
    assert {c.question for c in select(cards, heading="并行")} == {
        "ZeRO-3 和 ZeRO-2 有什么区别?",
        "什么是 MoE 的负载均衡损失？",
    }
    zero = select(cards, chunks=set(), text="zero-3")
    assert {c.source for c in zero} == {"bold.txt", "bank.md"}
    rag = select(cards, chunks={c.chunk for c in cards if c.source == "sub/numbered.md"})
    assert {c.question for c in rag} == {"RAG切分方法", "RAG有什么缺点？"}


@pytest.fixture
def searcher(bank: Path, tmp_path: Path) -> Searcher:
    settings = from_env({}, corpus=bank, index=tmp_path / "index")
    return Searcher(settings, warn=lambda _: None, embedder=HashEmbedder())


def test_answerability_own_answers_bank_answers_and_gaps(searcher: Searcher) -> None:
    cards = {(c.source, c.question): c for c in pool(searcher.index.chunks)}

    def of(source: str, question: str) -> answerable.Answerability:
        return answerable.answerability(cards[source, question], searcher, answered_above=0.6)

    own = of("heading.md", "KV Cache 是什么？")
    assert (
        own.answered and own.confidence == 1.0 and [c.id for c in own.passages] == ["heading.md#注意力机制/4"]
    )
    bank_line = of("bank.md", "为什么要除以根号 d_k？")  # answered elsewhere in the notes
    assert bank_line.answered and bank_line.passages[0].id == "heading.md#注意力机制/2"
    assert 0.6 <= bank_line.confidence < 1.0
    gap = of("bank.md", "什么是 MoE 的负载均衡损失？")
    assert not gap.answered and gap.passages == () and gap.closest is not None and gap.confidence < 0.6
    unanswered = of("bold.txt", "什么是LLM的涌现")  # its own passage holds only "？"
    assert not unanswered.answered and unanswered.closest is not None
    assert unanswered.closest.id != "bold.txt#2"  # never its own "？" passage
    stricter = answerable.answerability(
        cards["bank.md", "为什么要除以根号 d_k？"], searcher, answered_above=0.99
    )
    assert not stricter.answered and stricter.closest == bank_line.closest


SIBLINGS = """分布式训练面(3题)

DataParallel

- 1. nn.DataParallel 的缺点是什么?
 - 单进程多线程，受 GIL 限制
 - 每个 step 都要复制模型
- 2. 为什么需要 nn.DataParallel?

显存面(1题)

- 1. nn.DataParallel 为什么显存不均衡?
"""


def test_a_bank_card_is_not_answered_by_its_own_list(notes: Path, tmp_path: Path) -> None:
    # question 1's outline answers question 1, not its sibling question 2 of the same list
    (notes / "siblings.txt").write_text(SIBLINGS, encoding="utf-8")
    settings = from_env({}, corpus=notes, index=tmp_path / "index")
    searcher = Searcher(settings, warn=lambda _: None, embedder=HashEmbedder())
    cards = {c.question: c for c in pool(searcher.index.chunks) if c.source == "siblings.txt"}
    outline = cards["nn.DataParallel 的缺点是什么?"].chunk
    sibling = answerable.answerability(cards["为什么需要 nn.DataParallel?"], searcher, answered_above=0.0)
    assert sibling.closest is not None and sibling.closest.id != outline
    assert all(c.source != "siblings.txt" for c in sibling.passages)
    other_list = answerable.answerability(
        cards["nn.DataParallel 为什么显存不均衡?"], searcher, answered_above=0.0
    )
    assert other_list.closest is not None and other_list.closest.id == outline  # another list may use it


def test_any_question_can_be_checked(searcher: Searcher) -> None:
    found = answerable.for_question("ZeRO-2 和 ZeRO-3 的区别是什么", searcher, answered_above=0.5)
    assert found.answered and found.passages[0].id == "bold.txt#3"


def test_a_topic_selects_the_cards_its_search_finds(searcher: Searcher) -> None:
    from practice import session

    topic = {c.question for c in session.cards(searcher, topic="ZeRO-3")}
    assert {"ZeRO-3 和 ZeRO-2 的区别", "ZeRO-3 和 ZeRO-2 有什么区别?"} <= topic
    assert "RAG有什么缺点？" not in topic
    only_bank = session.cards(searcher, source="bank.md", heading="注意力")
    assert [c.question for c in only_bank] == [
        "什么是 Self-Attention？它的计算公式是什么?",
        "为什么要除以根号 d_k？",
    ]


LONG = """# 训练技巧

## 常见超参数

- Weight Decay：通常固定在 0.1 左右，不随学习率缩放。
- Gradient Clipping：通常设为 1.0，训练不稳定时降到 0.5。
- Warmup：前 2000 步线性升高学习率，避免早期 Loss 震荡。
- Temperature：生成时温度越高随机性越大，温度为 0 总是同样的输出。
- AdamW 的 beta2 在超大规模训练中常设为 0.95。

| 参数 | 常用值 |
| --- | --- |
| batch | 4M tokens |
"""


def test_windows_are_whole_atoms_within_the_size() -> None:
    text = LONG.split("\n", 3)[3]  # the passage below its headings
    spans = atoms(text)
    starts, ends = {a for a, _ in spans}, {b for _, b in spans}
    cut = [text[a:b] for a, b in windows(text, 120)]
    assert len(cut) > 1
    at = 0
    for w in cut:  # in note order, each from an atom's start to an atom's end
        at = text.index(w, at)
        assert at in starts and at + len(w) in ends
        assert len(w) <= 120 or (at, at + len(w)) in spans  # longer only when it is one atom
        at += len(w)
    assert cut[-1].endswith("| batch | 4M tokens |")  # the table stays one piece
    assert windows("   ", 120) == [(0, 3)]


def test_closeness_finds_the_list_item_that_answers(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "long.md").write_text(LONG, encoding="utf-8")
    embedder = HashEmbedder()
    settings = index_settings(Settings(embed_model="hash-test"))
    index, _ = index_.ingest(notes, tmp_path / "ix", settings, embedder=lambda: embedder, warn=lambda _: None)
    (chunk,) = [c for c in index.chunks if "Temperature" in c.text]
    question = "Temperature：生成时温度越高随机性越大吗？"
    whole = float(embedder.passages([chunk.indexed])[0] @ embedder.query(question))
    calls = embedder.calls
    near, (a, b) = answerable.closest_window(question, chunk, index, embedder)
    assert near > whole + 0.05  # one item answers; the rest of the passage dilutes the whole's cosine
    assert "Temperature" in chunk.text[a:b] and len(chunk.text[a:b]) <= 120
    assert embedder.calls == calls  # the index's window vectors: nothing embedded again


def test_a_bank_card_answered_by_one_item_of_a_long_passage(bundled: Searcher) -> None:
    """Hand-checked (eval/data/coverage.jsonl, heldout2): the notes' list of generation parameters answers
    it in one item; against the whole passage its e5 cosine stays under the bar (0.895)."""
    question = "温度参数(Temperature)如何影响生成结果?"
    card = next(c for c in pool(bundled.index.chunks) if c.question == question)
    a = answerable.answerability(card, bundled, answered_above=bundled.settings.answered_above)
    assert a.answered and "大模型生成时的参数怎么设置" in a.passages[0].heading[-1]
    # graded on the temperature item, not on the beam width, top-p and top-k items after it
    assert a.focus is not None and a.passages[0].start <= a.focus[0] < a.focus[1] <= a.passages[0].end
    said = "温度用于调整抽样的随机程度，温度为 0 将始终产生相同的输出，设置越高随机性越大。"
    result = grade.grade(said, a.passages, embedder=bundled.embedder, question=question, focus=a.focus)
    points = result.covered + result.missed
    assert points and all("温度" in p.text or "Temperature" in p.text for p in points)
    assert result.rating in ("good", "easy") and not result.missed
    whole = grade.grade(said, a.passages, embedder=bundled.embedder, question=question)
    assert len(whole.covered + whole.missed) > len(points)  # without the focus: the whole list


def test_points_within_the_focus(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "long.md").write_text(LONG, encoding="utf-8")
    (chunk,) = [c for note in load_notes(notes) for c in chunk_note(note) if "Temperature" in c.text]
    points = grade.key_points([chunk])[0]
    at = chunk.text.index("Temperature")
    focus = (chunk.start + at, chunk.start + at + 40)
    assert [p.text for p in grade.within(points, chunk, focus)] == [
        p.text for p in points if "Temperature" in p.text
    ]
    assert grade.within(points, chunk, None) == points
    assert grade.within(points, chunk, (chunk.end + 10, chunk.end + 20)) == points  # none inside: all


def test_a_focus_past_the_first_key_points_grades_on_its_own_sentence(tmp_path: Path) -> None:
    items = "".join(f"- 第{n}条：技巧{n}的作用是让训练第{n}阶段更稳定。\n" for n in range(1, 10))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "tips.md").write_text(f"# 训练技巧\n\n{items}", encoding="utf-8")
    (chunk,) = [c for note in load_notes(notes) for c in chunk_note(note)]
    points = grade.key_points([chunk])[0]
    assert len(points) == 6 and "第9条" not in "".join(p.text for p in points)
    at = chunk.text.index("第9条")
    (only,) = grade.within(points, chunk, (chunk.start + at, chunk.start + at + 10))
    assert "第9条" in only.text
