"""Grading: the empty answer, the lexical fallback, a scripted model (key points cached, verdicts parsed,
parse failures falling back), and answers in another language."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.chunk import Chunk
from practice import grade, points
from practice.points import PointCache, key_points, sentence_points

TEXT = (
    "**3、ZeRO-3 和 ZeRO-2 的区别**\n\n"
    "ZeRO-2 切分优化器状态和梯度。ZeRO-3 还切分模型参数，显存最省。但 ZeRO-3 的通信量更大。"
)
PASSAGE = Chunk(
    "bold.txt#3", "bold.txt", 100, 100 + len(TEXT), ("bold.txt", "3、ZeRO-3 和 ZeRO-2 的区别"), TEXT, True
)


class ScriptedModel:
    """Answers from a list, in order; counts the calls."""

    name = "scripted"

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.calls: list[list[tuple[str, str]]] = []

    def complete(self, messages: list[tuple[str, str]]) -> str:
        self.calls.append(messages)
        return self.replies.pop(0)


class Refuses:
    name = "refuses"

    def complete(self, messages: list[tuple[str, str]]) -> str:
        raise AssertionError("the model must not be called")


def test_the_sentence_points_quote_the_notes_exactly() -> None:
    found = sentence_points(PASSAGE)
    assert [p.text for p in found] == [
        "ZeRO-2 切分优化器状态和梯度。",
        "ZeRO-3 还切分模型参数，显存最省。",
        "但 ZeRO-3 的通信量更大。",
    ]
    for p in found:
        assert TEXT[p.start - PASSAGE.start : p.end - PASSAGE.start] == p.quote
        assert p.chunk == "bold.txt#3"


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   ",
        "不知道",
        "不知道。",
        "I don't know",
        "idk",
        "？？",
        "不太清楚",
        "不记得了",
        "我忘了",
        "这题没印象",
        "Sorry, I can't remember this one.",
        "I do not recall",
    ],
)
def test_no_answer_is_again_without_the_model(answer: str, tmp_path: Path) -> None:
    result = grade.grade(answer, [PASSAGE], model=Refuses(), cache=PointCache(tmp_path, "refuses"))
    assert result.rating == "again" and result.method == "none" and not result.covered
    assert len(result.missed) == 3 and result.notes_answer == TEXT


def test_lexical_grades_full_partial_and_wrong_answers() -> None:
    full = grade.grade(
        "ZeRO-2 切分优化器状态和梯度，ZeRO-3 还切分模型参数、最省显存，不过通信量更大。", [PASSAGE]
    )
    assert full.rating in ("good", "easy") and full.method == "lexical" and len(full.covered) == 3
    partial = grade.grade("ZeRO-3 会切分模型参数。", [PASSAGE])
    assert partial.rating == "hard" and len(partial.covered) < 3
    wrong = grade.grade("它们是两种学习率调度策略，和显卡没有关系。", [PASSAGE])
    assert wrong.rating == "again" and not wrong.covered
    assert [p.quote for p in wrong.missed] == [p.quote for p in sentence_points(PASSAGE)]


def test_a_partial_answer_in_its_own_words_is_hard_not_again() -> None:
    # it covers no point by overlap (a few words of two long sentences), but what it says is in the notes
    partial = grade.grade("ZeRO-3 省显存，但是通信多。", [PASSAGE])
    assert partial.rating == "hard" and partial.covered == [] and "in the notes" in partial.reason
    wrong = grade.grade("ZeRO 是一种学习率预热方法，和显存无关。", [PASSAGE])  # the topic's words only
    assert wrong.rating == "again"


def test_rate_maps_coverage_to_fsrs_ratings() -> None:
    assert [grade.rate(n, 4)[0] for n in range(5)] == ["again", "hard", "good", "good", "easy"]
    assert [grade.rate(n, 6)[0] for n in (1, 2, 5)] == ["again", "hard", "easy"]
    assert grade.rate(4, 4, contradicted=1) == (
        "hard",
        "covered 4 of 4 key points; 1 contradicted by the notes",
    )
    assert grade.rate(0, 0)[0] == "again"


def test_a_scripted_model_extracts_points_once_and_grades(tmp_path: Path) -> None:
    extract = "要点：ZeRO-2 切分优化器状态和梯度\n要点：ZeRO-3 还切分模型参数\n要点：量子计算让训练快十倍\n"
    model = ScriptedModel(extract, "1: covered\n2: contradicted", "1: missed\n2: covered")
    cache = PointCache(tmp_path, model.name)
    first = grade.grade(
        "ZeRO-2 切分优化器状态和梯度；ZeRO-3 不切分参数。", [PASSAGE], model=model, cache=cache
    )
    assert first.method == "model" and [p.text for p in first.covered] == ["ZeRO-2 切分优化器状态和梯度"]
    assert [p.text for p in first.contradicted] == ["ZeRO-3 还切分模型参数"]  # the invented point was dropped
    assert first.rating == "hard" and "contradicted" in first.reason
    assert first.contradicted[0].quote == "ZeRO-3 还切分模型参数，显存最省。"  # cited by its sentence
    again = grade.grade(
        "ZeRO-3 切分模型参数。", [PASSAGE], model=model, cache=PointCache(tmp_path, model.name)
    )
    assert len(model.calls) == 3  # the key points came from the cache file the second time
    assert again.rating == "good" and (tmp_path / "practice").is_dir()


def test_an_unparsable_model_falls_back_and_says_so(tmp_path: Path) -> None:
    model = ScriptedModel("Sure! The passage is about ZeRO.", "it is mostly right")
    result = grade.grade(
        "ZeRO-3 还切分模型参数，显存最省", [PASSAGE], model=model, cache=PointCache(tmp_path, "m")
    )
    assert result.method == "lexical" and len(result.failures) == 2
    assert "no usable 要点 line" in result.failures[0] and "labels 0 of 3 points" in result.failures[1]
    assert [p.text for p in result.covered] == ["ZeRO-3 还切分模型参数，显存最省。"]


def test_cache_keys_follow_the_passage_text(tmp_path: Path) -> None:
    cache = PointCache(tmp_path, "m")
    model = ScriptedModel("要点：ZeRO-2 切分优化器状态和梯度", "要点：ZeRO-2 切分优化器状态和梯度")
    points.model_points(PASSAGE, model, cache)
    edited = Chunk(
        PASSAGE.id, PASSAGE.source, 0, 0, PASSAGE.heading, TEXT + "ZeRO-1 只切分优化器状态。", True
    )
    points.model_points(edited, model, cache)
    points.model_points(PASSAGE, model, PointCache(tmp_path, "m"))
    assert len(model.calls) == 2


class SameVector:
    """Every text gets the same vector: any two texts have cosine 1."""

    def passages(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 4), np.float32) / 2

    def query(self, text: str) -> np.ndarray:
        return np.ones(4, np.float32) / 2


def test_an_answer_in_another_language_is_judged_by_embedding() -> None:
    answer = "ZeRO-2 shards optimizer states and gradients; ZeRO-3 also shards the parameters."
    assert grade.grade(answer, [PASSAGE]).method == "lexical"  # overlap alone: only the shared terms
    result = grade.grade(answer, [PASSAGE], embedder=SameVector())
    assert result.method == "embedding" and result.rating == "good" and len(result.covered) == 3


def test_grading_needs_a_passage_with_sentences() -> None:
    with pytest.raises(ValueError, match="no answering passage"):
        grade.grade("x", [])
    bare = Chunk("a#1", "a", 0, 9, ("a", "1. 什么？"), "1. 什么？", True)
    with pytest.raises(ValueError, match="no sentence to grade against"):
        grade.grade("something", [bare])
    assert key_points([bare]) == ([], [])


def test_a_point_that_only_restates_the_title_is_dropped_and_bullets_under_a_header_count() -> None:
    bullets = "* BN：同一个批次内，所有样本在同一个特征维度上做标准化\n* LN：同一个样本内，所有特征做标准化"
    text = f"**9、BN和LN的区别**\n\n{bullets}"
    chunk = Chunk("n.md#9", "n.md", 0, len(text), ("n.md", "9、BN和LN的区别"), text, True)
    raw = f"要点：BN和LN的区别\n\n{bullets}"
    found = points.parse(raw, chunk)
    assert [p.text[:2] for p in found] == ["BN", "LN"]  # the title line is not a point
    assert points.parse("* BN：同一个批次内，所有样本在同一个特征维度上做标准化", chunk) == []  # no header


def test_a_model_calling_a_wrong_answer_covered_is_not_believed(tmp_path: Path) -> None:
    extract = "要点：ZeRO-2 切分优化器状态和梯度\n要点：ZeRO-3 还切分模型参数\n"
    model = ScriptedModel(extract, "1: covered\n2: covered", "1: covered\n2: covered")
    cache = PointCache(tmp_path, model.name)
    wrong = grade.grade("两者完全一样，都只是数据并行。", [PASSAGE], model=model, cache=cache)
    assert wrong.method == "model" and wrong.covered == [] and wrong.rating == "again"
    answer = "ZeRO-2 切分优化器状态和梯度，ZeRO-3 还切分模型参数。"
    right = grade.grade(answer, [PASSAGE], model=model, cache=cache)
    assert len(right.covered) == 2 and right.rating == "easy"
