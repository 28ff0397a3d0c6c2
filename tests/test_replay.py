"""eval.replay: a stored run played back through today's pipeline, with the stored answers as the model's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.retrieval import Searcher
from assistant.settings import from_env
from eval import replay
from eval.dataset import Item, Span
from tests.conftest import HashEmbedder

QUESTION = "为什么要除以根号 d_k？"
POINTS = (("饱和区",), ("梯度消失",))


@pytest.fixture
def searcher(notes: Path, tmp_path: Path) -> Searcher:
    settings = from_env(corpus=notes, index=tmp_path / "ix")
    return Searcher(settings, warn=lambda _: None, embedder=HashEmbedder())  # type: ignore[arg-type]


def test_a_replay_reproduces_the_stored_verdict_and_measures_a_rule_change(searcher: Searcher) -> None:
    item = Item("x1", QUESTION, "paraphrase", (Span("a.md", 0, 1),), key_points=POINTS)
    thin = "防止梯度消失 [1]。"  # the model's stored answer: one clause of the notes' answer
    passages = [c.chunk.id for c in searcher.search(QUESTION).hits if c.chunk.has_answer][:3]
    row = {"id": "x1", "answer": thin, "key_point_recall": 0.5, "refused": False, "quoted": False}
    row["passages"] = passages
    # the rule off (as when the run was stored): the stored verdict comes back
    off = replace(searcher.settings, quote_thin=0)
    [same] = replay.replay([row], {"x1": item}, searcher, replay.Stored(), off)
    assert same["replayed"] == same["stored"] == 0.5 and not same["quoted"] and same["same_passages"]
    assert same["text"] == thin
    # the rule on: the thin answer is replaced by the notes' evidence, which states both points
    [moved] = replay.replay([row], {"x1": item}, searcher, replay.Stored(), searcher.settings)
    assert moved["quoted"] and moved["replayed"] == 1.0 and moved["text"].startswith("笔记原文：")
    lines = replay.summary([moved])
    assert lines[0] == "key-point recall, 1 answerable: stored 0.5000 -> replayed 1.0000"
    assert any(line.startswith("  x1: 0.50 -> 1.00, quoted (the answer left out") for line in lines)
    # what its citations are measured by: the quote cites evidence [1]; relevant where the item's quote is
    first = next(h.chunk for h in searcher.search(QUESTION).hits if h.chunk.id == passages[0])
    there = replace(item, spans=(Span(first.source, first.start, first.end),))
    [cited] = replay.replay([row], {"x1": there}, searcher, replay.Stored(), searcher.settings)
    assert cited["grounded"] and not moved["grounded"] and cited["without"] == 0
    assert replay.summary([cited])[2] == (
        "grounded 0 -> 1 of 1; citation precision none -> 1.000 (1); marks without a target 0 -> 0"
    )  # the stored row had no figures; the quote's sentences are the evidence they cite
    # a set of unanswerable questions alone (`--dataset`): its refusals and what moved are still reported
    other = {**moved, "id": "u1", "answerable": False, "stored": 0.0, "replayed": 0.0, "refused": True}
    lines = replay.summary([other])
    assert lines[:2] == [
        "no answerable item replayed",
        "answerable refused 0 -> 0; unanswerable refused 0 -> 1 of 1",
    ]
    assert lines[2].startswith("  u1: 0.00 -> 0.00, refused")  # no grounded line without answerable items


def test_a_stored_run_without_answers_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert replay.main([str(tmp_path), "--out", str(tmp_path / "gone" / "r.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert replay.main([str(tmp_path), "--dataset", str(tmp_path / "none.jsonl")]) == 2
    assert capsys.readouterr().err == f"mianjing: no question set at {tmp_path / 'none.jsonl'}\n"
    (tmp_path / "metrics.json").write_text(json.dumps({"modes": {}}), encoding="utf-8")
    assert replay.main([str(tmp_path)]) == 2
    assert "has no generated answers" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="translate"):
        replay.Stored().complete([("user", "Why?")])
