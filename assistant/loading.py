"""What every front-end opens to answer questions: the searcher and the model, for one `Settings`.

The CLI, the app, `mianjing eval` and the benchmarks all call `answering`, so they answer with the same
index, the same retrieval settings and the same model settings.

Does not: cache anything but the system prompt's evaluated state (assistant/prefix.py; the app keeps
what it opens with `st.cache_resource`), or answer.
"""

from __future__ import annotations

from collections.abc import Callable

from assistant import prompt
from assistant.llm import Generator
from assistant.retrieval import Searcher
from assistant.settings import Settings


def answering(settings: Settings, *, warn: Callable[[str], None] | None = None) -> tuple[Searcher, Generator]:
    """(searcher, generator): the index first, so a model that fails to load is the last thing said."""
    searcher = Searcher(settings, warn=warn)
    return searcher, model(settings)


def model(settings: Settings) -> Generator:
    """The answering model the settings name, its fixed system prompt already evaluated (loaded from the
    state an earlier process saved: the first question costs no more than the next)."""
    generator = Generator.of(settings)
    generator.prime(prompt.fixed_start(settings.answer_style))
    return generator
