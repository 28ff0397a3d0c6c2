"""Cross-encoder reranking with `sentence_transformers.CrossEncoder`, or a plain statement that it is off.

The model is a local folder or a hub name already in the Hugging Face cache; no reranker ships with
mianjing (none is on PyPI), so `locate` decides from the disk alone, in milliseconds, whether one can load,
and why not. Loading never waits on the network: the hub is not asked.

Does not: download models, or combine the cross-encoder score with the retrievers' scores (it reorders).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Availability:
    path: str | None  # what to load, when it can be loaded
    reason: str  # one line for the user when it cannot


def locate(model: str) -> Availability:
    """Find `model` on disk: a folder with config.json, or a hub name in the local HF cache."""
    if not model:
        return Availability(None, "no reranker configured")
    folder = Path(model).expanduser()
    if folder.is_dir():
        if (folder / "config.json").is_file():
            return Availability(str(folder), "")
        return Availability(None, f"{folder} has no config.json")
    if model.startswith((".", "/", "~")):
        return Availability(None, f"folder not found: {model}")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json")
    if isinstance(cached, str):
        return Availability(str(Path(cached).parent), "")
    return Availability(None, f"{model} is not a local folder and not in the Hugging Face cache (offline)")


class Reranker:
    """A loaded CrossEncoder: (query, passages) -> relevance scores."""

    def __init__(self, path: str, *, max_length: int = 512) -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(path, device="cpu", local_files_only=True, max_length=max_length)

    def scores(self, query: str, passages: list[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        pairs = [(query, p) for p in passages]
        return np.asarray(self.model.predict(pairs, batch_size=16, show_progress_bar=False), dtype=np.float32)


def load_reranker(model: str, *, max_length: int = 512) -> tuple[Reranker | None, str]:
    """(reranker, "") when it loads, else (None, the reason in one line)."""
    found = locate(model)
    if found.path is None:
        return None, found.reason
    try:
        return Reranker(found.path, max_length=max_length), ""
    except Exception as e:  # noqa: BLE001 - a broken model folder is reported, never fatal
        return None, f"cannot load reranker {model}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
