"""`practice.session.prepare`: key points made while the person writes, so grading needs one model call."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from assistant.settings import Settings
from practice import session
from practice.answerable import Answerability
from practice.pool import Card
from tests.test_practice_grade import PASSAGE, ScriptedModel

CARD = Card(
    "bold.txt#3", "ZeRO-3 和 ZeRO-2 的区别", "bold.txt", PASSAGE.heading, 100, 120, PASSAGE.id, True, False
)
FOUND = Answerability(CARD, True, 1.0, (PASSAGE,), PASSAGE)


def test_prepared_key_points_leave_one_model_call_for_the_grade(tmp_path: Path) -> None:
    model = ScriptedModel(
        "要点：ZeRO-2 切分优化器状态和梯度\n要点：ZeRO-3 还切分模型参数\n", "1: covered\n2: missed"
    )
    settings = replace(Settings(), cache=tmp_path)
    session.prepare(FOUND, model=model, settings=settings)
    assert len(model.calls) == 1 and "要点" in model.calls[0][0][1]  # the extraction prompt
    searcher: Any = SimpleNamespace(embedder=None)
    result = session.grade_answer(
        FOUND, "ZeRO-2 切分优化器状态和梯度。", searcher=searcher, model=model, settings=settings
    )
    assert len(model.calls) == 2 and result.method == "model"  # only the verdict was asked for
    assert result.reason == "covered 1 of 2 key points" and [p.text for p in result.covered] == [
        "ZeRO-2 切分优化器状态和梯度"
    ]


def test_nothing_is_prepared_without_a_model_or_for_a_gap(tmp_path: Path) -> None:
    settings = replace(Settings(), cache=tmp_path)
    session.prepare(FOUND, model=None, settings=settings)
    gap = Answerability(CARD, False, 0.5, (), PASSAGE)
    session.prepare(gap, model=ScriptedModel(), settings=settings)  # no reply scripted: a call would fail
    assert not (tmp_path / "practice").exists()
