"""Answer benchmark: time to first token and tokens/s of the `ask` pipeline against raw llama.cpp on the
same prompt, in the same run, plus a follow-up turn in the same conversation.

    python benchmarks/bench_answer.py [--questions 4]

The raw side is `llama_cpp.Llama.create_chat_completion(stream=True)` on a second Llama built with the same
settings; each side gets the same messages, and each measurement starts from the same cache state (a
fresh system prompt for the first question, see the table).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant import prompt  # noqa: E402
from assistant.answer import AnswerSettings, Conversation  # noqa: E402
from assistant.llm import Generator, ensure_gguf  # noqa: E402
from assistant.retrieval import Searcher  # noqa: E402
from assistant.settings import from_env, generator_args  # noqa: E402
from benchmarks.bench_retrieval import machine  # noqa: E402

QUESTIONS = [
    "LoRA 的原理是什么？",
    "RMSNorm 和 LayerNorm 有什么区别？",
    "什么是 KV Cache？",
    "ZeRO-3 切分了哪些东西？",
]


def raw_stream(llama: object, messages: list[tuple[str, str]], max_tokens: int) -> tuple[float, float, int]:
    """(seconds to first token, total seconds, tokens) for raw llama.cpp."""
    began, first, n = time.perf_counter(), 0.0, 0
    chat = [{"role": r, "content": t} for r, t in messages]
    for part in llama.create_chat_completion(chat, stream=True, temperature=0.0, max_tokens=max_tokens):  # type: ignore[attr-defined]
        if part["choices"][0]["delta"].get("content"):
            n += 1
            first = first or time.perf_counter() - began
    return first, time.perf_counter() - began, n


def medians(rows: list[tuple], model: str) -> dict[str, str]:
    """The medians over the questions, as benchmarks/results.py shows them."""
    med = statistics.median
    first = med(a.timings_ms.get("first_token", 0) / 1000 for _, a, *_ in rows)
    raw_first = med(rf for _, _, _, rf, *_ in rows)
    speed = med(a.tokens_per_s for _, a, *_ in rows)
    raw_speed = med((rn - 1) / max(rt - rf, 1e-6) for _, _, _, rf, rt, rn, _ in rows)
    follow = med(f.timings_ms.get("first_token", 0) / 1000 for *_, f in rows)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "answer model": model,
        "`ask` first token / raw llama.cpp (median)": f"{first:.1f} s / {raw_first:.1f} s",
        "`ask` tokens/s / raw llama.cpp (median)": f"{speed:.1f} / {raw_speed:.1f}",
        "`ask` follow-up first token (median)": f"{follow:.1f} s",
        "questions answered": str(len(rows)),
        "peak RSS (pipeline + raw model)": f"{peak:.0f} MB",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="print the medians as one JSON object instead")
    args = ap.parse_args()
    settings = from_env()
    searcher = Searcher(settings, warn=lambda _: None)
    generator = Generator(**generator_args(settings))  # type: ignore[arg-type]
    from llama_cpp import Llama

    path = ensure_gguf(settings.llm, settings.cache)
    threads = settings.llm_threads or len(os.sched_getaffinity(0))
    raw = Llama(
        model_path=str(path),
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    options = AnswerSettings.of(settings)
    rows = []
    for question in QUESTIONS[: args.questions]:
        chat = Conversation()
        t = time.perf_counter()
        first = chat.ask(question, searcher=searcher, model=generator, settings=options)
        pipe_total = time.perf_counter() - t
        messages = prompt.messages(first.standalone_question, first.passages)
        r_first, r_total, r_tokens = raw_stream(raw, messages, settings.max_tokens)
        follow = chat.ask("为什么？", searcher=searcher, model=generator, settings=options)
        rows.append((question, first, pipe_total, r_first, r_total, r_tokens, follow))
    if args.json:
        print(json.dumps(medians(rows, generator.describe()), ensure_ascii=False))
        return
    print(f"\nmachine: {machine()}; model {generator.describe()}; date {time.strftime('%Y-%m-%d')}\n")
    header = [
        "question",
        "pipeline first token",
        "raw first token",
        "pipeline tok/s",
        "raw tok/s",
        "ratio",
        "follow-up first token",
    ]
    print("| " + " | ".join(header) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ratios = []
    for q, a, _, rf, rt, rn, f in rows:
        raw_speed = (rn - 1) / max(rt - rf, 1e-6)
        ratios.append(a.tokens_per_s / raw_speed if raw_speed else 0.0)
        first, follow = a.timings_ms.get("first_token", 0) / 1000, f.timings_ms.get("first_token", 0) / 1000
        print(
            f"| {q} | {first:.1f} s | {rf:.1f} s | {a.tokens_per_s:.1f} | {raw_speed:.1f} | {ratios[-1]:.2f} "
            f"| {follow:.1f} s |"
        )
    print(f"\nmedian speed ratio pipeline/raw: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
