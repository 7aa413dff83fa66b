"""The web page in headless Chromium against the real server: ask, stream, read the cited source,
ask a follow-up that leans on the first question, start a new conversation."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import REPO, SAMPLE
from .conftest import RAG, run_rag, stop

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    # `make test` installs it; CI sets RAG_REQUIRE_BROWSER so a missing browser fails loudly.
    message = f"{CHROMIUM} is missing: apt-get install -y chromium (or `make browser`)"
    if os.environ.get("RAG_REQUIRE_BROWSER"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing: pip install 'playwright>=1.45,<2'"
)

# Without the background-networking flags Chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY_TIMEOUT_S = 180
ANSWER_TIMEOUT_MS = 60_000
QUESTION = "What is the name of the station cat?"
FOLLOW_UP = "What colour is it?"


def free_port() -> int:
    """A loopback port nobody holds right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll /readyz until 200; fail with the server's stderr if it dies or never gets ready."""
    deadline, last = time.monotonic() + timeout, "no answer yet"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"server exited with {server.returncode}; stderr:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read().decode(errors='replace')}"
        except OSError as exc:  # not listening yet
            last = repr(exc)
        time.sleep(1)
    pytest.fail(f"/readyz not 200 after {timeout} s (last: {last}); stderr:\n{log.read_text()}")


@pytest.fixture
def served_sample(tmp_path: Path) -> Iterator[str]:
    """Build the sample index with the real CLI, serve it on a free port; yields the base URL."""
    env = {"RAG_INDEX_ROOT": str(tmp_path / "indexes")}
    corpus = shutil.copytree(SAMPLE, tmp_path / "sample")
    built = run_rag("index", str(corpus), "--index", "sample", env=env)
    assert built.returncode == 0, built.stderr
    url, log = f"http://127.0.0.1:{(port := free_port())}", tmp_path / "server.log"
    # stderr to a file, not a pipe: a pipe nobody reads fills up with uvicorn's log and blocks it.
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [*RAG, "serve", "--index", "sample", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_until_ready(url, server, log, READY_TIMEOUT_S)
        yield url
    finally:
        stop(server)


def test_page_streams_answer_and_marks_cited_source(served_sample: str) -> None:
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.goto(served_sample + "/")
            page.fill("#question", QUESTION)
            page.click("#submit")
            # The final `answer` event writes the timings; an `error` event writes a .error span.
            page.wait_for_function(
                """() => /retrieve \\d+ ms/.test(document.querySelector('#status').textContent)
                         || document.querySelector('#status .error') !== null""",
                timeout=ANSWER_TIMEOUT_MS,
            )
            status = page.inner_text("#status")
            assert page.query_selector("#status .error") is None, status
            assert "Biscuit Admiral" in page.inner_text("#answer"), status
            sources = page.query_selector_all("#sources li")
            assert sources, "no sources listed"
            cited = page.query_selector('#sources li[data-doc-id="faq-005"]')
            assert cited is not None, [s.get_attribute("data-doc-id") for s in sources]
            assert "cited" in (cited.get_attribute("class") or "").split(), [
                (s.get_attribute("data-doc-id"), s.get_attribute("class")) for s in sources
            ]
            ask_follow_up(page)
        finally:
            browser.close()


def wait_for_answer(page, previous_status: str) -> str:
    page.wait_for_function(
        """(previous) => {
             const status = document.querySelector('#status');
             return (status.textContent !== previous && /retrieve \\d+ ms/.test(status.textContent))
                    || status.querySelector('.error') !== null; }""",
        arg=previous_status,
        timeout=ANSWER_TIMEOUT_MS,
    )
    status = page.inner_text("#status")
    assert page.query_selector("#status .error") is None, status
    return status


def ask_follow_up(page) -> None:
    """A follow-up is read in the light of the first turn, which stays on screen until the
    "New conversation" control clears it."""
    before = page.inner_text("#status")
    page.fill("#question", FOLLOW_UP)
    page.click("#submit")
    status = wait_for_answer(page, before)
    assert "understood as: What colour is the station cat?" in status, status
    assert "grey" in page.inner_text("#answer").lower(), status
    turns = page.query_selector_all("#conversation li")
    assert len(turns) == 1 and QUESTION in turns[0].inner_text()
    assert "Biscuit Admiral" in turns[0].inner_text()
    page.click("#new-conversation")
    assert page.query_selector_all("#conversation li") == []
    assert page.inner_text("#answer") == "" and not page.is_visible("#new-conversation")
