"""End to end in a real browser: `mianjing ui` on a free localhost port, driven by headless Chromium
(Debian's /usr/bin/chromium through Playwright).

- one question from the bundled notes answered by the real bundled model, with a citation that links to
  its highlighted source passage (a collapsed source, opened by a click), then the chat exported as
  markdown (the download holds the answer and its sources: file, heading, character span);
- the first screen: an example question clicked is asked and answered;
- retrieval only (MIANJING_LLM=none, no model loaded): the notes browser (a file -> a section -> a
  passage, rendered, and "Ask about this" asks its question in the chat), the explorer, practice;
- a note holding `<script>` and `<img onerror=…>`, shown in the notes browser and as a search result:
  nothing runs, the tags show as inert text.

Set MIANJING_SCREENSHOTS=docs to save each screen there as <name>.png (the README's pictures): first-screen,
answer, notes, explorer, practice.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from assistant.retrieval import Searcher

CHROMIUM = Path("/usr/bin/chromium")
QUESTION = "一个 7B 的模型用 FP16 加载，光权重大概要多少显存？"  # eval/data/dev.jsonl d042
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}
LOADED = 180_000  # ms: a first page load opens the index (and the model); a view on a busy machine
ANSWERED = 400_000  # ms: the real 1.5B model on a few shared cores
UNSAFE = """# 安全笔记

## 什么是 XSS？<img src=x onerror="window.__pwned=3">

XSS 是跨站脚本攻击：<script>window.__pwned = 1</script> 注入的脚本，\
<img src=x onerror="window.__pwned=2"> 图片的 onerror 也会执行。

## 什么是 CSRF？

CSRF 是跨站请求伪造：借用户已登录的身份发请求，用 token 和 SameSite cookie 防御。
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the app exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the app did not answer at {url} within {seconds} s")


@contextmanager
def serving(log: Path, **variables: str) -> Iterator[str]:
    """`mianjing ui` on a free port with these MIANJING_* variables; its URL while the block runs."""
    port = free_port()
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "ui.cli", "ui", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, **variables},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, server, 60)
            yield url
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


