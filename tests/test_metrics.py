"""eval/metrics.py: hand-computed cases, bounds under duplicates, and agreement with trec_eval."""

from __future__ import annotations

import math
import random

import pytest

from eval import metrics
from eval.run import METRICS, scores

N = frozenset()  # an irrelevant hit
A, B = frozenset({0}), frozenset({1})  # hits on evidence span 0 / span 1
L3 = 1 / math.log2(3)  # DCG discount at rank 2

# (name, matches, n_evidence, expected {metric: value}); metrics not named are not checked for that case
CASES = [
    ("empty list", [], 1, dict.fromkeys(METRICS, 0.0)),
    ("no relevant hit", [N, N, N], 1, dict.fromkeys(METRICS, 0.0)),
    ("unanswerable: no evidence", [N, N], 0, dict.fromkeys(METRICS, 0.0)),
    ("first hit relevant", [A, N], 1, dict.fromkeys(METRICS, 1.0)),
    (
        "relevant at rank 2",
        [N, A],
        1,
        {
            "hit@1": 0.0,
            "hit@5": 1.0,
            "recall@5": 1.0,
            "mrr@10": 0.5,
            "ndcg@10": L3,
            "context_precision@5": 0.5,
        },
    ),
    ("three duplicates of one span", [A, A, A], 1, dict.fromkeys(METRICS, 1.0)),
    (
        "duplicates after a miss",
        [N, A, A],
        1,
        {"mrr@10": 0.5, "ndcg@10": L3, "recall@5": 1.0, "context_precision@5": (1 / 2 + 2 / 3) / 2},
    ),
    (
        "one hit covers both spans",
        [A | B, N],
        2,
        {"hit@1": 1.0, "recall@5": 1.0, "ndcg@10": 1 / (1 + L3), "context_precision@5": 1.0},
    ),
    (
        "two spans at ranks 1 and 3",
        [A, N, B],
        2,
        {"mrr@10": 1.0, "recall@5": 1.0, "ndcg@10": 1.5 / (1 + L3), "context_precision@5": (1 + 2 / 3) / 2},
    ),
    (
        "one of two spans found",
        [N, B, B],
        2,
        {"recall@5": 0.5, "context_recall@10": 0.5, "ndcg@10": L3 / (1 + L3)},
    ),
    (
        "relevant only at rank 6",
        [N] * 5 + [A],
        1,
        {
            "hit@5": 0.0,
            "recall@5": 0.0,
            "context_precision@5": 0.0,
            "mrr@10": 1 / 6,
            "context_recall@10": 1.0,
        },
    ),
    ("relevant only at rank 11", [N] * 10 + [A], 1, dict.fromkeys(METRICS, 0.0)),
]


