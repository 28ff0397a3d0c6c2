"""Shared fixtures: a copy of the test notes (plus a GBK and a binary file) and a deterministic embedder."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "notes"
REPO = Path(__file__).resolve().parent.parent

# The readable notes of the `notes` fixture (image.md is binary and skipped).
SOURCES = ["bold.txt", "empty.md", "gbk.md", "heading.md", "sub/numbered.md", "table_formula.md"]

GBK_TEXT = "# 显存估算\n\n## 7B 模型推理要多少显存？\n\nFP16 下参数约 14 GB，再加 KV Cache 和激活。\n"


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """tests/fixtures/notes copied under tmp_path, with gbk.md (GBK-encoded) and image.md (binary)."""
    folder = tmp_path / "notes"
    shutil.copytree(FIXTURES, folder)
    (folder / "gbk.md").write_bytes(GBK_TEXT.encode("gbk"))
    (folder / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    return folder


class HashEmbedder:
    """Character-bigram hashing into 64 dimensions: deterministic, instant, similar texts are close."""

    name = "hash-test"
    dim = 64

    def __init__(self) -> None:
        self.calls = 0  # how many passages were embedded, to check incremental ingest

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for a, b in zip(text, text[1:], strict=False):
            v[int(hashlib.md5((a + b).encode()).hexdigest()[:6], 16) % self.dim] += 1.0
        return v / (np.linalg.norm(v) or 1.0)

    def passages(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        self.calls += len(texts)
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def query(self, text: str) -> np.ndarray:
        return self._vector(text)


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def bundled(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A Searcher over the bundled notes with the real bundled e5 model, its index built once per run."""
    from assistant.retrieval import Searcher
    from assistant.settings import BUNDLED_CORPUS, from_env

    settings = from_env(corpus=BUNDLED_CORPUS, index=tmp_path_factory.mktemp("bundled") / "index")
    return Searcher(settings, warn=lambda _: None)


def cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mianjing` (python -m ui.cli) in a subprocess with extra environment variables."""
    return subprocess.run(
        [sys.executable, "-m", "ui.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        input=stdin,
        timeout=600,
    )
