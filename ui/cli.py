"""The `mianjing` command: ingest | search | ask | chat | eval | tune | practice | coverage | ui.

`search` and `ask` take one question, a file of them (`--questions`: one per line, plain text or JSONL), or
none (an interactive prompt for search); `chat` is a conversation with follow-up questions.

Each command parses its flags, makes one library call and prints; `--json` prints machine-readable results.
Errors a user can fix (missing notes folder, broken index, absent model) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "Loading weights" bars on every start
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from assistant.settings import Settings, from_env  # noqa: E402
from eval.dataset import read_questions  # noqa: E402
from ingest.load import CorpusError  # noqa: E402
from retriever.search import MODES, Result, as_json  # noqa: E402
from ui import practice_cli as practice_  # noqa: E402

if TYPE_CHECKING:
    from assistant.answer import Answer
    from assistant.retrieval import Searcher


QUESTIONS_HELP = 'file of questions, one per line: plain text, or JSONL {"question": …} in a .jsonl file'


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = from_env(
            llm=getattr(args, "llm", None),
            llm_base_url=getattr(args, "llm_base_url", None),
            corpus=args.corpus,
            index=args.index,
            mode=getattr(args, "mode", None),
            k=getattr(args, "k", None),
            reranker=args.reranker,
        )
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
    common.add_argument(
        "--reranker",
        help="'windows' (built in, the default), or a CrossEncoder name or folder (env MIANJING_RERANKER)",
    )
    answering = argparse.ArgumentParser(add_help=False)
    answering.add_argument("-k", type=int, help="passages retrieved (default 10)")
    answering.add_argument("--mode", choices=MODES, help="retriever (default hybrid)")
    answering.add_argument(
        "--llm", help="qwen2.5-coder-1.5b (default), qwen2.5-coder-0.5b, a .gguf, openai:<model>"
    )
    answering.add_argument("--llm-base-url", help="OpenAI-compatible server for --llm openai:<model>")
    top = argparse.ArgumentParser(
        prog="mianjing", parents=[common], description="Search and ask your own interview notes, offline."
    )
    sub = top.add_subparsers(dest="command")
    sub.add_parser("ingest", parents=[common], help="build or update the index of the notes folder")
    search = sub.add_parser("search", parents=[common], help="rank passages for a question")
    search.add_argument("query", nargs="?", help="the question; none = interactive prompt")
    search.add_argument("-k", type=int, help="how many passages (default 10)")
    search.add_argument("--mode", choices=MODES, help="retriever (default hybrid)")
    search.add_argument("--questions", type=Path, help=QUESTIONS_HELP)
    search.add_argument("--json", action="store_true", help="print JSON (one object per question)")
    ask = sub.add_parser("ask", parents=[common, answering], help="answer a question from the notes, cited")
    ask.add_argument("query", nargs="?", help="the question")
    ask.add_argument("--questions", type=Path, help=QUESTIONS_HELP)
    ask.add_argument("--json", action="store_true", help="print JSON (one object per question)")
    sub.add_parser("chat", parents=[common, answering], help="a conversation about your notes")
    app = sub.add_parser("ui", parents=[common, answering], help="start the chat app (localhost)")
    app.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    app.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    scoring = sub.add_parser("eval", parents=[common], help="score retrieval (and answers) on a question set")
    scoring.add_argument("--dataset", type=Path, help="JSONL with evidence (default eval/data/dev.jsonl)")
    scoring.add_argument("--modes", default=",".join(MODES), help="retrievers to score, comma-separated")
    scoring.add_argument(
        "--mode", choices=MODES, help="retriever the answers of --generate use (default hybrid; not --modes)"
    )
    scoring.add_argument("-k", type=int, default=10, help="passages retrieved per question (default 10)")
    scoring.add_argument("--generate", action="store_true", help="also answer the questions and score them")
    scoring.add_argument("--judge", help="judge for the LLM-scored answer metrics (with --generate)")
    scoring.add_argument("--llm", help="answering model for --generate, as for ask")
    scoring.add_argument(
        "--limit",
        type=int,
        help="the first N questions, answerable and unanswerable in their dataset shares (retrieval scores "
        "the answerable ones among them)",
    )
    scoring.add_argument("--out", type=Path, help="folder for metrics.json, report.md, report.html")
    scoring.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="diff two metrics.json")
    scoring.add_argument("--json", action="store_true", help="print the metrics as JSON")
    tuning = sub.add_parser(
        "tune", parents=[common], help="train a reranker on these notes; used only when it ranks them better"
    )
    tuning.add_argument("--llm", help="model that writes the training questions, as for ask")
    tuning.add_argument("--llm-base-url", help="OpenAI-compatible server for --llm openai:<model>")
    practice_.add_parsers(sub, [common, answering])
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

    query = getattr(args, "query", None)
    if query is not None and not query.strip():
        raise ValueError("search needs a non-empty question")
    questions = read_questions(args.questions) if getattr(args, "questions", None) else None
    searcher = Searcher(settings)
    if questions is not None:  # read before the index opens: a bad file costs no build
        for question in questions:
            print(json.dumps(as_json(searcher.search(question)), ensure_ascii=False), flush=True)
    elif query:
        result = searcher.search(query)
        print(json.dumps(as_json(result), ensure_ascii=False, indent=1) if args.json else render(result))
    elif getattr(args, "json", False):
        raise ValueError("search --json needs a question (or --questions FILE)")
    else:
        interactive(searcher)
    return 0


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


def interactive(searcher: Searcher) -> None:
    print(
        f"mianjing: {len(searcher.index.chunks)} passages from {searcher.settings.corpus}. "
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
        print(render(searcher.search(query), width=200))


def ask(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.answer import answer
    from assistant.answer import as_json as answer_json
    from assistant.loading import answering

    questions = read_questions(args.questions) if args.questions else [args.query or ""]
    if not args.questions and not questions[0].strip():
        raise ValueError("ask needs a question (or --questions FILE); for a conversation use: mianjing chat")
    searcher, model = answering(settings)
    if args.questions or args.json:
        for question in questions:
            result = answer(question, searcher=searcher, model=model, settings=settings)
            print(json.dumps(answer_json(result), ensure_ascii=False), flush=True)
        return 0
    print_answer(answer(args.query, searcher=searcher, model=model, settings=settings, on_text=_stream))
    return 0


def chat(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.answer import Conversation
    from assistant.loading import answering

    searcher, model = answering(settings)
    conversation = Conversation(keep=settings.history_turns)
    print(
        f"mianjing: chatting about {settings.corpus} with {model.describe()}. "
        "Ctrl-D or an empty line to leave."
    )
    while True:
        try:
            question = input("\n问> ").strip()
            if not question:
                return 0
            result = conversation.ask(
                question, searcher=searcher, model=model, settings=settings, on_text=_stream
            )
            print_answer(result, follow_up=len(conversation.messages) > 2)
        except (EOFError, KeyboardInterrupt):
            print()
            return 0


def _stream(piece: str) -> None:
    print(piece, end="", flush=True)


def print_answer(r: Answer, *, follow_up: bool = False) -> None:
    """After the streamed text: the refusal or the cited sources, each with a short excerpt."""
    from assistant.cite import wording  # marks and spacing aside: did the check leave a line out?
    from assistant.prompt import readable  # an excerpt without the notes' inline HTML

    if follow_up and r.standalone_question != r.question:
        print(f"\n(rewritten: {r.standalone_question})")
    if r.diagnostics.query and r.diagnostics.query != r.standalone_question:
        print(f"\n(searched as: {r.diagnostics.query})")
    if r.refused:
        if r.diagnostics.generated:
            print(f"\n\n⚠ not supported by your notes ({r.reason}); treated as:")
        print(f"\n{r.text}  ({r.reason})\nclosest passages:")
        for hit in r.pointers:
            print(f"  · {' > '.join(hit.chunk.heading)}")
        return
    if r.quoted:
        print(f"\n\n⚠ {r.reason}:\n{r.text}")
    elif wording(r.text) != wording(r.diagnostics.generated):  # the check left a line out (a loop, headings)
        print(f"\n\nas checked against your notes:\n{r.text}")
    print("\n\nsources:")
    for p in r.passages:
        mark = "" if any(c.n == p.n for c in r.citations) else " (not cited)"
        excerpt = " ".join(readable(p.text).split())[:100]
        print(f"  [{p.n}] {' > '.join(p.chunk.heading)}{mark}\n      {excerpt}")
    uncited = [s.text.strip() for s in r.sentences if not s.numbers]
    if uncited:
        print(f"  ! {len(uncited)} sentence(s) without a source: {uncited[0][:60]}…")


def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from eval import command, compare, report

    if args.compare:
        result = compare.compare(*args.compare)
        written = compare.write(result, args.out or args.compare[1].parent)
        text = compare.markdown(result)
    else:
        options = command.Options(
            dataset=args.dataset or command.DEV,
            modes=command.parse_modes(args.modes),
            k=args.k,
            generate=args.generate,
            limit=args.limit,
            judge=args.judge,
            out=args.out,
        )
        result = command.run(settings, options)
        written = [args.out / "report.html"] if args.out else []
        text = report.summary(result)
    print(json.dumps(result, ensure_ascii=False, indent=1) if args.json else text)
    for path in written:
        print(f"mianjing: wrote {path}", file=sys.stderr)
    return 0


def tune(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.retrieval import Searcher
    from tune import command, questions

    record = command.run(settings, Searcher(settings), questions.loader(settings), argv=sys.argv[2:])
    shown = {k: record[k] for k in ("heldout", "activated", "verdict")}
    print(json.dumps(shown, ensure_ascii=False, indent=1))
    return 0


def ui(args: argparse.Namespace, settings: Settings) -> int:
    from ui import serve

    return serve.run(settings, port=args.port, host=args.host)


COMMANDS = {
    "ingest": ingest,
    "search": search,
    "ask": ask,
    "chat": chat,
    "eval": evaluate,
    "tune": tune,
    "practice": practice_.practice,
    "coverage": practice_.coverage_command,
    "ui": ui,
}


if __name__ == "__main__":
    sys.exit(main())
