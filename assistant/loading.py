"""What every front-end opens to answer questions: the searcher and the model, for one `Settings`.

The CLI, the app, `mianjing eval` and the benchmarks all call `answering`, so they answer with the same
index, the same retrieval settings and the same model settings.

Does not: cache anything (the app keeps what it opens with `st.cache_resource`), or answer.
"""

from __future__ import annotations

from collections.abc import Callable

from assistant.llm import Generator
from assistant.retrieval import Searcher
from assistant.settings import Settings


def answering(settings: Settings, *, warn: Callable[[str], None] | None = None) -> tuple[Searcher, Generator]:
    """(searcher, generator): the index first, so a model that fails to load is the last thing said."""
    searcher = Searcher(settings, warn=warn)
    return searcher, Generator.of(settings)
