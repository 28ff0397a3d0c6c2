"""Generation metrics: ragas' formulas on hand-computed cases with a scripted judge, judge failures counted,
the pipeline on the fixture notes, and one short run with the real 1.5B model answering and judging."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.retrieval import Searcher
from assistant.settings import BUNDLED_CORPUS, Settings, from_env
from eval.dataset import Item, Span, load_dataset, subset
from eval.generation import generation_report, load_judge, plain
from eval.judge import FIX_PROMPT, Judge, similarity
from tests.conftest import HashEmbedder
from tests.test_answer import ScriptedModel

ROUTES = {  # words of each ragas prompt's instruction -> the name of its scripted replies
    FIX_PROMPT: "fix",
    "Break down each sentence": "statements",
    "judge the faithfulness": "verdicts",
    "Generate a question for the given answer": "question",
    "Given a ground truth and an answer statements": "classify",
}


class RubricJudge:
    """A scripted judge: replies to each kind of ragas prompt from its own queue ("garbage" when empty)."""

    def __init__(self, **replies: list[str]) -> None:
        self.replies = {name: list(r) for name, r in replies.items()}
        self.asked: list[str] = []

    def complete(self, messages: list[tuple[str, str]]) -> str:
        text = messages[-1][1]
        route = next(name for words, name in ROUTES.items() if words in text)  # FIX_PROMPT first
        self.asked.append(route)
        queue = self.replies.get(route, [])
        return queue.pop(0) if queue else "garbage, not JSON"

    def stream(self, messages: list[tuple[str, str]]) -> Iterator[str]:
        yield self.complete(messages)


def statements(*texts: str) -> str:
    return "```json\n" + json.dumps({"statements": list(texts)}, ensure_ascii=False) + "\n```"


def verdicts(*flags: int) -> str:
    rows = [{"statement": f"s{n}", "reason": "r", "verdict": f} for n, f in enumerate(flags)]
    return json.dumps({"statements": rows})


def classified(tp: int, fp: int, fn: int) -> str:
    def some(n: int) -> list[dict]:
        return [{"statement": f"s{i}", "reason": "r"} for i in range(n)]

    return json.dumps({"TP": some(tp), "FP": some(fp), "FN": some(fn)})


def relevancy(question: str, noncommittal: int = 0) -> str:
    return json.dumps({"question": question, "noncommittal": noncommittal}, ensure_ascii=False)


Q = "KV Cache 是什么？"
A = "推理时缓存历史 token 的 K 和 V，避免重复计算。"
CONTEXTS = ["推理时缓存历史 token 的 K 和 V，避免重复计算，用显存换时间。"]


def score(metric: str, judge: RubricJudge, answer: str = A, reference: str = A):  # noqa: ANN201
    return Judge(judge, HashEmbedder()).score(metric, Q, answer, CONTEXTS, reference)


@pytest.mark.parametrize(
    ("metric", "replies", "expected"),
    [
        # faithfulness = supported statements / statements: 2 of 3
        ("faithfulness", {"statements": [statements("a", "b", "c")], "verdicts": [verdicts(1, 0, 1)]}, 0.6667),  # noqa: E501
        ("faithfulness", {"statements": [statements("a")], "verdicts": [verdicts(0)]}, 0.0),
        # answer relevancy = cosine(question, generated question), 0 when the answer is noncommittal
        ("answer_relevancy", {"question": [relevancy(Q)]}, 1.0),
        ("answer_relevancy", {"question": [relevancy(Q, noncommittal=1)]}, 0.0),
        # answer correctness = 0.75 F1(TP 2, FP 1, FN 1) + 0.25 similarity (answer == reference: 1)
        ("answer_correctness", {"statements": [statements("a"), statements("b")], "classify": [classified(2, 1, 1)]}, 0.75),  # noqa: E501
        ("answer_correctness", {"statements": [statements("a"), statements("b")], "classify": [classified(0, 2, 1)]}, 0.25),  # noqa: E501
    ],
)  # fmt: skip
def test_ragas_formulas_on_hand_computed_cases(metric: str, replies: dict, expected: float) -> None:
    result = score(metric, RubricJudge(**replies))
    assert result.value == pytest.approx(expected, abs=1e-4)
    assert result.failure == "" and result.retries == 0


def test_an_output_that_never_parses_is_a_counted_parse_failure() -> None:
    judge = RubricJudge(statements=[statements("a", "b")], verdicts=["All statements are true."])
    result = score("faithfulness", judge)
    assert result.value is None and result.failure == "parse"
    assert result.retries >= 1 and judge.asked == ["statements", "verdicts", "fix"]  # one fix sent, no more


def test_an_output_repaired_by_the_fix_prompt_scores_and_counts_the_retry() -> None:
    fixed = json.dumps({"text": verdicts(1, 1)})  # ragas' fix prompt answers {"text": <fixed output>}
    judge = RubricJudge(statements=[statements("a", "b")], verdicts=["verdicts: 1, 1"], fix=[fixed])
    result = score("faithfulness", judge)
    assert result.value == 1.0 and result.failure == "" and result.retries == 1


def test_no_statements_and_a_failing_model_are_reported_not_nan() -> None:
    empty = score("faithfulness", RubricJudge(statements=[statements()]))
    assert empty.value is None and empty.failure == "empty"

    class Broken(RubricJudge):
        def complete(self, messages: list[tuple[str, str]]) -> str:
            raise RuntimeError("llama_decode returned -1")

    broken = score("answer_relevancy", Broken())
    assert broken.value is None and broken.failure == "error" and "llama_decode" in broken.detail


def test_nothing_is_sent_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragas import _analytics

    sent: list[object] = []
    monkeypatch.delenv("RAGAS_DO_NOT_TRACK", raising=False)
    monkeypatch.setattr(_analytics.requests, "post", lambda *a, **k: sent.append(a))
    _analytics.do_not_track.cache_clear()
    assert score("answer_relevancy", RubricJudge(question=[relevancy(Q)])).value == 1.0
    _analytics._analytics_batcher.flush()
    assert not sent and os.environ["RAGAS_DO_NOT_TRACK"] == "true"


def test_similarity_and_plain() -> None:
    embedder = HashEmbedder()
    assert similarity(embedder, A, A) == 1.0 and 0.0 <= similarity(embedder, A, "完全无关的句子") < 0.5
    assert plain("缓存 K 和 V [1]。用显存换时间【2】。") == "缓存 K 和 V 。用显存换时间。"


def test_judge_setting(tmp_path: Path) -> None:
    settings = from_env({}, cache=tmp_path)  # no MIANJING_LLM_BASE_URL from the environment
    assert load_judge("", settings) is None and load_judge("same", settings) is None
    assert load_judge("none", settings) == "none"
    with pytest.raises(RuntimeError, match="unknown llm 'gpt-4'"):
        load_judge("gpt-4", settings)
    with pytest.raises(RuntimeError, match="needs a server"):
        load_judge("openai:qwen2.5", settings)
    searcher = Searcher(settings, build=False)
    with pytest.raises(ValueError, match="load_judge"):
        generation_report(searcher, ScriptedModel(), [], Settings(), judge="openai:qwen2.5")
    with pytest.raises(ValueError, match="unknown judged metric"):
        generation_report(searcher, ScriptedModel(), [], Settings(), metrics=("bleu",))


def _item(n: int, answerable: bool) -> Item:
    return Item(f"i{n}", "q", "k", (Span("a.md", 0, 1),) if answerable else ())


def test_limit_keeps_both_kinds_in_their_shares() -> None:
    items = [_item(n, n not in (3, 8)) for n in range(10)]
    assert [i.id for i in subset(items, 5)] == ["i0", "i1", "i2", "i3", "i4"]
    assert [i.id for i in subset(items, 2)] == ["i0", "i3"]  # one of each
    assert [i.id for i in subset(items, 1)] == ["i0"]
    assert subset(items, None) == items and subset(items, 50) == items


# --- the pipeline: fixture notes, HashEmbedder, a scripted answerer and judge ------------------------------

DATASET = [
    {"id": "a1", "question": "KV Cache 是什么？", "kind": "paraphrase",
     "evidence": [{"source": "heading.md", "quote": "推理时缓存历史 token 的 K 和 V"}],
     "reference_answer": "推理时缓存历史 token 的 K 和 V，避免重复计算。"},
    {"id": "a2", "question": "ZeRO-3 和 ZeRO-2 的区别", "kind": "paraphrase",
     "evidence": [{"source": "bold.txt", "quote": "ZeRO-3 还切分模型参数"}],
     "reference_answer": "ZeRO-3 还切分参数。"},
    {"id": "u1", "question": "DoRA 和 GPTQ 有什么关系？", "kind": "unanswerable", "evidence": []},
    {"id": "u2", "question": "Self-Attention 的计算复杂度是多少？", "kind": "unanswerable", "evidence": []},
]  # fmt: skip
ANSWERS = (  # a1 answered with a citation; a2 refused by the model; u1 refused before generating; u2 answered
    "推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。",
    "笔记中没有相关内容。",
    "Self-Attention 让序列中每个位置都和所有位置计算相关性 [1]。",
)


@pytest.fixture
def setup(notes: Path, tmp_path: Path) -> tuple[Searcher, list[Item]]:
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in DATASET), encoding="utf-8")
    items, problems = load_dataset(data, notes)
    assert not problems
    searcher = Searcher(
        from_env(corpus=notes, index=tmp_path / "ix"),
        warn=lambda _: None,
        embedder=HashEmbedder(),  # type: ignore[arg-type]
    )
    return searcher, items


NO_QUOTES = Settings(quote_above=1.01)  # a refusal stays a refusal (no quoted passage)


def test_generation_report_on_the_fixture_notes(setup: tuple[Searcher, list[Item]]) -> None:
    searcher, items = setup
    judge = RubricJudge(
        # faithfulness of a1 then u2, then correctness of a1 (its answer, then its reference)
        statements=[statements("a", "b"), statements("c"), statements("x"), statements("y")],
        verdicts=[verdicts(1, 1), "the statement is supported"],  # u2: never parses
        question=[relevancy("KV Cache 是什么？")],
        classify=[classified(1, 0, 0)],
    )
    lines: list[str] = []
    report = generation_report(
        searcher, ScriptedModel(*ANSWERS), items, NO_QUOTES, judge=judge, progress=lines.append
    )
    rows = {r["id"]: r for r in report["rows"]}
    a1, a2, u1, u2 = rows["a1"], rows["a2"], rows["u1"], rows["u2"]
    assert [r["refused"] for r in (a1, a2, u1, u2)] == [False, True, True, False]
    assert a1["citations"] and a1["citation_validity"] == 1.0 and u2["citation_validity"] == 0.0
    assert a1["faithfulness"] == 1.0 and a1["answer_relevancy"] == 1.0
    # correctness = 0.75 * F1(1, 0, 0) + 0.25 * similarity of answer and reference
    assert a1["answer_correctness"] == pytest.approx(0.75 + 0.25 * a1["answer_similarity"], abs=1e-3)
    assert a2["answer_relevancy"] == a2["answer_correctness"] == 0.0 and a2["faithfulness"] is None
    assert u1["faithfulness"] is None and u2["faithfulness"] is None
    assert u2["failures"] == {"faithfulness": u2["failures"]["faithfulness"]}
    assert u2["failures"]["faithfulness"].startswith("parse")
    assert report["parse_failures"] == {"faithfulness": 1, "answer_relevancy": 0, "answer_correctness": 0}
    assert report["parse_retries"]["faithfulness"] >= 1
    ans, un = report["answerable"], report["unanswerable"]
    assert ans["n"] == 2 and ans["refused"] == 0.5
    assert ans["faithfulness"] == 1.0 and ans["faithfulness_n"] == 1
    assert ans["answer_relevancy"] == 0.5 and ans["answer_relevancy_n"] == 2
    assert un["n"] == 2 and un["refused"] == 0.5 and un["faithfulness"] is None and un["faithfulness_n"] == 0
    assert report["judge"] == "RubricJudge"
    kind = report["by_kind"]["paraphrase"]  # both answerable items are paraphrases: the same figures
    assert kind == {key: ans[key] for key in kind} and kind["refused"] == 0.5
    assert set(report["by_kind"]) == {"paraphrase", "unanswerable"}
    assert len(lines) == 4 + 2 + 1 + 1 and lines[0].startswith("answer [1/4] a1: answered")
    json.dumps(report, allow_nan=False)  # no NaN anywhere


def test_without_a_judge_only_the_cheap_metrics(setup: tuple[Searcher, list[Item]]) -> None:
    searcher, items = setup
    report = generation_report(searcher, ScriptedModel(*ANSWERS), items, NO_QUOTES, judge="none", limit=2)
    assert [r["id"] for r in report["rows"]] == ["a1", "u1"] and report["judge"] == "none"
    a1 = report["rows"][0]
    assert a1["faithfulness"] is None and a1["answer_relevancy"] is None and 0 < a1["answer_similarity"] <= 1
    assert report["answerable"]["citation_validity"] == 1.0 and report["unanswerable"]["refused"] == 1.0
    assert report["parse_failures"] == {"faithfulness": 0, "answer_relevancy": 0, "answer_correctness": 0}
    json.dumps(report, allow_nan=False)


# --- the real model, answering and judging ----------------------------------------------------------------

DEV = Path(__file__).resolve().parent.parent / "eval" / "data" / "dev.jsonl"


def test_real_model_judges_its_own_answers(bundled: Searcher) -> None:
    """One answerable and one unanswerable dev item; answer relevancy only (1 judge call), to stay short:
    ~90 s on 2 busy cores, plus the bundled index build that the integration tests share."""
    from assistant.llm import Generator

    items, _ = load_dataset(DEV, BUNDLED_CORPUS)
    chosen = [next(i for i in items if i.id == "d001"), next(i for i in items if not i.answerable)]
    model = Generator.of(from_env())
    settings = bundled.settings
    report = generation_report(bundled, model, chosen, settings, metrics=("answer_relevancy",))
    answered, unanswerable = report["rows"]
    assert unanswerable["refused"] and report["unanswerable"]["refused"] == 1.0
    assert not answered["refused"]
    for metric in ("answer_relevancy", "answer_similarity", "citation_validity"):
        assert answered[metric] is None or 0.0 <= answered[metric] <= 1.0, (metric, answered[metric])
    # the judge either scored it or its failure is counted and explained
    assert answered["answer_relevancy"] is not None or report["parse_failures"]["answer_relevancy"] == 1
    assert answered["answer_relevancy"] is not None or answered["failures"]["answer_relevancy"]
    assert answered["faithfulness"] is None and report["judged"] == ["answer_relevancy"]
    assert report["judge"] == model.name and report["seconds_per_item"]["answer_relevancy"] > 0
    json.dumps(report, allow_nan=False)


def test_key_points_and_citation_precision_need_no_judge(notes: Path, tmp_path: Path) -> None:
    rows = [{**DATASET[0], "key_points": [["缓存"], ["重复计算", "recompute"], ["显存"]]}, DATASET[2]]
    data = tmp_path / "kp.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    items, problems = load_dataset(data, notes)
    assert not problems and items[0].key_points[1] == ("重复计算", "recompute")
    searcher = Searcher(
        from_env(corpus=notes, index=tmp_path / "ix"), warn=lambda _: None, embedder=HashEmbedder()
    )
    answer = "推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。量子计算机用叠加态加速一切 [1]。见 [9]。"
    raw = replace(NO_QUOTES, answer_style="window")  # the marks as the model wrote them
    report = generation_report(searcher, ScriptedModel(answer), items, raw, judge="none")
    a1 = report["rows"][0]
    assert a1["key_point_recall"] == pytest.approx(2 / 3)  # 显存 is not stated
    assert a1["citation_precision"] == 0.5  # the second marked sentence is not in passage [1]
    assert a1["marks_without_target"] == 1 and report["answerable"]["marks_without_target"] == 1
    assert report["answerable"]["key_point_recall"] == round(2 / 3, 4)  # means are rounded to 4 places
    assert report["rows"][1]["key_point_recall"] is None  # unanswerable: no key points
    # evidence style: the unsupported sentence loses its mark, the mark without a target is not shown
    checked = generation_report(searcher, ScriptedModel(answer), items, NO_QUOTES, judge="none")["rows"][0]
    assert checked["citation_precision"] == 1.0 and checked["marks_without_target"] == 0
    # a mark after no words of its own ("**…？** [1]" splits after the "？") cites the words before it
    bold = "**推理时缓存历史 token 的 K 和 V，避免重复计算？** [1]"
    report = generation_report(searcher, ScriptedModel(bold), items, raw, judge="none")
    assert report["rows"][0]["citation_precision"] == 1.0


def test_bad_key_points_are_a_dataset_problem(notes: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(
        json.dumps({**DATASET[0], "key_points": [["缓存"], []]}, ensure_ascii=False), encoding="utf-8"
    )
    items, problems = load_dataset(data, notes)
    assert not items and "key_points" in problems[0]
