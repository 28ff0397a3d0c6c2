"""`mianjing ask` end to end: plumbing with the small SmolLM2 GGUF, quality with the bundled 1.5B model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assistant import cite
from assistant.answer import Answer, Conversation, answer
from assistant.cite import is_english
from assistant.llm import Generator
from assistant.retrieval import Searcher
from assistant.settings import BUNDLED_CORPUS
from eval.dataset import load_dataset, relevant
from eval.generation import plain
from eval.metrics import key_point_recall
from tests.conftest import cli
from tests.test_llm import smol_gguf  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "notes"


def test_ask_json_and_questions_file_with_a_small_gguf(smol_gguf: Path, tmp_path: Path) -> None:  # noqa: F811
    env = {
        "MIANJING_CORPUS": str(FIXTURES),
        "MIANJING_INDEX": str(tmp_path / "ix"),
        "MIANJING_LLM_THREADS": "1",
        "MIANJING_LLM": str(smol_gguf),
    }
    out = cli("ask", "KV Cache 是什么？", "--json", env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {
        "question",
        "standalone_question",
        "answer",
        "refused",
        "citations",
        "passages",
        "timings_ms",
        "tokens_per_s",
    }
    assert result["passages"] and result["passages"][0].endswith("#注意力机制/4")
    assert set(result["timings_ms"]) >= {"retrieve", "first_token", "total"}
    assert all(c["id"] in result["passages"] for c in result["citations"])
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "LoRA 怎么用？"}\n{"question": "What is DoRA?"}\n', encoding="utf-8")
    out = cli("ask", "--questions", str(questions), "--json", env=env)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["question"] for r in lines] == ["LoRA 怎么用？", "What is DoRA?"]
    assert lines[1]["refused"] and lines[1]["answer"] == "The notes do not cover this."


def test_ask_with_a_missing_model_is_one_line_and_search_still_works(tmp_path: Path) -> None:
    env = {
        "MIANJING_CORPUS": str(FIXTURES),
        "MIANJING_INDEX": str(tmp_path / "ix"),
        "MIANJING_LLM": str(tmp_path / "absent.gguf"),
    }
    out = cli("ask", "KV Cache 是什么？", env=env)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith(
        "mianjing: error: model file"
    )
    assert cli("search", "KV Cache", "--json", env=env).returncode == 0


@pytest.fixture(scope="module")
def qwen(bundled: Searcher) -> Generator:
    return Generator.of(bundled.settings)


# Dev questions the 1.5B answers with a relevant citation and all key points, evidence-first (README,
# "Answers"); ids from eval/data/dev.jsonl.
ANSWERABLE = ("d086", "d094", "d115")
ENGLISH = "d135"  # "How can an LLM be given tool-calling ability?": in English from the Chinese notes
UNANSWERABLE = "d190"  # Python generators: not term-gated, so the model answers and the support gate refuses


def dev_items() -> dict[str, object]:
    items, _ = load_dataset(REPO / "eval" / "data" / "dev.jsonl", BUNDLED_CORPUS)
    return {item.id: item for item in items}


def marks_have_targets(result: Answer) -> bool:
    named = [n for m in cite.MARK.finditer(result.text) for n in cite.numbers(m.group(1))]
    return all(n in {p.n for p in result.passages} for n in named)


@pytest.mark.parametrize("item_id", ANSWERABLE)
def test_bundled_model_answers_with_a_relevant_citation(
    bundled: Searcher, qwen: Generator, item_id: str
) -> None:
    item: Any = dev_items()[item_id]
    result = answer(item.question, searcher=bundled, model=qwen, settings=bundled.settings)
    assert not result.refused, result.reason
    assert result.citations and {c.id for c in result.citations} <= {p.chunk.id for p in result.passages}
    assert any(relevant(item, c.source, c.start, c.end) for c in result.citations)
    assert key_point_recall(plain(result.text), item.key_points) >= 0.5, result.text
    assert marks_have_targets(result) and [p.n for p in result.passages] == [1, 2, 3]


def test_bundled_model_answers_an_english_question_from_chinese_notes(
    bundled: Searcher, qwen: Generator
) -> None:
    item: Any = dev_items()[ENGLISH]
    result = answer(item.question, searcher=bundled, model=qwen, settings=bundled.settings)
    assert not result.refused and result.citations and is_english(result.text), result.text
    assert any(relevant(item, c.source, c.start, c.end) for c in result.citations)
    assert all(s.supported for s in result.sentences if s.numbers) and marks_have_targets(result)


def test_bundled_model_refuses_what_the_notes_do_not_cover(bundled: Searcher, qwen: Generator) -> None:
    item = dev_items()[UNANSWERABLE]
    result = answer(item.question, searcher=bundled, model=qwen, settings=bundled.settings)  # type: ignore[attr-defined]
    assert result.refused and result.pointers


def test_bundled_model_follow_up_is_rewritten(bundled: Searcher, qwen: Generator) -> None:
    chat = Conversation()
    options = bundled.settings
    chat.ask("ZeRO-2 对哪些状态做了分片？", searcher=bundled, model=qwen, settings=options)
    second = chat.ask("那 ZeRO-3 呢？", searcher=bundled, model=qwen, settings=options)
    assert second.standalone_question != "那 ZeRO-3 呢？" and "ZeRO" in second.standalone_question