@pytest.mark.parametrize(("name", "found", "n_evidence", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hand_computed(name: str, found: list[frozenset[int]], n_evidence: int, expected: dict) -> None:
    got = scores(found, n_evidence)
    for metric, value in expected.items():
        assert got[metric] == pytest.approx(value), (name, metric)


def test_bools_still_work_for_hit_and_mrr() -> None:
    assert metrics.hit_at([False, True], 1) == 0.0 and metrics.mrr_at([False, True], 10) == 0.5


def test_every_metric_stays_in_unit_interval_with_duplicates() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        n = rng.randint(0, 3)
        found = [frozenset(rng.sample(range(n), rng.randint(0, n))) for _ in range(rng.randint(0, 12))]
        for metric, value in scores(found, n).items():
            assert 0.0 <= value <= 1.0 + 1e-12, (metric, found, n)


def test_percentiles() -> None:
    assert metrics.percentiles([]) == {"p50": 0.0, "p95": 0.0}
    assert metrics.percentiles([3.0]) == {"p50": 3.0, "p95": 3.0}
    assert metrics.percentiles([float(v) for v in range(1, 101)]) == {"p50": 50.5, "p95": 95.05}


def test_agrees_with_trec_eval() -> None:
    """Distinct passages, one per evidence span: the setting where trec_eval's definitions apply."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(11)
    qrels, run, ours = {}, {}, {}
    for q in range(200):
        relevant = rng.sample(range(30), rng.randint(1, 3))
        ranking = rng.sample(range(30), 10)
        qid = f"q{q}"
        qrels[qid] = {f"d{d}": 1 for d in relevant}
        run[qid] = {f"d{d}": float(100 - rank) for rank, d in enumerate(ranking)}
        found = [frozenset({relevant.index(d)}) if d in relevant else N for d in ranking]
        ours[qid] = (scores(found, len(relevant)), found, len(relevant))
    measures = {"success_1", "success_5", "recall_5", "recip_rank", "ndcg_cut_10", "map_cut_5"}
    trec = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    for qid, (got, found, n) in ours.items():
        t = trec[qid]
        assert got["hit@1"] == pytest.approx(t["success_1"])
        assert got["hit@5"] == pytest.approx(t["success_5"])
        assert got["recall@5"] == pytest.approx(t["recall_5"])
        assert got["mrr@10"] == pytest.approx(t["recip_rank"])
        assert got["ndcg@10"] == pytest.approx(t["ndcg_cut_10"])
        # RAGAS context precision divides by the relevant hits in the top 5; AP@5 by all relevant items
        in_top5 = sum(1 for f in found[:5] if f)
        assert got["context_precision@5"] * in_top5 == pytest.approx(t["map_cut_5"] * n)


@pytest.mark.parametrize(
    ("answer", "points", "expected"),
    [
        ("学习率扩大 N 倍 [1]。", [["扩大N倍", "linear scaling"], ["√N"]], 0.5),
        ("Use LINEAR  Scaling.", [["linear scaling"]], 1.0),
        ("", [["x"]], 0.0),
        ("anything", [], 0.0),
        ("3 × 10^-4 到 6e-4", [["3e-4", "3 × 10^-4"], ["6e-4"], ["1e-4"]], 2 / 3),
        # inline LaTeX states the same fact as plain text, on either side
        ("学习率也应扩大 $N$ 倍 [1]", [["扩大N倍"]], 1.0),
        (r"通常在 $3 \times 10^{-4}$ 到 $6 \times 10^{-4}$ 之间", [["3 × 10^-4"], ["6×10^-4"]], 1.0),
        (r"用 $\text{Adam}$，$\left(1-\beta\right)$", [["adam"], ["(1-\\beta)"]], 1.0),
        ("扩大 N 倍", [["扩大 $N$ 倍"]], 1.0),
        ("扩大 M 倍", [["扩大 $N$ 倍"]], 0.0),
    ],
)
def test_key_point_recall(answer: str, points: list[list[str]], expected: float) -> None:
    assert metrics.key_point_recall(answer, points) == pytest.approx(expected)


def test_dev_key_points_pass_on_the_reference_and_fail_on_another_answer() -> None:
    """The dev set's key points: ~1 on each item's own reference answer, ~0 on the answer 7 items later."""
    from assistant.settings import BUNDLED_CORPUS
    from eval.command import DEV
    from eval.dataset import load_dataset

    items, problems = load_dataset(DEV, BUNDLED_CORPUS)
    answerable = [i for i in items if i.answerable]
    assert not problems and all(2 <= len(i.key_points) <= 4 for i in answerable)
    own = [metrics.key_point_recall(i.reference_answer, i.key_points) for i in answerable]
    other = [
        metrics.key_point_recall(answerable[(n + 7) % len(answerable)].reference_answer, i.key_points)
        for n, i in enumerate(answerable)
    ]
    assert metrics.mean(own) >= 0.97 and metrics.mean(other) <= 0.05
    squash = "".join
    for item in answerable:  # never the question's own words
        question = squash(item.question.lower().split())
        assert not any(squash(a.lower().split()) in question for p in item.key_points for a in p), item.id
