"""Training questions for the reranker: for every answering passage of the notes, questions it answers.

Step 1 asks the local LLM (greedy, seed 0) for three questions per `has_answer` passage: a Chinese
paraphrase avoiding the heading's words, a short keyword query and an English question, in a strict line
format (`改写：` / `关键词：` / `English:`) parsed tolerantly; lines echoing the prompt or made of the
heading's own words are rejected. Step 2 adds the notes' own question headings. Step 3 caches the model's
answers. Step 4 keeps a question only when hybrid search (k = 50) finds its own passage (round-trip
consistency, as in Promptagator), then drops duplicates and anything equal to a dev-set question. Step 5
writes `questions.jsonl` (one row per kept question) and `questions.meta.json` (how to reproduce it).

Model outputs are cached in `<cache>/tune/questions-<model>-<PROMPT_VERSION>.jsonl`, one line per
passage keyed by sha256(PROMPT_VERSION, model, chunk.indexed), flushed after each passage: an interrupted
run resumes, a changed note regenerates only its own passages.

Does not: mine negatives, train anything, judge question quality beyond format checks and the round trip,
or ever crash on model output (an unparsable answer is recorded as a parse failure with its raw text).

    python -m tune.questions [--corpus DIR] [--out tune/data] [--limit N] [--budget MINUTES]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import statistics
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from eval.command import commit, machine
from ingest.chunk import Chunk, sentence_spans

PROMPT_VERSION = "q2"  # bump on any change to SYSTEM, messages() or the decoding settings
TEMPERATURE, SEED, MAX_TOKENS = 0.0, 0, 160
K = 50  # hybrid search depth of the consistency filter
PASSAGE_CHARS = 600  # longest passage text shown to the model (cut at a sentence end)
COPIED = 0.7  # share of a paraphrase's character bigrams found in its heading path that makes it a copy
STYLES = ("paraphrase", "keyword", "english")  # what the model writes
ORDER = ("heading", *STYLES)  # output order within a passage
REPO = Path(__file__).resolve().parent.parent
DEV = REPO / "eval" / "data" / "dev.jsonl"

SYSTEM = "\n".join(
    (
        "You write practice questions for someone preparing for LLM / machine learning job interviews. "
        "The user gives one passage of their interview notes (heading path and text, usually in Chinese). "
        "Write three questions that this passage's text answers, asked the way the candidate would ask them, "
        "about the specific content of the text:",
        "- a Chinese question in your own words that does not reuse the words of the heading;",
        "- a short keyword search query of 2 to 6 words or terms, separated by spaces;",
        "- an English question.",
        "Answer with exactly three lines in the format of the example, and nothing else.",
        "",
        "Example passage:",
        "标题：训练技巧 > 梯度累积是什么？",
        "正文：梯度累积把一个大 batch 拆成几个小 batch 依次前向和反向，梯度先累加、不更新参数，"
        "累积 N 步后再更新一次，等效于 batch size 扩大 N 倍，用时间换显存。",
        "Example answer:",
        "改写：显存只放得下小 batch，怎么做到和大 batch 一样的训练效果？",
        "关键词：小显存 大batch 训练",
        "English: How can I train with a large effective batch size when my GPU only fits a small one?",
    )
)

CJK = re.compile(r"[\u3400-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
MARKUP = re.compile(r"</?u>|\*\*|^#+\s*")
NUMBERING = re.compile(r"^\s*(?:(?:[（(]?\d{1,3}[)）.、．]|第?[一二三四五六七八九十]+[、.．])\s*)+")
QUESTION_WORDS = re.compile(
    r"[？?]|什么|如何|怎么|为什么|哪些|区别|是否|吗|解释|介绍|谈谈|说说|讲讲|讲一下|说一下|简述"
)
ASKS = re.compile(QUESTION_WORDS.pattern + r"|哪|多少|怎样|能否|有没有|呢")
WH = {"what", "why", "how", "when", "where", "which", "who", "is", "are", "does", "do", "can", "should"}
LINE = re.compile(
    r"^[\s\-*•>#]*(?:[（(]?(?:\d|[a-cA-C])[)）.、．:：]\s*)?\**\s*"
    r"(改写|中文|关键词|关键字|English|英文)\s*\**\s*[:：]\s*\**\s*(.*)$",
    re.IGNORECASE,
)
STYLE_OF = {"改写": "paraphrase", "中文": "paraphrase", "关键词": "keyword", "关键字": "keyword"}
QUOTES = "\"'“”‘’「」『』`*"


class Model(Protocol):
    def complete(self, messages: list[tuple[str, str]]) -> str: ...


class Search(Protocol):
    def search(self, query: str, *, mode: str | None = None, k: int | None = None) -> Any: ...


Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# Step 1: the prompt and the model's answer


def clean_heading(title: str) -> str:
    return MARKUP.sub("", title).strip()


def cut(text: str, limit: int = PASSAGE_CHARS) -> str:
    """`text` up to `limit` characters, ending at the last sentence end when one is past the half."""
    if len(text) <= limit:
        return text.strip()
    ends = [end for _, end in sentence_spans(text, 0, limit) if end >= limit // 2]
    return text[: ends[-1] if ends else limit].strip()


def messages(chunk: Chunk) -> list[tuple[str, str]]:
    """The system message (same for every passage) and the passage: heading path without the file name."""
    path = " > ".join(clean_heading(t) for t in chunk.heading[1:]) or clean_heading(chunk.heading[0])
    return [("system", SYSTEM), ("user", f"标题：{path}\n正文：{cut(chunk.text)}")]


def _valid(style: str, text: str) -> bool:
    """Format checks: the right language and length, and a question (not a statement) where one is asked."""
    cjk, words = len(CJK.findall(text)), LATIN_WORD.findall(text)
    if style == "paraphrase":
        return cjk >= 4 and len(text) <= 80 and bool(ASKS.search(text))
    if style == "keyword":
        return 1 <= len(re.split(r"[\s,，、;；/]+", text)) <= 8 and 2 <= len(text) <= 40
    asks = text.rstrip().endswith("?") or (bool(words) and words[0].lower() in WH)
    return len(words) >= 3 and len(text) <= 200 and cjk * 3 <= sum(map(len, words)) and asks


def parse(raw: str) -> tuple[dict[str, str], dict[str, str]]:
    """(valid questions by style, rejected ones by style) from the model's lines; tolerant of numbering,
    bold, quotes, full-width colons and a value on the line after its label.

    >>> parse("1. 改写：“显存不够怎么办？”\\n关键词: 显存 优化\\nEnglish：How to save memory?")[0]["keyword"]
    '显存 优化'
    """
    found: dict[str, str] = {}
    pending = ""
    for line in raw.splitlines():
        match = LINE.match(line.strip())
        if match:
            pending = STYLE_OF.get(match[1], "english" if match[1].lower() in ("english", "英文") else "")
            value = match[2]
        elif pending and line.strip():
            value = line
        else:
            continue
        value = value.strip().strip(QUOTES).strip()
        if value and pending and pending not in found:
            found[pending], pending = value, ""
    valid = {s: q for s, q in found.items() if _valid(s, q)}
    return valid, {s: q for s, q in found.items() if s not in valid}


# Step 2: the notes' own question headings


def heading_question(chunk: Chunk) -> str | None:
    """The last heading element when it reads as a question, numbering and markup stripped."""
    if len(chunk.heading) < 2:
        return None
    title = NUMBERING.sub("", clean_heading(chunk.heading[-1])).strip()
    return title if QUESTION_WORDS.search(title) and len(title) >= 4 else None


# Step 3: the cache of model outputs


def cache_path(cache_dir: Path, model: str) -> Path:
    safe = re.sub(r"[^\w.\-]+", "_", model)
    return cache_dir / "tune" / f"questions-{safe}-{PROMPT_VERSION}.jsonl"


def passage_key(model: str, chunk: Chunk) -> str:
    return hashlib.sha256(json.dumps([PROMPT_VERSION, model, chunk.indexed]).encode()).hexdigest()


def read_cache(path: Path, log: Log = _stderr) -> dict[str, dict]:
    """key -> record; unreadable lines (an interrupted write) are skipped with one warning."""
    records: dict[str, dict] = {}
    bad = 0
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            records[record["key"]] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            bad += bool(line.strip())
    if bad:
        log(f"tune: skipped {bad} unreadable line(s) in {path}; those passages are generated again")
    return records


def _append_to(path: Path) -> IO[str]:
    """`path` open for appending, starting on a fresh line even after a truncated last line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a", encoding="utf-8")
    if handle.tell() > 0:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                handle.write("\n")
    return handle


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def _prompt_lines() -> set[str]:
    """The prompt's lines, labels stripped and normalized: what an echoing model writes back."""
    values = [m[2] if (m := LINE.match(line)) else line for line in SYSTEM.splitlines()]
    return {normalize(v) for v in values} - {""}


