"""`mianjing eval`: a dataset through retrieval (and, with `generate`, answering), then the reports.

`run` loads the dataset (bad lines are reported and skipped), scores each retrieval mode with eval.run,
calls eval.generation for answers when asked, records the run (settings, commit, corpus fingerprint,
dataset hash, machine, date) and writes the reports of eval.report into `out`. Progress goes to stderr.

Does not: parse command lines (ui/cli.py does) or compare runs (eval.compare does).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from assistant.retrieval import Searcher
from assistant.settings import Settings
from eval import report
from eval.dataset import Item, load_dataset, subset
from eval.run import retrieval_rows, summarize
from retriever.search import MODES

REPO = Path(__file__).resolve().parent.parent
DEV = REPO / "eval" / "data" / "dev.jsonl"
SECRET = ("llm_api_key",)  # settings never written to a report


@dataclass(frozen=True)
class Options:
    dataset: Path = DEV  # JSONL: id, question, kind, evidence [{source, quote}], reference_answer
    modes: tuple[str, ...] = MODES  # retrieval modes to score
    k: int = 10  # hits retrieved per question
    generate: bool = False  # also answer the questions and score the answers (slow)
    limit: int | None = None  # first N questions, both kinds in their shares (eval.dataset.subset)
    judge: str | None = None  # passed through to eval.generation
    out: Path | None = None  # folder for metrics.json, questions.jsonl, report.md, report.html


def parse_modes(text: str) -> tuple[str, ...]:
    """ "bm25,hybrid" -> ("bm25", "hybrid"); an unknown mode is a ValueError naming the valid ones."""
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"unknown mode {', '.join(unknown) or repr(text)}; choose from {','.join(MODES)}")
    return modes


def run(
    settings: Settings,
    options: Options,
    *,
    searcher: Searcher | None = None,
    model: object | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """The metrics.json dict; also writes the reports when `options.out` is set."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    if options.k < 1 or (options.limit is not None and options.limit < 1):
        raise ValueError("-k and --limit must be at least 1")
    began = time.perf_counter()
    # Step 1: the dataset, each bad line said once
    if not options.dataset.is_file():
        raise ValueError(f"dataset not found: {options.dataset}")
    items, problems = load_dataset(options.dataset, settings.corpus)
    for problem in problems:
        warn(f"mianjing: skipped {problem}")
    if not items:
        raise ValueError(f"no usable questions in {options.dataset} ({len(problems)} bad lines)")
    chosen = subset(items, options.limit)
    # Step 2: the index, then the answering model when asked for (so it fails before a long run, not after)
    searcher = searcher or Searcher(settings, warn=warn)
    generate = _answering(settings, model, options.judge) if options.generate else None
    # Step 3: retrieval, every mode on the same questions
    rows = _retrieve(searcher, chosen, options)
    result: dict = {"modes": summarize(rows)}
    # Step 4: answers, only when asked
    if generate:  # in the settings' mode, as `ask` answers: --modes only names the retrievers scored above
        warn(f"mianjing: answering in {settings.mode} mode (--mode; --modes scores retrieval only)")
        result["generation"] = {**generate(searcher, items, options), "mode": settings.mode}
    # Step 5: the run record and the reports
    result["run"] = record(settings, options, searcher, chosen, problems, time.perf_counter() - began)
    if options.out:
        report.write(options.out, result, rows)
    return result


def _retrieve(searcher: Searcher, items: list[Item], options: Options) -> dict[str, list[dict]]:
    total = sum(1 for item in items if item.answerable) * len(options.modes)
    with tqdm(total=total, desc="retrieval", unit="q", file=sys.stderr, mininterval=0.5) as bar:
        return retrieval_rows(
            searcher, items, list(options.modes), k=options.k, progress=lambda _: bar.update()
        )


def _answering(
    settings: Settings, model: object | None, judge: str | None
) -> Callable[[Searcher, list[Item], Options], dict]:
    """eval.generation's report bound to the loaded answering model (as `mianjing ask` loads it) and judge."""
    try:  # through sys.modules, where the tests put a fake
        generation = importlib.import_module("eval.generation")
    except ImportError as e:
        raise ValueError(f"--generate is not available: {e}") from e
    if model is None:
        from assistant import loading

        model = loading.model(settings)
    judging = generation.load_judge(judge or "", settings)

    def generate(searcher: Searcher, items: list[Item], o: Options) -> dict:
        return generation.generation_report(
            searcher,
            model,
            items,
            settings,
            judge=judging,
            limit=o.limit,
            progress=lambda line: print(f"mianjing: {line}", file=sys.stderr, flush=True),
        )

    return generate


# ---- the run record -----------------------------------------------------------------------------------


def record(
    settings: Settings,
    options: Options,
    searcher: Searcher,
    items: list[Item],
    problems: list[str],
    seconds: float,
) -> dict:
    manifest = searcher.index.manifest
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "seconds": round(seconds, 1),
        "modes": list(options.modes),
        "k": options.k,
        "settings": {
            k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items() if k not in SECRET
        }
        | {"index_dir": str(settings.index_dir)},
        "commit": commit(),
        "corpus": {
            "path": str(settings.corpus),
            "fingerprint": fingerprint(manifest),
            "files": len(manifest.get("files", {})),
            "chunks": len(searcher.index.chunks),
        },
        "dataset": {
            "path": str(options.dataset),
            "sha256": hashlib.sha256(options.dataset.read_bytes()).hexdigest(),
            "items": len(items),
            "answerable": sum(1 for item in items if item.answerable),
            "limit": options.limit,
            "problems": problems,
        },
        "machine": machine(),
    }


def fingerprint(manifest: dict) -> str:
    """16 hex digits over each note's sha256 and the index settings: equal iff same notes, same chunking."""
    files = {source: f.get("sha256", "") for source, f in manifest.get("files", {}).items()}
    blob = json.dumps({"files": files, "settings": manifest.get("settings", {})}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def commit(repo: Path = REPO) -> str:
    """HEAD's hash, "+dirty" when tracked files changed; "" outside a git checkout."""
    try:
        head = _git(repo, "rev-parse", "HEAD")
        return head + ("+dirty" if _git(repo, "status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return out.stdout.strip()


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    memory = 0.0
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), cpu
        )
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (OSError, ValueError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "memory_gb": round(memory, 1),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
    }
