"""First question of a fresh process, with and without the system prompt's saved state (assistant/prefix.py).

    python benchmarks/bench_prime.py [--rounds 2]

Each measurement is a new process (as a new `mianjing ask` is) that answers two questions: the first one's
first token is what a person waits for after starting mianjing, the second one's is the warm figure. "cold"
loads the model without priming (the system prompt is evaluated as part of the first question, as before
prefix.py); "primed" loads it as `mianjing ask` does, from the state the first primed process saved. The
variants alternate, so both see the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUESTIONS = ["什么是 KV Cache？", "ZeRO-3 切分了哪些东西？"]


def child(variant: str) -> dict:
    """One fresh process: load, (prime,) answer QUESTIONS; first tokens in seconds."""
    from assistant import prompt
    from assistant.answer import answer
    from assistant.llm import Generator
    from assistant.retrieval import Searcher
    from assistant.settings import from_env

    settings = from_env()
    searcher = Searcher(settings, warn=lambda _: None)
    began = time.perf_counter()
    model = Generator.of(settings)
    primed = None
    if variant == "primed":
        primed = model.prime(prompt.fixed_start(settings.answer_style))
    loaded = time.perf_counter() - began
    firsts = []
    for question in QUESTIONS:
        result = answer(question, searcher=searcher, model=model, settings=settings)
        firsts.append(result.diagnostics.timings_ms.get("first_token", 0.0) / 1000)
    return {
        "variant": variant,
        "load_s": round(loaded, 2),
        "first": firsts,
        "primed": None if primed is None else [primed.how, primed.tokens, primed.bytes, primed.ms],
    }


def run(variant: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant], capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", choices=["cold", "primed"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    from benchmarks.bench_retrieval import machine

    made = run("primed")  # evaluates and saves the state when the cache has none yet
    rows = [run(v) for _ in range(args.rounds) for v in ("cold", "primed")]
    print(f"machine: {machine()}; date {time.strftime('%Y-%m-%d')}")
    print(f"state: {made['primed']} (how, prefix tokens, bytes, ms) when this run began")
    med = statistics.median
    print("| variant | load + prime s | first question, first token s | second question, first token s |")
    print("| --- | --- | --- | --- |")
    for variant in ("cold", "primed"):
        mine = [r for r in rows if r["variant"] == variant]
        print(
            f"| {variant} | {med(r['load_s'] for r in mine):.2f} | {med(r['first'][0] for r in mine):.2f} "
            f"| {med(r['first'][1] for r in mine):.2f} |"
        )
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