def copies(style: str, question: str, chunk: Chunk) -> bool:
    """True for a line echoing the prompt, or a paraphrase made mostly of its passage's heading words."""
    norm, prompt = normalize(question), normalize(SYSTEM)
    if norm in _prompt_lines() or (len(norm) >= 12 and norm in prompt):
        return True
    if style != "paraphrase":
        return False
    grams = _bigrams(norm)
    heading = set().union(*(_bigrams(normalize(clean_heading(t))) for t in chunk.heading[1:]))
    return bool(grams) and len(grams & heading) >= COPIED * len(grams)


def screen(raw: str, chunk: Chunk) -> tuple[dict[str, str], dict[str, str]]:
    """(usable questions, rejected ones) by style: `parse`, then lines that copy the prompt or heading out."""
    valid, rejected = parse(raw)
    copied = {s: text for s, text in valid.items() if copies(s, text, chunk)}
    return {s: t for s, t in valid.items() if s not in copied}, {**rejected, **copied}


def ask(model: Model, chunk: Chunk, key: str) -> dict:
    """One passage through the model: a cache record, a parse failure when no line is usable."""
    began = time.perf_counter()
    raw = model.complete(messages(chunk))
    questions, rejected = screen(raw, chunk)
    return {
        "key": key,
        "passage": chunk.id,
        "questions": questions,
        "rejected": rejected,
        "failed": not questions,
        "raw": raw,
        "seconds": round(time.perf_counter() - began, 2),
    }


