"""One Settings: every field is a variable, bad values are one-line errors, and no stage function carries
a default of its own that disagrees with the settings' defaults."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest

from assistant import llm
from assistant.answer import Conversation
from assistant.settings import ENV, Settings, from_env, generator_args, index_settings, search_args
from ingest.chunk import chunk_note
from retriever import rerank
from retriever.dense import SentenceEmbedder
from retriever.index import IndexSettings
from retriever.search import search
from tests.conftest import cli

DEFAULTS = Settings()


def defaults(function: Callable[..., object]) -> dict[str, object]:
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


GENERATOR = {"model": "llm", "base_url": "llm_base_url", "api_key": "llm_api_key", "threads": "llm_threads"}


@pytest.mark.parametrize(
    ("function", "names"),
    [
        (search, {name: name for name in search_args(DEFAULTS)}),
        (chunk_note, {"max_chars": "max_chars", "overlap": "overlap", "min_chars": "min_chars"}),
        (
            llm.Generator.__init__,
            {**{n: n for n in generator_args(DEFAULTS)}, **GENERATOR, "timeout": "llm_timeout"},
        ),
        (rerank.load_reranker, {"max_length": "rerank_max_length"}),
        (rerank.Reranker.__init__, {"max_length": "rerank_max_length"}),
        (SentenceEmbedder.__init__, {"threads": "threads", "batch_size": "embed_batch"}),
        (Conversation.__init__, {"keep": "history_turns"}),
    ],
)
def test_stage_defaults_agree_with_the_settings(
    function: Callable[..., object], names: dict[str, str]
) -> None:
    own = defaults(function)
    names = {param: field for param, field in names.items() if param != "cache_dir"}
    assert {param: own[param] for param in names} == {
        param: getattr(DEFAULTS, f) for param, f in names.items()
    }


def test_chunk_defaults_are_the_index_settings() -> None:
    assert {k: v for k, v in defaults(chunk_note).items()} == {
        k: getattr(index_settings(DEFAULTS), k) for k in ("max_chars", "overlap", "min_chars")
    }
    versions = {"tokenizer", "chunker", "window_chars"}  # the stages' own versions and sizes, not settings
    knobs = {f.name for f in fields(IndexSettings) if f.name not in versions}
    assert not knobs & set(defaults(IndexSettings))


def test_every_field_has_a_variable_and_values_parse() -> None:
    assert set(ENV.values()) == {f.name for f in fields(Settings)}
    s = from_env({"MIANJING_UNKNOWN_TERMS": "0.75", "MIANJING_MAX_TOKENS": "99", "MIANJING_INDEX": "~/ix"})
    assert (s.unknown_terms, s.max_tokens) == (0.75, 99) and s.index == Path("~/ix").expanduser()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MIANJING_K": "abc"}, "MIANJING_K=abc: not an integer"),
        ({"MIANJING_MIN_SUPPORT": "lots"}, "MIANJING_MIN_SUPPORT=lots: not a number"),
        ({"MIANJING_K": "0"}, "k must be at least 1"),
        ({"MIANJING_K": "-5"}, "k must be at least 1"),
        ({"MIANJING_MAX_CHARS": "0"}, "max_chars must be at least 1"),  # else chunking never ends
        ({"MIANJING_OVERLAP": "-1"}, "overlap must be at least 0"),
        ({"MIANJING_RRF_K": "-1"}, "rrf_k must be at least 0"),
        ({"MIANJING_UNANSWERED_WEIGHT": "nan"}, "unanswered_weight must be at least 0"),
        ({"MIANJING_LLM_TIMEOUT": "0"}, "llm_timeout must be more than 0"),
    ],
)
def test_bad_values_are_one_line_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_env(environ)


def test_cli_reports_a_bad_variable_in_one_line(tmp_path: Path) -> None:
    out = cli("search", "KV Cache", env={"MIANJING_K": "abc", "MIANJING_INDEX": str(tmp_path / "ix")})
    assert out.returncode == 2 and out.stderr.strip() == "mianjing: error: MIANJING_K=abc: not an integer"
    out = cli("search", "KV Cache", "-k", "-5", env={"MIANJING_INDEX": str(tmp_path / "ix")})
    assert out.returncode == 2 and "k must be at least 1" in out.stderr


@pytest.mark.parametrize(
    "args", [("ask", "--json"), ("ask", "", "--json"), ("ask", "  "), ("search", "", "--json")]
)
def test_an_empty_question_is_refused_before_anything_loads(args: tuple[str, ...], tmp_path: Path) -> None:
    out = cli(*args, env={"MIANJING_INDEX": str(tmp_path / "ix"), "MIANJING_LLM": str(tmp_path / "no.gguf")})
    assert out.returncode == 2 and "needs a" in out.stderr and not out.stdout
    assert not (tmp_path / "ix").exists()  # nothing was built for it


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"question": null}\n', ':1: "question" must be a non-empty string, not None'),
        (b'{"question": "ok"}\n{"q": 1}\n', ':2: not a JSON object with a "question" field'),
        (b"\x89PNG\r\n\x1a\n\xff\xfe", ": not UTF-8 text"),
        (b"\n  \n", ": no questions in it"),
    ],
)
def test_a_bad_questions_file_is_named_before_anything_loads(
    content: bytes, message: str, tmp_path: Path
) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_bytes(content)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# 显存\n\nKV Cache 占显存。\n", encoding="utf-8")
    env = {"MIANJING_INDEX": str(tmp_path / "ix"), "MIANJING_CORPUS": str(tmp_path / "notes")}
    out = cli("search", "--questions", str(questions), env=env)
    assert out.returncode == 2 and out.stderr.startswith(f"mianjing: error: {questions}{message}")
    assert out.stderr.count("\n") == 1 and not (tmp_path / "ix").exists()  # one line, nothing built


def test_a_questions_file_may_start_with_a_bom(tmp_path: Path) -> None:
    from eval.dataset import read_questions

    (tmp_path / "q.jsonl").write_bytes('\ufeff{"question": "显存"}\n'.encode())
    assert read_questions(tmp_path / "q.jsonl") == ["显存"]


def test_a_questions_file_may_be_plain_lines_pasted_from_notes(tmp_path: Path) -> None:
    from eval.dataset import read_questions

    lines = [
        "# 第一章 训练",  # a heading: not a question
        "KV Cache 是什么？",
        "",
        "- ZeRO-3 切分什么？",
        "2. What is RMSNorm?",
        "3、LoRA 的秩怎么选？",
        "（4）- 1. 嵌套的编号",
        "-",
        "1.5B 模型为什么会编造？",
        "{x} 在公式里表示什么？",
        '{"question": "显存"}',
    ]
    (tmp_path / "q.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_questions(tmp_path / "q.txt") == [
        "KV Cache 是什么？",
        "ZeRO-3 切分什么？",
        "What is RMSNorm?",
        "LoRA 的秩怎么选？",
        "嵌套的编号",
        "1.5B 模型为什么会编造？",
        "{x} 在公式里表示什么？",
        "显存",
    ]


def test_a_json_line_in_a_plain_list_is_still_checked(tmp_path: Path) -> None:
    from eval.dataset import read_questions

    (tmp_path / "q.txt").write_text('KV Cache 是什么？\n{"question": null}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r'q.txt:2: "question" must be a non-empty string'):
        read_questions(tmp_path / "q.txt")
