"""tune/late.py, the late-interaction reranker experiment: with every layer kept apart it is e5's own
similarity (the README's starting point), and opening a layer lets question and passage read each other."""

from __future__ import annotations

import numpy as np
import pytest

from tune import late

QUESTION = "ZeRO-3 切分了哪些状态？"
PASSAGES = [
    "ZeRO-3 在 ZeRO-2 的基础上把模型参数也切分到各卡，优化器状态、梯度和参数都只存一份。",
    "RMSNorm 去掉了 LayerNorm 的均值中心化，只用均方根做缩放。",
    "Batch size 扩大 N 倍时，学习率通常也扩大 N 倍。",
]


@pytest.fixture(scope="module")
def folder(bundled):  # type: ignore[no-untyped-def]
    from retriever.e5 import ensure_e5

    return ensure_e5(bundled.settings.cache)


def _scores(scorer: late.LateScorer) -> np.ndarray:
    import torch

    scorer.cache(PASSAGES, "passage: ", late.PASSAGE_TOKENS)
    scorer.cache([QUESTION], "query: ", late.QUERY_TOKENS)
    with torch.no_grad():
        return scorer.scores(QUESTION, PASSAGES).numpy()


def test_kept_apart_it_is_e5s_own_similarity(bundled, folder) -> None:  # type: ignore[no-untyped-def]
    embedder = bundled.embedder
    e5 = embedder.passages(PASSAGES) @ embedder.query(QUESTION)
    ours = _scores(late.LateScorer(folder, open_layers=0, keep_e5=False))
    assert ours == pytest.approx(e5, abs=2e-3)
    assert int(np.argmax(ours)) == 0  # the ZeRO passage answers


def test_an_open_layer_lets_the_halves_read_each_other(folder) -> None:  # type: ignore[no-untyped-def]
    apart = _scores(late.LateScorer(folder, open_layers=0, keep_e5=False))
    opened = _scores(late.LateScorer(folder, open_layers=1, keep_e5=False))
    assert np.abs(opened - apart).max() > 1e-3
    # --keep-e5 starts from e5's similarity plus 0.1 x the opened layer's
    kept = _scores(late.LateScorer(folder, open_layers=1, keep_e5=True))
    assert kept == pytest.approx(apart + 0.1 * opened, abs=1e-4)


def test_masks_and_fusion() -> None:
    apart, joint = late.pair_masks([(2, 3)], 6)
    seen = apart[0, 0] == 0
    assert seen[:2, :2].all() and not seen[:2, 2:].any() and seen[2:5, 2:5].all() and not seen[:, 5].any()
    assert (joint[0, 0][:, :5] == 0).all() and not (joint[0, 0][:, 5] == 0).any()
    # RRF of the score's order with the arrival (fused) order: the last arrival, first by score, climbs
    # from 5th to 3rd; the others keep their order
    assert late.rrf_order([0.5, 0.4, 0.3, 0.2, 0.9]) == [0, 1, 4, 2, 3]


def test_a_missing_questions_file_is_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert late.main(["--questions", str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tune.late: error: no questions file") and "\n" not in err