def generate(
    chunks: list[Chunk],
    records: dict[str, dict],
    load: Callable[[], Model],
    *,
    model: str,
    path: Path,
    budget: float | None = None,
    log: Log = _stderr,
) -> dict[str, dict]:
    """`records` completed for the chunks: the model (loaded on first need) asked only for uncached ones,
    each answer appended to the cache at `path` as soon as it is in. With a `budget` (seconds) no new
    passage is started once it is spent; the rest keep only their heading questions until a later run.
    Passages go in the order of their cache key, which spreads a partial run over every file."""
    records = dict(records)
    todo = sorted(
        (c for c in chunks if passage_key(model, c) not in records), key=lambda c: passage_key(model, c)
    )
    if not todo:
        return records
    llm, began = load(), time.perf_counter()
    with _append_to(path) as out:
        for n, chunk in enumerate(todo, start=1):
            if budget is not None and time.perf_counter() - began >= budget:
                log(f"tune: time budget spent after {n - 1}/{len(todo)} passages; a later run resumes here")
                break
            record = ask(llm, chunk, passage_key(model, chunk))
            records[record["key"]] = record
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            if n % 10 == 0 or n == len(todo):
                log(_progress(n, len(todo), time.perf_counter() - began))
    return records


def _progress(n: int, total: int, elapsed: float) -> str:
    per = elapsed / n
    return f"tune: {n}/{total} passages, {per:.1f} s/passage, ETA {_clock((total - n) * per)}"


def _clock(seconds: float) -> str:
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m{int(seconds % 60):02d}s"


def estimate(chunks: list[Chunk], records: dict[str, dict]) -> float:
    """Seconds per passage: the cache's median when it has timings, else from 2-core llama.cpp speeds
    (prompt ~85 tokens/s at ~0.8 tokens per character, ~70 output tokens at ~12 tokens/s)."""
    timed = [r["seconds"] for r in records.values() if r.get("seconds")]
    if timed:
        return statistics.median(timed)
    chars = statistics.mean(len(messages(c)[1][1]) for c in chunks) if chunks else 0.0
    return chars * 0.8 / 85 + 70 / 12


# Step 4: candidates, the round-trip filter, duplicates and the dev set


