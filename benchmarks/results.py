"""Run every benchmark and write one table: benchmarks/results.md (what `make bench` does).

    python benchmarks/results.py [--scale 10] [--repeat 3] [--questions 4] [--out benchmarks/results.md]

Each script runs in its own process (so each peak RSS is its own) and prints one JSON object:
bench_retrieval.py on the notes, bench_scale.py on a `--scale`x synthetic copy, bench_answer.py for `ask`
against raw llama.cpp. A script that fails is reported in the table and the others still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_retrieval import machine  # noqa: E402

HERE = Path(__file__).resolve().parent


def bench(script: str, *args: str) -> dict[str, str]:
    """Its JSON rows, or {"failed": why}; progress and warnings pass through to stderr."""
    print(f"bench: {script} {' '.join(args)}", file=sys.stderr, flush=True)
    command = [sys.executable, str(HERE / script), *args, "--json"]
    out = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines:
        return {"failed": f"{script} exited {out.returncode}"}
    return json.loads(lines[-1])


def table(notes: dict[str, str], scaled: dict[str, str], answer: dict[str, str], scale: int) -> str:
    names = list(dict.fromkeys([*notes, *scaled]))
    lines = [f"| measure | bundled notes | {scale}x synthetic notes |", "| --- | --- | --- |"]
    lines += [f"| {name} | {notes.get(name, '')} | {scaled.get(name, '')} |" for name in names]
    lines += [f"| {name} | {value} | |" for name, value in answer.items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument(
        "--repeat", type=int, default=3, help="passes over the dev questions on the bundled notes"
    )
    ap.add_argument("--questions", type=int, default=4, help="questions for the answer benchmark")
    ap.add_argument("--out", type=Path, default=HERE / "results.md")
    args = ap.parse_args()
    began = time.perf_counter()
    notes = bench("bench_retrieval.py", "--repeat", str(args.repeat))
    scaled = bench("bench_scale.py", "--scale", str(args.scale))
    answer = bench("bench_answer.py", "--questions", str(args.questions))
    text = (
        f"# Benchmarks\n\nmachine: {machine()}; date: {time.strftime('%Y-%m-%d')}; "
        f"all benchmarks took {(time.perf_counter() - began) / 60:.0f} min\n\n"
        f"{table(notes, scaled, answer, args.scale)}\n"
    )
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
