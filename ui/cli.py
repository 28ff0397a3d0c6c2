"""The `mianjing` command: ingest | search (one question, a JSONL file of them, or an interactive prompt).

Each command parses its flags, makes one library call and prints; `--json` prints machine-readable results.
Errors a user can fix (missing notes folder, broken index, absent model) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "Loading weights" bars on every start
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from assistant.settings import Settings, from_env  # noqa: E402
from ingest.load import CorpusError  # noqa: E402
from retriever.search import MODES, Result, as_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = from_env(
        corpus=args.corpus,
        index=args.index,
        mode=getattr(args, "mode", None),
        k=getattr(args, "k", None),
        reranker=args.reranker,
    )
    try:
        return COMMANDS[args.command or "search"](args, settings)
    except (CorpusError, RuntimeError, ValueError, OSError) as e:
        print(f"mianjing: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--corpus", type=Path, help="notes folder (env MIANJING_CORPUS; default: bundled notes)"
    )
    common.add_argument("--index", type=Path, help="index folder (env MIANJING_INDEX)")
    common.add_argument("--reranker", help="CrossEncoder name or folder (env MIANJING_RERANKER)")
    top = argparse.ArgumentParser(
        prog="mianjing", parents=[common], description="Search and ask your own interview notes, offline."
    )
    sub = top.add_subparsers(dest="command")
    sub.add_parser("ingest", parents=[common], help="build or update the index of the notes folder")
    search = sub.add_parser("search", parents=[common], help="rank passages for a question")
    search.add_argument("query", nargs="?", help="the question; none = interactive prompt")
    search.add_argument("-k", type=int, help="how many passages (default 10)")
    search.add_argument("--mode", choices=MODES, help="retriever (default hybrid)")
    search.add_argument("--questions", type=Path, help='JSONL file, one {"question": …} per line')
    search.add_argument("--json", action="store_true", help="print JSON (one object per question)")
    return top


def ingest(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.retrieval import Searcher

    _, report = Searcher(settings, build=False).ingest()
    how = f"rebuilt ({report.rebuilt})" if report.rebuilt else "updated"
    print(
        f"mianjing: index {how}: {report.files} files, {report.chunks} chunks "
        f"(+{len(report.added)} new, {len(report.changed)} changed, -{len(report.deleted)} deleted, "
        f"{report.unchanged} unchanged) in {report.seconds:.1f} s -> {settings.index_dir}"
    )
    return 0


def search(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.retrieval import Searcher

    searcher = Searcher(settings)
    if getattr(args, "questions", None):
        for question in read_questions(args.questions):
            print(json.dumps(as_json(searcher.search(question)), ensure_ascii=False), flush=True)
    elif getattr(args, "query", None):
        result = searcher.search(args.query)
        print(json.dumps(as_json(result), ensure_ascii=False, indent=1) if args.json else render(result))
    else:
        interactive(searcher)
    return 0


def read_questions(path: Path) -> list[str]:
    """The `question` field of each JSONL line; a bad line is a one-line error naming it."""
    questions = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            questions.append(str(json.loads(line)["question"]))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f'{path}:{n}: not a JSON object with a "question" field ({e})') from e
    return questions


def render(result: Result, *, width: int = 160) -> str:
    """Hits as a readable list: rank, score, source > heading, then the start of the passage."""
    lines = [f"{result.mode} · {len(result.hits)} hits · {result.timings_ms['total']:.0f} ms"]
    if result.reranker:
        lines.append(f"(reranker off: {result.reranker})")
    for n, hit in enumerate(result.hits, start=1):
        c = hit.chunk
        mark = "" if c.has_answer else "  [question only]"
        lines.append(f"\n{n:>2}. {hit.score:.4f}  {' > '.join(c.heading)}  [{c.start}:{c.end}]{mark}")
        lines.append("    " + " ".join(c.text.split())[:width])
    return "\n".join(lines)


def interactive(searcher: object) -> None:
    print(
        f"mianjing: {len(searcher.index.chunks)} passages from {searcher.settings.corpus}. "  # type: ignore
        "Ask a question (empty line or Ctrl-D to quit)."
    )
    while True:
        try:
            query = input("\n问> ").strip()
        except EOFError:
            print()
            return
        if not query:
            return
        print(render(searcher.search(query), width=200))  # type: ignore[attr-defined]


COMMANDS = {"ingest": ingest, "search": search}


if __name__ == "__main__":
    sys.exit(main())