def normalize(text: str) -> str:
    """Lowercase, full-width folded, whitespace and punctuation removed: the key for duplicates."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch)[0] not in "PS")


def candidates(chunks: list[Chunk], records: dict[str, dict], model: str) -> list[tuple[str, str, Chunk]]:
    """(question, style, passage) for every generated and heading question, in output order."""
    out = []
    for chunk in sorted(chunks, key=lambda c: c.id):
        record = records.get(passage_key(model, chunk))
        generated = screen(record["raw"], chunk)[0] if record else {}
        found = {"heading": heading_question(chunk) or "", **generated}
        out += [(found[s], s, chunk) for s in ORDER if found.get(s)]
    return out


def same_passage(hit: Chunk, chunk: Chunk) -> bool:
    if hit.id == chunk.id:
        return True
    return hit.source == chunk.source and hit.start < chunk.end and chunk.start < hit.end


def rank_of(searcher: Search, question: str, chunk: Chunk) -> int | None:
    """1-based rank of `chunk` (or an overlapping passage of its note) in hybrid search, None past K."""
    hits = searcher.search(question, mode="hybrid", k=K).hits
    return next((n for n, hit in enumerate(hits, start=1) if same_passage(hit.chunk, chunk)), None)


def dev_questions(path: Path = DEV) -> set[str]:
    """Normalized questions of the dev set: never to be trained on."""
    found = set()
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            found.add(normalize(json.loads(line)["question"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return found


def select(
    found: Iterable[tuple[str, str, Chunk]], searcher: Search, dev: set[str]
) -> tuple[list[dict], dict[str, Any]]:
    """Rows kept by the round trip, one per normalized question (best rank wins), and the counts."""
    best: dict[str, dict] = {}
    counts: dict[str, Any] = {"dropped_dev": 0, "dropped_duplicates": 0, "failed_round_trip": {}}
    for question, style, chunk in found:
        norm = normalize(question)
        if norm in dev or not norm:
            counts["dropped_dev"] += bool(norm)
            continue
        rank = rank_of(searcher, question, chunk)
        if rank is None:
            counts["failed_round_trip"][style] = counts["failed_round_trip"].get(style, 0) + 1
            continue
        row = _row(question, style, chunk, rank)
        if norm in best:
            counts["dropped_duplicates"] += 1
            if rank >= best[norm]["rank"]:
                continue
        best[norm] = row
    rows = sorted(best.values(), key=lambda r: (r["passage"], ORDER.index(r["style"])))
    counts["kept"] = {s: sum(r["style"] == s for r in rows) for s in ORDER}
    return rows, counts


def _row(question: str, style: str, chunk: Chunk, rank: int) -> dict:
    return {
        "question": question,
        "style": style,
        "passage": chunk.id,
        "source": chunk.source,
        "start": chunk.start,
        "end": chunk.end,
        "heading": " > ".join(chunk.heading),
        "rank": rank,
    }


# Step 5: the outputs


def write(out: Path, rows: list[dict], meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    _replace(out / "questions.jsonl", lines)
    _replace(out / "questions.meta.json", json.dumps(meta, ensure_ascii=False, indent=2) + "\n")


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def fingerprint(corpus: Path) -> dict[str, str]:
    from ingest.load import note_paths

    return {
        p.relative_to(corpus).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in note_paths(corpus)
    }


def run(
    settings: Any,
    searcher: Any,
    load: Callable[[], Model],
    *,
    out: Path,
    limit: int | None = None,
    budget: float | None = None,
    dev: Path = DEV,
    command: str = "",
    log: Log = _stderr,
) -> dict[str, Any]:
    """Generate (or reuse), filter and write the questions for `searcher`'s answering passages; the meta."""
    began, model = time.perf_counter(), settings.llm
    chunks = [c for c in searcher.index.chunks if c.has_answer][:limit]
    path = cache_path(settings.cache, model)
    cached = read_cache(path, log)
    todo = [c for c in chunks if passage_key(model, c) not in cached]
    per = estimate(todo or chunks, cached)
    log(
        f"tune: {len(chunks)} answering passages, {len(todo)} not yet in {path}; "
        f"~{per:.0f} s/passage, ~{_clock(per * len(todo))} to generate"
    )
    records = generate(chunks, cached, load, model=model, path=path, budget=budget, log=log)
    log("tune: checking every question against hybrid search (k = 50)")
    rows, kept = select(candidates(chunks, records, model), searcher, dev_questions(dev))
    new = {passage_key(model, c) for c in todo}
    done = [c for c in chunks if passage_key(model, c) in records]
    counts = {**_counts(done, [records[passage_key(model, c)] for c in done], new), **kept}
    counts["passages_without_generated"] = len(chunks) - len(done)
    meta = _meta(settings, counts, time.perf_counter() - began, command, dev)
    write(out, rows, meta)
    log(f"tune: {len(rows)} questions in {out / 'questions.jsonl'} ({kept['kept']})")
    return meta


