"""The `mianjing practice` and `mianjing coverage` commands (registered by ui/cli.py).

    mianjing practice [--topic Q] [--file GLOB] [--heading TEXT]   interactive: card, answer, grade, override
    mianjing practice stats [--json]
    mianjing practice next --json
    mianjing practice grade CARD_ID --answer TEXT [--rating R] [--no-save] [--json]
    mianjing practice grade --question TEXT --answer TEXT --json     graded against retrieval, never saved
    mianjing practice export --anki deck.apkg | --markdown FILE
    mianjing coverage [--out DIR] [--json]

Each parses, calls `practice.session` / the practice modules once, and prints. Grading is by the notes'
sentences, word overlap and e5; with MIANJING_GRADER=model the language model grades when it loads
(`--no-llm`: never), else overlap does, said once on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from assistant.retrieval import Searcher
from assistant.settings import Settings
from practice import answerable, coverage, export, schedule, session
from practice.grade import DONT_KNOW, RATINGS, Grade
from practice.points import Model

ACTIONS = ("stats", "next", "grade", "export")


def add_parsers(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    scope = argparse.ArgumentParser(add_help=False)
    scope.add_argument("--topic", help="only cards about this (a search query)")
    scope.add_argument("--file", default="", help="only cards of this note (name or glob)")
    scope.add_argument("--heading", default="", help="only cards whose heading path contains this")
    scope.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("practice", parents=[*parents, scope], help="quiz yourself on your notes (FSRS)")
    p.add_argument("action", nargs="?", choices=ACTIONS, help="none = the interactive quiz")
    p.add_argument("card", nargs="?", help="card id (grade)")
    p.add_argument("--answer", help="your answer (grade)")
    p.add_argument("--question", help="grade an answer to any question, against what retrieval finds")
    p.add_argument("--rating", choices=RATINGS, help="save this rating instead of the grade's (grade)")
    p.add_argument("--no-save", action="store_true", help="grade without saving the review")
    p.add_argument(
        "--no-llm", action="store_true", help="never grade with the language model (MIANJING_GRADER=model)"
    )
    p.add_argument("--anki", type=Path, help="export: write an Anki deck (.apkg)")
    p.add_argument("--markdown", type=Path, help="export: write a markdown study sheet")
    c = sub.add_parser("coverage", parents=[*parents, scope], help="which questions your notes answer")
    c.add_argument("--out", type=Path, help="folder for coverage.jsonl, report.md and report.html")


def practice(args: argparse.Namespace, settings: Settings) -> int:
    if args.card and args.action != "grade":  # "practice next CARD" would quietly give another card
        raise ValueError(
            f"only practice grade takes a card id ({args.card!r} given to {args.action or 'the quiz'})"
        )
    searcher = Searcher(settings)
    cards = session.cards(searcher, source=args.file, heading=args.heading, topic=args.topic or "")
    deck = schedule.load(settings.index_dir / schedule.STATE)
    if deck.problem:
        _warn(f"mianjing: {deck.problem}")
    if args.action == "stats":
        result = schedule.stats(deck, cards)
        print(json.dumps(result, ensure_ascii=False, indent=1) if args.json else _stats_text(result))
    elif args.action == "next":
        print(json.dumps(_next_json(searcher, deck, cards, settings), ensure_ascii=False, indent=1))
    elif args.action == "grade":
        return _grade(args, settings, searcher, deck, cards)
    elif args.action == "export":
        _export(args, searcher, cards, settings)
    else:
        _quiz(args, settings, searcher, deck, cards)
    return 0


def _model(args: argparse.Namespace, settings: Settings) -> Model | None:
    return None if args.no_llm else session.load_model(settings, _warn)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _next_json(searcher: Searcher, deck: schedule.Deck, cards: list, settings: Settings) -> dict:
    a = session.next_card(searcher, deck, cards, settings)
    if a is None:
        return {"card": None, "reason": "nothing due: no reviewed card is due and today's new cards are done"}
    state = deck.cards.get(a.card.id)
    return {
        "card": a.card.id,
        "question": a.card.question,
        "source": a.card.source,
        "heading": " > ".join(a.card.heading),
        "start": a.card.start,
        "end": a.card.end,
        "new": state is None,
        "due": state.due.isoformat() if state else None,
        "confidence": round(a.confidence, 4),
        "passages": [c.id for c in a.passages],
    }


def _grade(
    args: argparse.Namespace, settings: Settings, searcher: Searcher, deck: schedule.Deck, cards: list
) -> int:
    if args.answer is None:
        raise ValueError("practice grade needs --answer TEXT (an empty one counts as 'I don't know')")
    if bool(args.card) == bool(args.question):
        raise ValueError("practice grade needs a card id or --question TEXT (one of them)")
    if args.rating and not args.card:
        raise ValueError("--rating needs a card id: a grade of --question TEXT is not saved")
    if args.card:
        a = answerable.answerability(
            session.find(cards, args.card), searcher, answered_above=settings.answered_above
        )
    else:
        a = answerable.for_question(args.question, searcher, answered_above=settings.answered_above)
    session.check_answered(a)  # before loading a model for nothing
    model = None if DONT_KNOW.match(args.answer) else _model(args, settings)
    result = session.grade_answer(a, args.answer, searcher=searcher, model=model, settings=settings)
    next_due = None
    rating = args.rating or result.rating
    if args.card:
        next_due = (schedule.review if args.no_save else schedule.record)(deck, a.card.id, rating).due
    out = session.as_json(result, a, next_due)
    if rating != result.rating:  # the rating saved is the user's; the grade's own is kept beside it
        out["rating"], out["graded"] = rating, result.rating
    print(json.dumps(out, ensure_ascii=False, indent=1) if args.json else _grade_text(result, out))
    return 0


def _export(args: argparse.Namespace, searcher: Searcher, cards: list, settings: Settings) -> None:
    if not args.anki and not args.markdown:
        raise ValueError("practice export needs --anki FILE.apkg or --markdown FILE")
    for flag, path, example in (
        ("--anki", args.anki, "deck.apkg"),
        ("--markdown", args.markdown, "sheet.md"),
    ):
        if path and path.is_dir():  # checked before the cards are looked up: that takes a while
            raise ValueError(f"{flag} {path} is a folder: give a file name, e.g. {path / example}")
    found = [answerable.answerability(c, searcher, answered_above=settings.answered_above) for c in cards]
    if args.anki:
        n = export.anki(found, args.anki)
        print(f"mianjing: wrote {n} cards to {args.anki}", file=sys.stderr)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(export.markdown(found), encoding="utf-8")
        print(f"mianjing: wrote {sum(a.answered for a in found)} cards to {args.markdown}", file=sys.stderr)


def _quiz(
    args: argparse.Namespace, settings: Settings, searcher: Searcher, deck: schedule.Deck, cards: list
) -> None:
    model = _model(args, settings)
    print(f"mianjing: {len(cards)} questions in scope. Empty answer = I don't know; Ctrl-D quits.")
    seen: set[str] = set()
    while (a := session.next_card(searcher, deck, cards, settings, skip=frozenset(seen))) is not None:
        seen.add(a.card.id)
        print(f"\n问: {a.card.question}\n    ({a.card.where})")
        prepared = session.prepare_in_background(a, model=model, settings=settings)  # while typing
        try:
            answer = input("答> ")
            _wait(prepared)
            result = session.grade_answer(a, answer, searcher=searcher, model=model, settings=settings)
            print(_grade_text(result, session.as_json(result, a, None)))
            rating = _ask_rating(result.rating)
        except EOFError:
            print()
            return
        due = (schedule.review if args.no_save else schedule.record)(deck, a.card.id, rating).due
        print(f"{'not saved' if args.no_save else 'saved'}: {rating}; next review {due:%Y-%m-%d %H:%M} UTC")
    print("\nmianjing: nothing more due today.")


def rating_of(typed: str, graded: str) -> str | None:
    """The rating a typed reply means: Enter keeps the grade's; a rating's name, its first letter or its
    number (1 again … 4 easy, as FSRS counts); None for anything else."""
    typed = typed.strip().lower()
    if not typed:
        return graded
    for n, name in enumerate(RATINGS, start=1):
        if typed in (name, name[0], str(n)):
            return name
    return None


def _ask_rating(graded: str) -> str:
    """Ask until the reply is a rating (a typo is asked again, never saved as the grade's)."""
    choices = "/".join(f"{n}.{name}" for n, name in enumerate(RATINGS, start=1))
    while (rating := rating_of(input(f"rating [{choices}; Enter = {graded}]> "), graded)) is None:
        print(f"  not a rating: type one of {', '.join(RATINGS)} (or its first letter or number)")
    return rating


def _wait(prepared: threading.Thread) -> None:
    """Let the key points made in the background finish before the model grades."""
    if prepared.is_alive():
        print("mianjing: reading the notes' key points…", file=sys.stderr, flush=True)
    prepared.join()


def _grade_text(result: Grade, out: dict) -> str:
    lines = [f"\n{result.rating.upper()}: {result.reason}"]
    lines += [f"  ✓ {p}" for p in out["covered"]]
    lines += [f"  ✗ {c['point']}  [{c['id']} {c['start']}:{c['end']}]" for c in out["citations"]]
    lines += ["", "notes' answer:", result.notes_answer.strip()]
    if out["next_due"]:
        lines.append(f"\nnext review: {out['next_due']}")
    return "\n".join(lines)


def _stats_text(s: dict) -> str:
    retention = "n/a" if s["retention"] is None else f"{s['retention']:.0%}"
    lines = [
        f"{s['cards']} cards: {s['due_today']} due today, {s['new']} new, {s['retired']} retired",
        f"reviews: {s['reviewed']} ({s['reviewed_today']} today), retention {retention}",
        "",
    ]
    lines += [f"  {t}: {c.get('reviewed', 0)}/{c['cards']} reviewed" for t, c in s["per_topic"].items()]
    return "\n".join(lines)


def coverage_command(args: argparse.Namespace, settings: Settings) -> int:
    searcher = Searcher(settings)
    cards = session.cards(searcher, source=args.file, heading=args.heading, topic=args.topic or "")
    found = coverage.ordered(
        [answerable.answerability(c, searcher, answered_above=settings.answered_above) for c in cards]
    )
    rows = [coverage.row(a) for a in found]
    text = coverage.report(found)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (args.out / "coverage.jsonl").write_text(lines, encoding="utf-8")
        (args.out / "report.md").write_text(text, encoding="utf-8")
        page = coverage.html(found, title=f"Study plan — {settings.corpus.name}")
        (args.out / "report.html").write_text(page, encoding="utf-8")
        written = ", ".join(str(args.out / name) for name in ("coverage.jsonl", "report.md", "report.html"))
        print(f"mianjing: wrote {written}", file=sys.stderr)
    if args.json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
    elif not args.out:
        print(text)
    return 0
