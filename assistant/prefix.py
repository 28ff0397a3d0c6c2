"""The fixed start of every prompt (the system message), evaluated once per model file and kept on disk.

llama.cpp reuses the evaluated prefix a new prompt shares with the last one, so inside one process the
system message costs prompt time only for the first question. `prime` moves that first cost out of every
new process: it evaluates the system message once, saves llama.cpp's state (the KV cache of those ~200
tokens, ~6 MB) to `<cache>/models/<model file>.<key>.prefix.npz`, and a later process loads it in a few
milliseconds instead of evaluating ~200 tokens (~2.5 s on 2 cores). The key covers the model file, the
context settings, llama.cpp's version and the text, so a changed prompt or model makes a new file.

Does not: build prompts, or apply to a model server (it keeps its own cache). A state file that cannot be
read is replaced (it is a cache, made again in seconds); a failure to prime is never an error: the
question is then answered with the prefix evaluated as part of its prompt, as before.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DUMMY_QUESTION = "."  # a user turn after the system message: the chat template's prefix is then complete


@dataclass(frozen=True)
class Primed:
    how: str  # "loaded", "evaluated" (and saved), or "" when not applicable / failed
    tokens: int = 0  # prefix tokens now evaluated in the model's context
    bytes: int = 0  # size of the saved state
    ms: float = 0.0
    why: str = ""  # the reason, when `how` is ""


def state_path(llama: Any, model_path: Path, messages: list[tuple[str, str]], cache_dir: Path) -> Path:
    """Where the state of `messages` evaluated by this model with these context settings is kept."""
    import llama_cpp

    stat = model_path.stat()
    what = [model_path.name, stat.st_size, llama.n_ctx(), llama.n_batch, llama_cpp.__version__, messages]
    key = hashlib.sha256(json.dumps(what, ensure_ascii=False).encode()).hexdigest()[:16]
    return cache_dir / "models" / f"{model_path.name}.{key}.prefix.npz"


def prime(llama: Any, model_path: Path, messages: list[tuple[str, str]], cache_dir: Path) -> Primed:
    """Make `messages` (the fixed prompt start) evaluated in `llama`'s context: loaded from the saved
    state when there is one, else evaluated now and saved for the next process."""
    began = time.perf_counter()
    try:
        path = state_path(llama, model_path, messages, cache_dir)
        if path.is_file():
            try:
                tokens, size = _load(llama, path)
                return Primed("loaded", tokens, size, _ms(began))
            except (OSError, ValueError, KeyError, RuntimeError, EOFError, zipfile.BadZipFile):
                path.unlink(missing_ok=True)  # a cache file: made again below
        chat = [{"role": role, "content": text} for role, text in messages]
        llama.create_chat_completion(
            messages=[*chat, {"role": "user", "content": DUMMY_QUESTION}], max_tokens=1, temperature=0.0
        )
        tokens, size = _save(llama, path)
        return Primed("evaluated", tokens, size, _ms(began))
    except Exception as e:  # priming only saves time: never fail a question for it
        return Primed("", why=f"{type(e).__name__}: {e}")


def _save(llama: Any, path: Path) -> tuple[int, int]:
    import llama_cpp

    size = llama_cpp.llama_state_get_size(llama._ctx.ctx)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_get_data(llama._ctx.ctx, buffer, size)
    if written > size:
        raise RuntimeError("llama.cpp wrote more state than it asked room for")
    state = np.frombuffer(buffer, dtype=np.uint8, count=written)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as sink:
            np.savez(sink, ids=llama.input_ids[: llama.n_tokens], state=state)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return llama.n_tokens, int(written)


def _load(llama: Any, path: Path) -> tuple[int, int]:
    import llama_cpp

    with np.load(path) as saved:
        ids, state = saved["ids"], saved["state"]
    if ids.ndim != 1 or not 0 < len(ids) < llama.n_ctx() or state.dtype != np.uint8:
        raise ValueError(f"{path.name}: not a saved prompt state")
    buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state.tobytes())
    if llama_cpp.llama_state_set_data(llama._ctx.ctx, buffer, len(state)) != len(state):
        raise RuntimeError(f"{path.name}: llama.cpp did not take the saved state")
    llama.input_ids[: len(ids)] = ids
    llama.n_tokens = len(ids)
    return len(ids), len(state)


def _ms(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 1)
