"""Retrieval benchmark: full ingest, no-change re-ingest, warm search latency per mode, peak memory.

    python benchmarks/bench_retrieval.py [--corpus DIR] [--questions FILE.jsonl] [--repeat 3] [--json]

Prints a markdown table with the machine it ran on. Ingest goes to a fresh temporary index folder; the
converted embedding model is reused from the cache (its one-time conversion is timed separately if absent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.retrieval import Searcher  # noqa: E402
from assistant.settings import from_env  # noqa: E402
from eval import command  # noqa: E402
from eval.dataset import read_questions  # noqa: E402
from eval.metrics import percentiles  # noqa: E402
from eval.report import machine_text  # noqa: E402
from retriever.e5 import E5_NAME, e5_folder, ensure_e5  # noqa: E402
from retriever.search import MODES  # noqa: E402


def machine() -> str:
    """The machine the figures come from, as eval reports name it."""
    return f"{machine_text(command.machine())}, Python {platform.python_version()}"


def measure(corpus: Path, questions: list[str], repeat: int) -> dict[str, str]:
    """measure -> value, the names the same for any corpus (bench_scale.py reuses this on a larger one)."""
    rows: dict[str, str] = {}
    settings = from_env(corpus=corpus)
    if settings.embed_model == E5_NAME and not (e5_folder(settings.cache) / "converted.json").exists():
        t = time.perf_counter()
        ensure_e5(settings.cache, progress=True)
        rows["one-time e5 conversion"] = f"{time.perf_counter() - t:.1f} s"
    with tempfile.TemporaryDirectory() as tmp:
        settings = from_env(corpus=corpus, index=Path(tmp) / "index")
        t = time.perf_counter()
        searcher = Searcher(settings, warn=lambda _: None)  # no index yet: builds it
        rows["full ingest (in process, incl. model load)"] = f"{time.perf_counter() - t:.1f} s"
        rows["chunks"] = str(len(searcher.index.chunks))
        t = time.perf_counter()
        searcher.ingest()
        rows["re-ingest, nothing changed (in process)"] = f"{(time.perf_counter() - t) * 1000:.0f} ms"
        env = {**os.environ, "MIANJING_CORPUS": str(corpus), "MIANJING_INDEX": str(Path(tmp) / "index")}
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ui.cli", "ingest"], cwd=REPO, env=env, check=True, capture_output=True
        )
        rows["re-ingest, nothing changed (`mianjing ingest`, whole process)"] = (
            f"{time.perf_counter() - t:.2f} s"
        )
        for mode in MODES:
            searcher.search(questions[0], mode=mode)  # warm: models loaded, caches filled
            times = []
            for _ in range(repeat):
                for q in questions:
                    t = time.perf_counter()
                    result = searcher.search(q, mode=mode)
                    times.append((time.perf_counter() - t) * 1000)
            cut = percentiles(times)
            note = " (reranker off: fused order)" if result.reranker else ""
            rows[f"search `{mode}` warm p50 / p95"] = f"{cut['p50']:.1f} / {cut['p95']:.1f} ms{note}"
        rows["search queries timed per mode"] = str(len(questions) * repeat)
    rows["peak RSS"] = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    return rows


def print_table(rows: dict[str, str], *, as_json: bool) -> None:
    """A markdown table with the machine and date, or (`as_json`) one JSON object (benchmarks/results.py)."""
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    print(f"\nmachine: {machine()}; date: {time.strftime('%Y-%m-%d')}\n")
    print("| measure | value |\n| --- | --- |")
    for name, value in rows.items():
        print(f"| {name} | {value} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=REPO / "corpus")
    ap.add_argument("--questions", type=Path, default=REPO / "eval" / "data" / "dev.jsonl")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    print_table(measure(args.corpus, read_questions(args.questions), args.repeat), as_json=args.json)


if __name__ == "__main__":
    main()
