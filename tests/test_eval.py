"""`mianjing eval` end to end on the fixture notes with the hashing embedder: metrics, reports, bad dataset
lines, the generation section (a fake eval.generation), and `--compare`."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.retrieval import Searcher
from assistant.settings import Settings, from_env
from eval import command
from eval.compare import compare, markdown
from tests.conftest import HashEmbedder
from ui import cli

GOOD = [
    {"id": "q1", "question": "ZeRO-3 和 ZeRO-2 有什么区别", "kind": "paraphrase",
     "evidence": [{"source": "bold.txt", "quote": "ZeRO-3 还切分模型参数"}]},
    {"id": "q2", "question": "KV Cache 是什么", "kind": "keyword",
     "evidence": [{"source": "heading.md", "quote": "推理时缓存历史 token 的 K 和 V"}]},
    {"id": "q3", "question": "RMSNorm 和 LayerNorm 的区别", "kind": "keyword",
     "evidence": [{"source": "table_formula.md", "quote": "RMSNorm 去掉了均值中心化"}]},
    {"id": "q4", "question": "GPT-4 有多少参数", "kind": "unanswerable", "evidence": []},
]  # fmt: skip
BAD = [
    "not json",
    json.dumps({"id": "b1", "question": "x", "evidence": [{"source": "nope.md", "quote": "abc"}]}),
    json.dumps(
        {"id": "b2", "question": "x", "evidence": [{"source": "bold.txt", "quote": "不在笔记里的话"}]}
    ),
    json.dumps({"id": "q1", "question": "again", "evidence": []}),
    json.dumps({"id": "b3", "evidence": []}),
]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(item, ensure_ascii=False) for item in GOOD] + ["", *BAD]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def settings(notes: Path, tmp_path: Path) -> Settings:
    return from_env({}, corpus=notes, index=tmp_path / "ix", reranker=str(tmp_path / "no-reranker"))


@pytest.fixture
def searcher(settings: Settings, embedder: HashEmbedder) -> Searcher:
    return Searcher(settings, embedder=embedder, warn=lambda _: None)


def test_run_scores_every_mode_and_writes_the_reports(
    settings: Settings, searcher: Searcher, dataset: Path, tmp_path: Path
) -> None:
    said: list[str] = []
    out = tmp_path / "out"
    result = command.run(
        settings, command.Options(dataset=dataset, out=out), searcher=searcher, warn=said.append
    )
    # bad lines: each named by its line number (the blank line 5 is skipped silently), the rest still ran
    assert len(said) == 5 and all(line.startswith("mianjing: skipped data.jsonl:") for line in said)
    joined = "\n".join(said)
    assert "data.jsonl:6: invalid JSON" in joined and "data.jsonl:7: unknown source 'nope.md'" in joined
    assert "data.jsonl:8: quote not found" in joined and "data.jsonl:9: duplicate id 'q1'" in joined
    assert "data.jsonl:10: missing field 'question'" in joined
    assert set(result["modes"]) == {"bm25", "dense", "hybrid", "rerank"}
    for mode in result["modes"].values():
        assert mode["overall"]["n"] == 3 and set(mode["by_kind"]) == {"paraphrase", "keyword"}
        assert all(0.0 <= v <= 1.0 for k, v in mode["overall"].items() if k != "n")
        assert mode["latency_ms"]["p95"] >= mode["latency_ms"]["p50"] > 0
    # BM25 finds each of these three at rank 1 (checked by hand on the fixture notes)
    assert result["modes"]["bm25"]["overall"]["hit@1"] == 1.0
    # no cross-encoder: rerank mode says so and returns the fused order
    assert "reranker" in result["modes"]["rerank"] and "reranker" not in result["modes"]["hybrid"]
    assert result["modes"]["rerank"]["overall"] == result["modes"]["hybrid"]["overall"]
    run = result["run"]
    assert run["dataset"]["sha256"] == hashlib.sha256(dataset.read_bytes()).hexdigest()
    assert (
        run["dataset"]["items"] == 4
        and run["dataset"]["answerable"] == 3
        and len(run["dataset"]["problems"]) == 5
    )
    assert run["corpus"]["fingerprint"] == command.fingerprint(searcher.index.manifest)
    assert run["corpus"]["chunks"] == len(searcher.index.chunks) and run["machine"]["cores"] >= 1
    assert "llm_api_key" not in run["settings"] and run["settings"]["corpus"] == str(settings.corpus)
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8")) == result
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 * 3 and {r["mode"] for r in rows} == set(result["modes"])
    q2 = next(r for r in rows if r["mode"] == "bm25" and r["id"] == "q2")
    assert q2["hits"][0]["relevant"] and q2["gold"][0]["rank"] == 1 and "KV Cache" in q2["gold"][0]["heading"]


def test_html_report_is_self_contained(
    settings: Settings, searcher: Searcher, dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command.run(
        settings, command.Options(dataset=dataset, modes=("bm25", "dense"), k=3, out=out), searcher=searcher
    )
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 3  # modes, kinds, latency
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "corpus fingerprint" in page and str(dataset) in page
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| mode | hit@1 | hit@5 | recall@5 | mrr@10 | ndcg@10 |" in md and "| dense |" in md


def test_worst_questions_show_the_gold_passage_beside_the_hits(
    settings: Settings, searcher: Searcher, tmp_path: Path
) -> None:
    data = tmp_path / "hard.jsonl"
    item = {"id": "h1", "question": "量子计算机怎么造", "kind": "paraphrase",
            "evidence": [{"source": "sub/numbered.md", "quote": "依赖知识库质量"}]}  # fmt: skip
    data.write_text(json.dumps(item, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = command.run(
        settings, command.Options(dataset=data, modes=("bm25",), k=2, out=out), searcher=searcher
    )
    assert result["modes"]["bm25"]["overall"]["hit@5"] == 0.0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "量子计算机怎么造" in page and "«依赖知识库质量»" in page and "not in the top 2" in page


def test_generation_section_from_a_fake(
    settings: Settings, searcher: Searcher, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict = {}

    def generation_report(searcher, model, items, answer_settings, *, judge=None, limit=None, progress=None):  # type: ignore[no-untyped-def]
        calls.update(model=model, n=len(items), judge=judge, limit=limit, mode=answer_settings.mode)
        for _ in items[:limit]:
            progress("one")
        return {
            "answerable": {"n": 3, "faithfulness": 0.5, "refusal": {"accuracy": 0.9}},
            "unanswerable": {"n": 1, "refusal_accuracy": 1.0},
            "parse_failures": 2,
            "rows": [
                {"id": "q1", "question": "ZeRO?", "answer": "好答案", "refused": False, "faithfulness": 0.9},
                {"id": "q2", "question": "KV?", "answer": "坏答案", "refused": False, "faithfulness": 0.1},
            ],
        }

    monkeypatch.setitem(
        sys.modules,
        "eval.generation",
        types.SimpleNamespace(generation_report=generation_report, load_judge=lambda spec, settings: spec),
    )
    out = tmp_path / "out"
    options = command.Options(
        dataset=dataset, modes=("bm25",), generate=True, limit=2, judge="local", out=out
    )
    model = object()
    said: list[str] = []
    # the answers are retrieved in the settings' mode (`--mode`), whatever retrievers `--modes` scores
    reranked = replace(settings, mode="rerank")
    result = command.run(reranked, options, searcher=searcher, model=model, warn=said.append)
    assert calls == {"model": model, "n": 4, "judge": "local", "limit": 2, "mode": "rerank"}
    assert result["generation"]["mode"] == "rerank" and any(
        "mianjing: answering in rerank mode" in line for line in said
    )
    assert result["generation"]["parse_failures"] == 2 and result["run"]["dataset"]["items"] == 2
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "refusal.accuracy" in page and "parse_failures" in page
    assert page.index("坏答案") < page.index("好答案")  # the worst answer first


def test_cli_eval_compare_and_errors(
    notes: Path,
    searcher: Searcher,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where = ["--corpus", str(notes), "--index", str(searcher.settings.index_dir), "--dataset", str(dataset)]
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main(["eval", *where, "--modes", "bm25", "--out", str(a)]) == 0
    out = capsys.readouterr()
    assert "| bm25 | 1.000 |" in out.out and "skipped data.jsonl:6: invalid JSON" in out.err
    argv = ["eval", *where, "--modes", "bm25", "-k", "1", "--out", str(b), "--json", "--mode", "bm25"]
    assert cli.main(argv) == 0
    ran = json.loads(capsys.readouterr().out)["run"]
    assert ran["k"] == 1 and ran["settings"]["mode"] == "bm25"  # the answers' retriever, recorded
    assert cli.main(["eval", "--compare", str(a / "metrics.json"), str(b / "metrics.json")]) == 0
    text = capsys.readouterr().out
    assert "| bm25 | 1.000 (+0.000) |" in text and "- k: 10 -> 1" in text
    assert (b / "compare.md").read_text(encoding="utf-8") == text.rstrip("\n") + "\n"
    for argv, message in [
        (["eval", *where, "--modes", "bm25,nope"], "unknown mode nope"),
        (["eval", "--dataset", str(tmp_path / "missing.jsonl")], "dataset not found"),
        (["eval", "--compare", str(dataset), str(a / "metrics.json")], "not JSON"),
        (["eval", *where, "--limit", "0"], "at least 1"),
        (["eval", *where, "--modes", "bm25", "--generate"], "--generate is not available"),
    ]:
        monkeypatch.setitem(sys.modules, "eval.generation", None)  # as if eval/generation.py could not import
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("mianjing: error:")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err


def test_compare_deltas_by_hand(tmp_path: Path) -> None:
    def metrics(hit1: float, p50: float, chunking: int) -> dict:
        overall = {"hit@1": hit1, "mrr@10": 0.8, "n": 10}
        return {
            "modes": {
                "hybrid": {"overall": overall, "by_kind": {"keyword": overall}, "latency_ms": {"p50": p50}}
            },
            "generation": {"answerable": {"faithfulness": hit1}},
            "run": {"settings": {"max_chars": chunking}, "corpus": {"fingerprint": str(chunking)}},
        }

    paths = []
    for name, m in [("a", metrics(0.5, 20.0, 800)), ("b", metrics(0.75, 15.0, 600))]:
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(m), encoding="utf-8")
    c = compare(*paths)
    assert c["modes"]["hybrid"]["overall"]["hit@1"] == {"a": 0.5, "b": 0.75, "delta": 0.25}
    assert c["modes"]["hybrid"]["latency_ms"]["p50"]["delta"] == -5.0
    assert c["generation"]["answerable.faithfulness"]["delta"] == 0.25
    assert c["run"]["settings"] == {"max_chars": [800, 600]} and c["run"]["corpus fingerprint"] == [
        "800",
        "600",
    ]
    text = markdown(c)
    assert "0.750 (+0.250)" in text and "15.0 (-5.0)" in text and "max_chars: 800 -> 600" in text