def _counts(chunks: list[Chunk], records: list[dict], new: set[str]) -> dict[str, Any]:
    """What the model gave for `chunks` (records in the same order), screened by today's rules."""
    screened = [(parse(r["raw"])[0], *screen(r["raw"], c)) for r, c in zip(records, chunks, strict=True)]
    seconds = [r["seconds"] for r in records if r["key"] in new]
    return {
        "passages": len(chunks),
        "generated_now": len(seconds),
        "seconds_per_passage_now": round(statistics.mean(seconds), 2) if seconds else None,
        "parse_failures": sum(not parsed for parsed, _, _ in screened),
        "no_usable_question": sum(not usable for _, usable, _ in screened),
        "generated": {s: sum(s in usable for _, usable, _ in screened) for s in STYLES},
        "rejected": {s: sum(s in rejected for _, _, rejected in screened) for s in STYLES},
        "heading_questions": sum(heading_question(c) is not None for c in chunks),
    }


def _meta(settings: Any, counts: dict[str, Any], seconds: float, command: str, dev: Path) -> dict[str, Any]:
    return {
        "model": {"name": settings.llm, **_gguf(settings)},
        "prompt_version": PROMPT_VERSION,
        "prompt": {
            "system": SYSTEM,
            "user": "标题：<heading path without the file name>\n正文：<passage text, "
            f"cut to at most {PASSAGE_CHARS} characters at a sentence end>",
        },
        "decoding": {"temperature": TEMPERATURE, "seed": SEED, "max_tokens": MAX_TOKENS},
        "filter": {"mode": "hybrid", "k": K, "embed_model": settings.embed_model},
        "counts": counts,
        "duration_s": round(seconds, 1),
        "corpus": str(settings.corpus),
        "corpus_fingerprint": fingerprint(settings.corpus),
        "dev_set": {
            "path": str(dev),
            "sha256": hashlib.sha256(dev.read_bytes()).hexdigest() if dev.exists() else "",
        },
        "cache": str(cache_path(settings.cache, settings.llm)),
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "command": command,
    }


def _gguf(settings: Any) -> dict[str, str]:
    """The model file and its pinned sha256, for a bundled model or a .gguf path (nothing is loaded)."""
    try:
        from assistant.llm import BUNDLED, resolve_model

        spec = resolve_model(settings.llm, cache_dir=settings.cache, base_url=settings.llm_base_url)
    except (ImportError, RuntimeError):
        return {}
    bundled = BUNDLED.get(spec.bundled)
    return {"gguf": spec.path.name if spec.path else "", "sha256": bundled.sha256 if bundled else ""}


def loader(settings: Any) -> Callable[[], Model]:
    def load() -> Model:
        from assistant.llm import Generator

        return Generator(
            model=settings.llm,
            cache_dir=settings.cache,
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key,
            temperature=TEMPERATURE,
            max_tokens=MAX_TOKENS,
            seed=SEED,
            threads=settings.llm_threads,
        )

    return load


def _command(argv: list[str]) -> str:
    """The command line that reproduces this run: MIANJING_* variables set (no secrets), then the call."""
    env = [
        f"{k}={shlex.quote(v)}"
        for k, v in sorted(os.environ.items())
        if k.startswith("MIANJING_") and "KEY" not in k
    ]
    return " ".join([*env, ".venv/bin/python", "-m", "tune.questions", *map(shlex.quote, argv)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m tune.questions", description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="notes folder (default: the bundled notes)")
    parser.add_argument("--out", type=Path, default=REPO / "tune" / "data", help="where the outputs go")
    parser.add_argument("--limit", type=int, help="only the first N answering passages")
    parser.add_argument("--dev", type=Path, default=DEV, help="questions never to train on")
    parser.add_argument(
        "--budget", type=float, help="minutes of generation at most; then the questions so far are written"
    )
    args = parser.parse_args(argv)
    from assistant.retrieval import Searcher
    from assistant.settings import from_env
    from ingest.load import CorpusError

    settings = from_env(corpus=args.corpus)
    try:
        searcher = Searcher(settings)
        run(
            settings,
            searcher,
            loader(settings),
            out=args.out,
            limit=args.limit,
            budget=args.budget * 60 if args.budget else None,
            dev=args.dev,
            command=_command(argv),
        )
    except (RuntimeError, CorpusError, OSError) as e:
        print(f"tune: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
