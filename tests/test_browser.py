"""End to end in a real browser: `mianjing ui` on a free localhost port, driven by headless Chromium
(Debian's /usr/bin/chromium through Playwright), one question from the bundled notes answered by the real
bundled model, with a citation that links to its highlighted source passage (a collapsed source, opened by
a click); and the first screen: an example question clicked is asked and answered.

Set MIANJING_SCREENSHOT=docs/screenshot.png to also save the screenshot there (the README's picture).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

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


@pytest.fixture
def app_url(bundled, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """`mianjing ui` on a free port, over the bundled notes' index built by the `bundled` fixture."""
    port = free_port()
    env = {**os.environ, "MIANJING_INDEX": str(bundled.settings.index_dir)}
    log = (tmp_path / "app.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "ui", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
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
        log.close()


def test_a_question_gets_a_cited_answer_in_the_browser(app_url: str, tmp_path: Path) -> None:
    assert CHROMIUM.is_file(), "needs Debian chromium: apt-get install chromium (make test installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            tmp_path / "profile",  # empty user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = browser.new_page()
            page.goto(app_url)
            ask = page.get_by_test_id("stChatInputTextArea")
            ask.wait_for(timeout=180_000)  # first run: the index and the model load
            ask.fill(QUESTION)
            ask.press("Enter")
            reply = page.get_by_test_id("stChatMessage").nth(1)
            reply.get_by_text("first token").wait_for(timeout=400_000)  # the last line under an answer
            link = reply.locator('a[href^="#src-"]').first
            target = link.get_attribute("href")
            assert target and page.locator(target).count() == 1  # the [n] points at its source
            source = reply.get_by_test_id("stExpander").first
            source.locator("summary").click()  # sources are collapsed until clicked
            cited = source.get_by_test_id("stAlertContainer")
            assert "FP16" in cited.inner_text()  # the highlighted source passage
            assert "14" in reply.get_by_test_id("stMarkdownContainer").first.inner_text()  # ~14 GB
            shot = tmp_path / "answer.png"
            page.screenshot(path=shot)
            assert shot.stat().st_size > 10_000
            if os.environ.get("MIANJING_SCREENSHOT"):
                shutil.copyfile(shot, os.environ["MIANJING_SCREENSHOT"])
            link.click()
            page.wait_for_function(f"window.location.hash === '{target}'", timeout=5_000)
        finally:
            browser.close()


def test_an_example_question_on_the_first_screen_is_answered(app_url: str, tmp_path: Path) -> None:
    assert CHROMIUM.is_file(), "needs Debian chromium: apt-get install chromium (make test installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        try:
            page = browser.new_page()
            page.goto(app_url)
            page.get_by_text("Try one of your notes' own questions").wait_for(timeout=180_000)
            assert page.get_by_text("大模型训练面试宝典").count() >= 1  # a file by its own title
            example = page.locator(".st-key-example-0 button")
            question = example.inner_text().strip()
            example.click()
            asked = page.get_by_test_id("stChatMessage").first
            asked.get_by_text(question).wait_for(timeout=30_000)  # asked as if typed
            reply = page.get_by_test_id("stChatMessage").nth(1)
            reply.get_by_text("answered in").wait_for(timeout=400_000)
            assert reply.inner_text().strip()
        finally:
            browser.close()
