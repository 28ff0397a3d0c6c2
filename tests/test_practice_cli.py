"""`mianjing practice` and `mianjing coverage` end to end (subprocess, real e5, no language model: the
model setting names a missing file, so grading is lexical and says so)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from practice.pool import card_id
from tests.conftest import FIXTURES, cli
from ui.practice_cli import rating_of

BANK = """大模型面试清单(5题)

注意力

- 1. 什么是 Self-Attention？它的计算公式是什么?
- 2. 为什么要除以根号 d_k？

并行训练

- 4. ZeRO-3 和 ZeRO-2 有什么区别?
- 5. 什么是 MoE 的负载均衡损失？
"""
KV = card_id("heading.md", "KV Cache 是什么？")
KEYS = {"card", "question", "rating", "reason", "covered", "missed", "citations", "next_due"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Test notes with a question bank, indexed once for the module."""
    root = tmp_path_factory.mktemp("practice")
    shutil.copytree(FIXTURES, root / "notes")
    (root / "notes" / "bank.md").write_text(BANK, encoding="utf-8")
    env = {"MIANJING_CORPUS": str(root / "notes"), "MIANJING_INDEX": str(root / "index")}
    assert cli("ingest", env=env).returncode == 0
    return root / "notes", root / "index"


@pytest.fixture
def env(built: tuple[Path, Path], tmp_path: Path) -> dict[str, str]:
    """A copy of the index per test (the practice state lives in it)."""
    shutil.copytree(built[1], tmp_path / "index")
    return {
        "MIANJING_CORPUS": str(built[0]),
        "MIANJING_INDEX": str(tmp_path / "index"),
        "MIANJING_LLM": str(tmp_path / "no-model.gguf"),
    }


def run(*args: str, env: dict[str, str], stdin: str | None = None) -> tuple[int, str, str]:
    out = cli(*args, env=env, stdin=stdin)
    return out.returncode, out.stdout, out.stderr


def test_grade_a_card_saves_the_review_and_stats_count_it(env: dict[str, str]) -> None:
    code, out, err = run(
        "practice", "grade", KV, "--answer", "推理时缓存历史 token 的 K 和 V，避免重复计算", "--json", env=env
    )
    assert code == 0, err
    result = json.loads(out)
    assert KEYS <= set(result) and result["card"] == KV and result["rating"] in ("good", "easy")
    assert result["method"] == "embedding" or result["method"] == "lexical"
    assert result["next_due"] and "grading without a language model" not in err  # overlap grades: no model
    state = json.loads((Path(env["MIANJING_INDEX"]) / "practice.json").read_text(encoding="utf-8"))
    assert [log["card"] for log in state["logs"]] == [KV]
    code, _, err = run(
        "practice",
        "grade",
        KV,
        "--answer",
        "KV",
        "--no-save",
        "--json",
        env={**env, "MIANJING_GRADER": "model"},
    )
    assert code == 0 and "grading without a language model" in err  # the model asked for and missing: said
    code, out, _ = run("practice", "grade", KV, "--answer", "", "--no-save", "--json", env=env)
    assert json.loads(out)["rating"] == "again" and json.loads(out)["missed"]
    code, out, _ = run("practice", "stats", "--json", env=env)
    stats = json.loads(out)
    assert code == 0 and stats["reviewed"] == 1 and stats["cards"] == 14  # the --no-save grade was not kept


def test_a_rating_override_is_what_is_saved_and_printed(env: dict[str, str]) -> None:
    code, out, err = run("practice", "grade", KV, "--answer", "", "--rating", "good", "--json", env=env)
    assert code == 0, err
    result = json.loads(out)
    assert (result["rating"], result["graded"]) == ("good", "again")  # an empty answer grades again
    state = json.loads((Path(env["MIANJING_INDEX"]) / "practice.json").read_text(encoding="utf-8"))
    assert [(log["card"], log["rating"]) for log in state["logs"]] == [(KV, 3)]
    code, _, err = run("practice", "grade", "--question", "KV?", "--answer", "x", "--rating", "good", env=env)
    assert code == 2 and err.count("\n") == 1 and "--rating needs a card id" in err


def test_a_typed_rating_is_a_name_its_first_letter_or_its_number() -> None:
    assert [rating_of(t, "hard") for t in ("", " Good ", "e", "1", "4")] == [
        "hard",
        "good",
        "easy",
        "again",
        "easy",
    ]
    assert rating_of("bogus", "hard") is None and rating_of("5", "good") is None


