"""The LLM judge: ragas' faithfulness, answer relevancy and answer correctness with our own model as judge.

`Judge` hands a loaded chat model (assistant.llm.Generator: llama.cpp in process, or an OpenAI-compatible
server) to ragas 0.4.3's classic `ragas.metrics` classes through `LangchainLLMWrapper`, and the e5 embedder
through `LangchainEmbeddingsWrapper`. `Judge.score` runs one metric on one answer and always returns a
`Score`: a judge output that does not parse (after one ragas fix-the-format retry) is a "parse" failure,
a model error an "error", a NaN (e.g. no statements extracted) an "empty" one; the value is then None.

Choices: answer relevancy asks for 1 generated question, not ragas' 3 (a greedy judge writes the same one
three times); texts are embedded with e5's "query: " prefix on both sides (a symmetric comparison).
Telemetry: RAGAS_DO_NOT_TRACK=true is set before ragas is imported, so nothing is sent anywhere.

Does not: answer questions, decide how a refusal is scored (eval/generation.py), or download anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

JUDGE_TOKENS = 1024  # longest judge reply: verdicts with reasons for a long answer's statements
METRICS = ("faithfulness", "answer_relevancy", "answer_correctness")
FIX_PROMPT = "The output string did not satisfy the constraints"  # ragas' fix-the-format retry prompt
FIXES = 1  # fix-the-format requests per score sent to the model (ragas nests up to 3)
_LOCK = threading.Lock()  # for judges without a lock of their own


class TextEmbedder(Protocol):
    def query(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True)
class Score:
    value: float | None  # in [0, 1]; None when the judge failed
    failure: str = ""  # "" | "parse" | "error" | "empty"
    retries: int = 0  # ragas fix-the-format requests: judge outputs that did not parse the first time
    seconds: float = 0.0
    detail: str = ""  # the error's first line


class JudgeChat(BaseChatModel):
    """The judge model as a LangChain chat model; its completions run one at a time under the model's lock."""

    judge: Any  # assistant.llm.Generator, or anything with complete([(role, text)]) -> str (not `model`:
    # ragas reads a `model` attribute as the model name)
    max_tokens: int = JUDGE_TOKENS
    fixes: int = 0  # ragas fix-the-format requests seen
    fixes_left: int = FIXES  # of the current score: later fix requests get an empty reply, not the model

    @property
    def _llm_type(self) -> str:
        return "mianjing-judge"

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **_: Any
    ) -> ChatResult:
        if str(messages[-1].content).startswith(FIX_PROMPT):
            self.fixes += 1
            self.fixes_left -= 1
            if self.fixes_left < 0:  # each costs the whole prompt again; a small judge rarely fixes twice
                return ChatResult(generations=[ChatGeneration(message=AIMessage(content=""))])
        try:
            text = self._complete(messages)
        except Exception as e:  # noqa: BLE001 - a model failure, not a parse failure: say it as one line
            raise RuntimeError(f"judge model failed: {type(e).__name__}: {_first_line(e)}") from e
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _complete(self, messages: list[BaseMessage]) -> str:
        chat = getattr(self.judge, "chat", None)
        # the answer length setting is too short for verdicts
        if chat is not None and type(chat).__name__ == "ChatLlamaCpp":
            lock: AbstractContextManager = getattr(self.judge, "_lock", _LOCK)
            with lock:
                return str(chat.invoke(messages, max_tokens=self.max_tokens).content)
        roles = {"system": "system", "ai": "assistant"}
        with _LOCK:
            return str(self.judge.complete([(roles.get(m.type, "user"), str(m.content)) for m in messages]))


class E5Embeddings(Embeddings):
    """Our embedder as LangChain Embeddings, symmetric: both sides are embedded as queries."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embedder.query(text)]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]


def similarity(embedder: TextEmbedder, a: str, b: str) -> float:
    """Cosine of the two texts' embeddings, clipped to [0, 1] (RAGAS' semantic similarity)."""
    u, v = np.asarray(embedder.query(a or " ")), np.asarray(embedder.query(b or " "))
    cosine = float(u @ v / ((np.linalg.norm(u) * np.linalg.norm(v)) or 1.0))
    return round(min(1.0, max(0.0, cosine)), 4)


class Judge:
    """ragas metrics bound to one judge model and one embedder."""

    def __init__(self, model: Any, embedder: TextEmbedder, *, name: str = "") -> None:
        os.environ["RAGAS_DO_NOT_TRACK"] = "true"  # before ragas reads it; it caches the answer
        from ragas import _analytics
        from ragas.embeddings import LangchainEmbeddingsWrapper
        from ragas.llms import LangchainLLMWrapper
        from ragas.metrics import AnswerCorrectness, AnswerRelevancy, Faithfulness
        from ragas.run_config import RunConfig

        _analytics.do_not_track.cache_clear()
        logging.getLogger("ragas").setLevel(logging.CRITICAL)  # its parse errors: counted in the report
        self.name = name or str(getattr(model, "name", type(model).__name__))
        self.chat = JudgeChat(judge=model)
        llm = LangchainLLMWrapper(self.chat)
        embeddings = LangchainEmbeddingsWrapper(E5Embeddings(embedder))
        self.metrics = {
            "faithfulness": Faithfulness(llm=llm),
            "answer_relevancy": AnswerRelevancy(llm=llm, embeddings=embeddings, strictness=1),
            "answer_correctness": AnswerCorrectness(llm=llm, embeddings=embeddings),
        }
        for metric in self.metrics.values():
            metric.init(RunConfig(max_retries=1))

    def score(self, metric: str, question: str, answer: str, contexts: list[str], reference: str) -> Score:
        """One ragas metric on one answer; never raises for what the judge writes."""
        from ragas.dataset_schema import SingleTurnSample

        sample = SingleTurnSample(
            user_input=question, response=answer, retrieved_contexts=contexts, reference=reference or None
        )
        began, fixes = time.perf_counter(), self.chat.fixes
        self.chat.fixes_left = FIXES
        try:
            value = asyncio.run(self.metrics[metric].single_turn_ascore(sample))
            failure, detail = ("", "") if _finite(value) else ("empty", "the judge found nothing to score")
        except Exception as e:  # noqa: BLE001 - every judge failure is counted and reported, none is fatal
            value, failure, detail = None, _kind(e), _first_line(e)
        seconds = round(time.perf_counter() - began, 2)
        clipped = round(min(1.0, max(0.0, float(value))), 4) if not failure else None
        return Score(clipped, failure, self.chat.fixes - fixes, seconds, detail)


def _finite(value: object) -> bool:
    return isinstance(value, int | float | np.floating) and math.isfinite(float(value))


def _kind(error: Exception) -> str:
    from ragas.exceptions import RagasOutputParserException

    parse = (RagasOutputParserException, OutputParserException, json.JSONDecodeError)
    return "parse" if isinstance(error, parse) else "error"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