@pytest.fixture
def app_url(bundled, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app over the bundled notes' index built by the `bundled` fixture, with the bundled model."""
    with serving(tmp_path / "app.log", MIANJING_INDEX=str(bundled.settings.index_dir)) as url:
        yield url


@pytest.fixture
def retrieval_url(bundled, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The same app in retrieval-only mode: no model is loaded."""
    index = str(bundled.settings.index_dir)
    with serving(tmp_path / "app.log", MIANJING_INDEX=index, MIANJING_LLM="none") as url:
        yield url


@contextmanager
def chromium(tmp_path: Path) -> Iterator[Page]:
    """A page of headless Chromium with an empty profile, 1400 x 1000."""
    assert CHROMIUM.is_file(), "needs Debian chromium: apt-get install chromium (make test installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            tmp_path / "profile",
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport=VIEWPORT,  # type: ignore[arg-type]
            accept_downloads=True,
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


def settle(page: Page) -> None:
    """Wait for the app's script run to end: no running icon, no element left over from the last run."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "!document.querySelector('[data-testid=stStatusWidgetRunningIcon], [data-stale=true]')",
        timeout=60_000,
    )


def keep(page: Page, name: str, show: Locator | None = None) -> None:
    """Save the page as $MIANJING_SCREENSHOTS/<name>.png when that folder is set: from the top, or scrolled
    so that `show` is in the picture (a long passage pushes its buttons below the fold)."""
    if folder := os.environ.get("MIANJING_SCREENSHOTS"):
        settle(page)
        page.mouse.move(0, 0)  # no hover tooltip in the picture
        page.evaluate("document.querySelector('[data-testid=stAppScrollToBottomContainer]')?.scrollTo(0, 0)")
        if show is not None:
            show.scroll_into_view_if_needed()
        page.screenshot(path=Path(folder) / f"{name}.png")


def choose(page: Page, key: str, option: str) -> None:
    """Pick `option` (its text as shown) in the selectbox with widget key `key`."""
    page.locator(f".st-key-{key} button[aria-haspopup=listbox]").click()
    page.get_by_role("option", name=option, exact=True).click()


def open_view(page: Page, name: str) -> None:
    page.get_by_test_id("stRadio").get_by_text(name, exact=True).click()


def expand(expander: Locator) -> Locator:
    """Open a collapsed expander; the markdown it shows (not its label)."""
    expander.locator("summary").click()
    return expander.get_by_test_id("stExpanderDetails").get_by_test_id("stMarkdownContainer").first


def test_a_question_gets_a_cited_answer_and_is_exported(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with chromium(tmp_path) as page:
        page.goto(app_url)
        ask = page.get_by_test_id("stChatInputTextArea")
        ask.wait_for(timeout=LOADED)  # first run: the index and the model load
        ask.fill(QUESTION)
        ask.press("Enter")
        reply = page.get_by_test_id("stChatMessage").nth(1)
        reply.get_by_text("first token").wait_for(timeout=ANSWERED)  # the last line under an answer
        link = reply.locator('a[href^="#src-"]').first
        target = link.get_attribute("href")
        assert target
        expect(page.locator(target)).to_have_count(1)  # the [n] points at its source
        source = reply.get_by_test_id("stExpander").first
        expand(source)  # sources are collapsed until clicked
        cited = source.get_by_test_id("stAlertContainer")
        assert "FP16" in cited.inner_text()  # the highlighted source passage
        assert "14" in reply.get_by_test_id("stMarkdownContainer").first.inner_text()  # ~14 GB
        shot = tmp_path / "answer.png"
        page.screenshot(path=shot)
        assert shot.stat().st_size > 10_000
        keep(page, "answer")
        link.click()
        page.wait_for_function(f"window.location.hash === '{target}'", timeout=5_000)

        # Export: the chat as markdown, the answer as written, its sources with file, heading and span
        where = re.search(r"(\S+) characters (\d+–\d+)", source.inner_text())
        assert where, source.inner_text()  # "heading · file characters a–b" under the passage
        copy = reply.get_by_test_id("stExpander").filter(has_text="Copy the answer")
        expand(copy)
        written = copy.get_by_test_id("stCode").inner_text().strip()
        with page.expect_download(timeout=30_000) as download:
            page.get_by_test_id("stSidebar").get_by_role("button", name="Export").click()
        exported = Path(download.value.path()).read_text(encoding="utf-8")
        assert download.value.suggested_filename.endswith(".md")
        assert exported.startswith(f"# mianjing chat\n\n## {QUESTION}\n\n")
        assert written and written in exported
        assert "**Sources**" in exported
        assert re.search(rf"\[\d\] .+ — `{re.escape(where[1])}` › .+, characters {where[2]}\n", exported)


def test_an_example_question_on_the_first_screen_is_answered(app_url: str, tmp_path: Path) -> None:
    with chromium(tmp_path) as page:
        page.goto(app_url)
        page.get_by_text("Try one of your notes' own questions").wait_for(timeout=LOADED)
        assert page.get_by_text("大模型训练面试宝典").count() >= 1  # a file by its own title
        keep(page, "first-screen")
        example = page.locator(".st-key-example-0 button")
        question = example.inner_text().strip()
        example.click()
        asked = page.get_by_test_id("stChatMessage").first
        asked.get_by_text(question).wait_for(timeout=60_000)  # asked as if typed
        reply = page.get_by_test_id("stChatMessage").nth(1)
        reply.get_by_text("answered in").wait_for(timeout=ANSWERED)
        assert reply.inner_text().strip()


def test_notes_browser_explorer_and_practice_without_a_model(
    bundled: Searcher, retrieval_url: str, tmp_path: Path
) -> None:
    from practice import pool
    from ui import browser, notes

    files = notes.by_source(bundled.index.chunks)
    titles = notes.titles(bundled.index.chunks)
    source = sorted(files)[1]  # not the file shown first
    grouped = {name or browser.START: part for name, part in notes.sections(files[source]).items()}
    section, part, chunk = next(
        (s, p, c)
        for s, p in grouped.items()
        for c in p
        if pool.pool([c])  # a passage with its own question
        and [browser._label(x, s) for x in p].count(browser._label(c, s)) == 1
    )
    question, label = notes.question_of(chunk), browser._label(chunk, section)

    with chromium(tmp_path) as page:
        page.goto(retrieval_url)
        page.get_by_test_id("stChatInputTextArea").wait_for(timeout=LOADED)
        assert page.get_by_text("Retrieval-only mode").count() == 1

        # Notes: a file (by its title) -> a section -> a passage, rendered as the note renders it
        open_view(page, "📚 Notes")
        choose(page, "browse_file", titles[source])
        page.get_by_text(f"{len(files[source])} passages in {len(grouped)} sections").wait_for()
        choose(page, "browse_section", f"{section} ({len(part)})")
        main = page.get_by_test_id("stMain")
        passage = main.get_by_test_id("stExpander").filter(has=page.locator("summary", has_text=label))
        passage.wait_for(timeout=60_000)
        shown = expand(passage)
        shown.wait_for()
        assert f"characters {chunk.start}–{chunk.end}" in passage.inner_text()
        assert shown.locator("strong").count() >= 1  # markdown rendered: its heading as a bold line
        assert question[:8] in shown.inner_text()
        keep(page, "notes", show=passage.get_by_role("button", name="Ask about this"))

        # "Ask about this": the passage's own question, asked in the chat (retrieval only: passages)
        passage.get_by_role("button", name="Ask about this").click()
        asked = page.get_by_test_id("stChatMessage").first
        asked.get_by_text(question, exact=True).wait_for(timeout=LOADED)
        reply = page.get_by_test_id("stChatMessage").nth(1)
        reply.get_by_text("Retrieval only (no language model)").wait_for(timeout=LOADED)
        assert reply.get_by_test_id("stExpander").count() >= 1

        # Explorer: the ranked passages with each stage's scores, a passage opened
        open_view(page, "🔎 Explorer")
        page.locator(".st-key-explore input").fill(QUESTION)
        page.locator(".st-key-explore input").press("Enter")
        page.get_by_test_id("stDataFrame").wait_for(timeout=LOADED)
        assert page.get_by_text("reciprocal rank fusion").count() == 1  # the legend, hybrid mode
        first = main.get_by_test_id("stExpander").first
        expand(first)
        first.get_by_text("Open in the note").wait_for()
        keep(page, "explorer")

        # Practice: today's counts and a card from the notes' own questions
        open_view(page, "🎯 Practice")
        page.get_by_text("Due today").wait_for(timeout=120_000)
        page.get_by_text("问：").first.wait_for(timeout=120_000)
        keep(page, "practice")


def test_html_in_a_note_does_not_run(tmp_path: Path) -> None:
    corpus = tmp_path / "notes"
    corpus.mkdir()
    (corpus / "unsafe.md").write_text(UNSAFE, encoding="utf-8")
    variables = {"MIANJING_CORPUS": str(corpus), "MIANJING_INDEX": str(tmp_path / "index")}
    with serving(tmp_path / "app.log", **variables, MIANJING_LLM="none") as url, chromium(tmp_path) as page:
        page.goto(url)
        page.get_by_test_id("stChatInputTextArea").wait_for(timeout=LOADED)  # the index is built first

        # In the notes browser: the file's first section is shown; its passage opened
        open_view(page, "📚 Notes")
        main = page.get_by_test_id("stMain")
        settle(page)
        passage = main.get_by_test_id("stExpander").first  # the section's one passage
        shown = expand(passage)
        shown.get_by_text("跨站脚本攻击", exact=False).wait_for()
        assert shown.locator("code", has_text="<script>").count() >= 1  # shown as code, not run
        assert shown.locator("code", has_text='onerror="window.__pwned=2"').count() == 1
        ran(page)

        # As search results in the chat: the passage and its heading (in the expander's label)
        open_view(page, "💬 Chat")
        ask = page.get_by_test_id("stChatInputTextArea")
        ask.fill("XSS 是什么？")
        ask.press("Enter")
        reply = page.get_by_test_id("stChatMessage").nth(1)
        reply.get_by_text("Retrieval only (no language model)").wait_for(timeout=60_000)
        settle(page)  # every passage found is shown
        for found in reply.get_by_test_id("stExpander").all():
            expand(found).wait_for()
        assert reply.locator("code", has_text='onerror="window.__pwned=2"').count() >= 1
        ran(page)


def ran(page: Page) -> None:
    """Nothing from the note ran, and none of its tags became elements."""
    settle(page)
    page.wait_for_timeout(1_000)  # an image's onerror fires after its load fails
    assert page.evaluate("window.__pwned") is None
    assert page.locator('img[src="x"]').count() == 0
    assert not page.evaluate("[...document.scripts].some(s => s.textContent.includes('__pwned'))")