def test_grade_any_question_against_retrieval_is_not_saved(env: dict[str, str]) -> None:
    env = {**env, "MIANJING_ANSWERED_ABOVE": "0.5"}
    code, out, err = run(
        "practice", "grade", "--question", "KV Cache 是什么？", "--answer", "不知道", "--json", env=env
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["rating"] == "again" and result["next_due"] is None and result["card"] is None
    assert result["citations"][0]["id"] == "heading.md#注意力机制/4"
    assert not (Path(env["MIANJING_INDEX"]) / "practice.json").exists()


def test_a_gap_is_not_graded_and_bad_input_is_one_line(env: dict[str, str]) -> None:
    strict = {**env, "MIANJING_ANSWERED_ABOVE": "0.999"}
    code, _, err = run(
        "practice", "grade", "--question", "什么是 MoE 的负载均衡损失？", "--answer", "x", env=strict
    )
    assert (
        code == 2
        and err.strip().startswith("mianjing: error: your notes hold no answer")
        and err.count("\n") == 1
    )
    code, _, err = run("practice", "grade", KV, env=env)
    assert code == 2 and "needs --answer" in err
    code, _, err = run("practice", "grade", "nope.md#0", "--answer", "x", env=env)
    assert code == 2 and "no card nope.md#0" in err


def test_next_gives_a_card_the_notes_answer(env: dict[str, str]) -> None:
    code, out, err = run("practice", "next", "--json", "--file", "bold.txt", env=env)
    assert code == 0, err
    card = json.loads(out)
    assert card["card"] == card_id("bold.txt", "如何让llm具备工具调用能力") and card["new"] is True
    assert card["passages"] == ["bold.txt#1"] and card["confidence"] == 1.0
    code, _, err = run("practice", "next", card["card"], env=env)  # a card id only grade takes
    assert code == 2 and err.count("\n") == 1 and "only practice grade takes a card id" in err


def test_interactive_practice_grades_overrides_and_saves(env: dict[str, str]) -> None:
    answers = "推理时缓存历史 token 的 K 和 V\nhrad\nhard\n"  # an answer, a typo asked again, then Ctrl-D
    code, out, err = run(
        "practice", "--heading", "注意力机制", "--file", "heading.md", stdin=answers, env=env
    )
    assert code == 0, err
    assert "问: 什么是 Self-Attention？" in out and "notes' answer:" in out and "saved: hard" in out
    assert "not a rating" in out
    state = json.loads((Path(env["MIANJING_INDEX"]) / "practice.json").read_text(encoding="utf-8"))
    assert [(log["card"], log["rating"]) for log in state["logs"]] == [
        (card_id("heading.md", "什么是 Self-Attention？"), 2)
    ]


def test_a_corrupted_state_is_reported_in_one_line(env: dict[str, str]) -> None:
    (Path(env["MIANJING_INDEX"]) / "practice.json").write_text("{broken", encoding="utf-8")
    code, _, err = run("practice", "stats", env=env)
    assert code == 2 and err.count("\n") == 1 and "kept aside as practice.json.bad-" in err
    assert len(list(Path(env["MIANJING_INDEX"]).glob("practice.json.bad-*"))) == 1


def test_coverage_lines_report_and_exports(env: dict[str, str], tmp_path: Path) -> None:
    strict = {**env, "MIANJING_ANSWERED_ABOVE": "0.999"}  # every bank question a gap
    code, out, err = run("coverage", "--json", "--out", str(tmp_path / "cov"), env=strict)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 14 and all(
        set(r) == {"card", "question", "source", "answered", "passage", "confidence"} for r in rows
    )
    assert [r["answered"] for r in rows[:6]] == [False] * 6 and all(r["answered"] for r in rows[6:])
    report = (tmp_path / "cov" / "report.md").read_text(encoding="utf-8")
    assert "**6 of 6 bank questions have no answer in your notes.**" in report
    page = (tmp_path / "cov" / "report.html").read_text(encoding="utf-8")
    assert "6 of 6 bank questions have no answer in your notes." in page and "<svg" in page
    assert len((tmp_path / "cov" / "coverage.jsonl").read_text(encoding="utf-8").splitlines()) == 14
    code, _, err = run(
        "practice",
        "export",
        "--anki",
        str(tmp_path / "d.apkg"),
        "--markdown",
        str(tmp_path / "d.md"),
        env=strict,
    )
    assert code == 0 and "wrote 8 cards" in err and (tmp_path / "d.apkg").stat().st_size > 0
    assert "## KV Cache 是什么？" in (tmp_path / "d.md").read_text(encoding="utf-8")
    code, _, err = run("practice", "export", "--markdown", str(tmp_path), env=strict)
    assert code == 2 and err.count("\n") == 1 and "is a folder: give a file name" in err
