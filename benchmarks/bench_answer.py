"""Answer benchmark: time to first token and tokens/s of the `ask` pipeline against raw llama.cpp on the
same prompt, in the same run, plus a follow-up turn in the same conversation.

    python benchmarks/bench_answer.py [--questions 4]

The raw side is `llama_cpp.Llama.create_chat_completion(stream=True)` on a second Llama built with the same
settings; each side gets the same messages, and each measurement starts from the same cache state (a
system prompt already evaluated, loaded from the state saved by assistant/prefix.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from llama_cpp import Llama  # noqa: E402

from assistant import prefix, prompt  # noqa: E402
from assistant.answer import Answer, Conversation  # noqa: E402
from assistant.llm import ensure_gguf  # noqa: E402
from assistant.loading import answering  # noqa: E402
from assistant.settings import from_env  # noqa: E402
from benchmarks.bench_retrieval import machine  # noqa: E402

QUESTIONS = [
    "LoRA 的原理是什么？",
    "RMSNorm 和 LayerNorm 有什么区别？",
    "什么是 KV Cache？",
    "ZeRO-3 切分了哪些东西？",
]


@dataclass(frozen=True)
class Row:
    """One question: the pipeline's answer and follow-up, and raw llama.cpp on the answer's own prompt."""

    question: str
    answer: Answer
    follow_up: Answer
    raw_first: float  # seconds to raw llama.cpp's first token
    raw_total: float
    raw_tokens: int

    @property
    def first(self) -> float:
        return self.answer.diagnostics.timings_ms.get("first_token", 0) / 1000

    @property
    def follow_first(self) -> float:
        return self.follow_up.diagnostics.timings_ms.get("first_token", 0) / 1000

    @property
    def speed(self) -> float:
        return self.answer.diagnostics.tokens_per_s

    @property
    def raw_speed(self) -> float:
        return (self.raw_tokens - 1) / max(self.raw_total - self.raw_first, 1e-6)


def raw_stream(llama: Llama, messages: list[tuple[str, str]], max_tokens: int) -> tuple[float, float, int]:
    """(seconds to first token, total seconds, tokens) for raw llama.cpp."""
    began, first, n = time.perf_counter(), 0.0, 0
    chat: list[Any] = [{"role": r, "content": t} for r, t in messages]
    parts = llama.create_chat_completion(chat, stream=True, temperature=0.0, max_tokens=max_tokens)
    for part in cast(Iterator[dict[str, Any]], parts):  # stream=True: an iterator of chunks
        if part["choices"][0]["delta"].get("content"):
            n += 1
            first = first or time.perf_counter() - began
    return first, time.perf_counter() - began, n


def medians(rows: list[Row], model: str) -> dict[str, str]:
    """The medians over the questions, as benchmarks/results.py shows them."""
    med = statistics.median
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    first, raw_first = med(r.first for r in rows), med(r.raw_first for r in rows)
    return {
        "answer model": model,
        "`ask` first token / raw llama.cpp (median)": f"{first:.1f} s / {raw_first:.1f} s",
        "`ask` tokens/s / raw llama.cpp (median)": (
            f"{med(r.speed for r in rows):.1f} / {med(r.raw_speed for r in rows):.1f}"
        ),
        "`ask` follow-up first token (median)": f"{med(r.follow_first for r in rows):.1f} s",
        "questions answered": str(len(rows)),
        "peak RSS (pipeline + raw model)": f"{peak:.0f} MB",
    }


def measure(count: int) -> tuple[list[Row], str]:
    """(rows, model description) for the first `count` QUESTIONS."""
    settings = from_env()
    searcher, generator = answering(settings, warn=lambda _: None)
    threads = settings.llm_threads or len(os.sched_getaffinity(0))
    gguf = ensure_gguf(settings.llm, settings.cache)
    raw = Llama(
        model_path=str(gguf),
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    # the raw model starts as the pipeline's does: its system prompt's state loaded (assistant/prefix.py)
    prefix.prime(raw, gguf, prompt.fixed_start(settings.answer_style), settings.cache)
    rows = []
    for question in QUESTIONS[:count]:
        chat = Conversation(keep=settings.history_turns)
        first = chat.ask(question, searcher=searcher, model=generator, settings=settings)
        messages = prompt.messages(first.standalone_question, first.passages, style=settings.answer_style)
        raw_first, raw_total, raw_tokens = raw_stream(raw, messages, settings.max_tokens)
        follow = chat.ask("为什么？", searcher=searcher, model=generator, settings=settings)
        rows.append(Row(question, first, follow, raw_first, raw_total, raw_tokens))
    return rows, generator.describe()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="print the medians as one JSON object instead")
    args = ap.parse_args()
    rows, model = measure(args.questions)
    if args.json:
        print(json.dumps(medians(rows, model), ensure_ascii=False))
        return
    print(f"\nmachine: {machine()}; model {model}; date {time.strftime('%Y-%m-%d')}\n")
    header = ["question", "pipeline first token", "raw first token", "pipeline tok/s", "raw tok/s", "ratio"]
    print("| " + " | ".join([*header, "follow-up first token"]) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ratios = [r.speed / r.raw_speed if r.raw_speed else 0.0 for r in rows]
    for r, ratio in zip(rows, ratios, strict=True):
        print(
            f"| {r.question} | {r.first:.1f} s | {r.raw_first:.1f} s | {r.speed:.1f} | {r.raw_speed:.1f} "
            f"| {ratio:.2f} | {r.follow_first:.1f} s |"
        )
    print(f"\nmedian speed ratio pipeline/raw: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
