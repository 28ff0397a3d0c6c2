"""How cost grows with the notes: ingest and search on a synthetic corpus `--scale` times the notes (10x).

    python benchmarks/bench_scale.py [--scale 10] [--corpus DIR] [--questions FILE] [--repeat 1] [--json]

Copy i of each note (i = 0 .. scale-1, copy 0 verbatim) keeps every paragraph but shuffles them within
windows of WINDOW paragraphs (seed i) and tags its heading lines "(v i)", so the copies chunk into distinct
passages with the size distribution of the real notes. The measures are bench_retrieval.py's, same names.

Does not: make realistic new content (the copies are near-duplicates, which makes retrieval harder, not
cheaper) or time answering (bench_answer.py does; answer cost depends on the passages, not the corpus).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_retrieval import measure, print_table  # noqa: E402
from eval.dataset import read_questions  # noqa: E402
from ingest.load import load_notes  # noqa: E402

WINDOW = 6  # paragraphs shuffled together


def vary(text: str, i: int) -> str:
    """Copy i of a note: paragraphs shuffled within windows, headings tagged; copy 0 is the note itself."""
    if i == 0:
        return text
    rng = random.Random(i)
    blocks = text.split("\n\n")
    out = []
    for at in range(0, len(blocks), WINDOW):
        window = blocks[at : at + WINDOW]
        rng.shuffle(window)
        out += window
    return "\n".join(_tag(line, i) for line in "\n\n".join(out).split("\n"))


def _tag(line: str, i: int) -> str:
    heading = line.startswith("#") or (line.startswith("**") and line.rstrip().endswith("**"))
    return f"{line} (v{i})" if heading else line


def synthesize(corpus: Path, folder: Path, scale: int) -> int:
    """Write `scale` varied copies of every note under folder/copy<i>/; returns the files written."""
    notes = load_notes(corpus, warn=lambda _: None)
    for i in range(scale):
        for note in notes:
            path = folder / f"copy{i}" / note.source
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(vary(note.text, i), encoding="utf-8")
    return len(notes) * scale


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--corpus", type=Path, default=REPO / "corpus")
    ap.add_argument("--questions", type=Path, default=REPO / "eval" / "data" / "dev.jsonl")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        files = synthesize(args.corpus, Path(tmp) / "notes", args.scale)
        rows = {
            "synthetic corpus": f"{args.scale}x: {files} files ({time.perf_counter() - t:.1f} s to write)"
        }
        rows |= measure(Path(tmp) / "notes", read_questions(args.questions), args.repeat)
    print_table(rows, as_json=args.json)


if __name__ == "__main__":
    main()
