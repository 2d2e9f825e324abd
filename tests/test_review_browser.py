"""The review app in a real browser: `flashback review` on a free loopback port, headless Chromium
(Debian's, driven by Playwright), a verdict clicked and found in DuckDB, a screenshot kept."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(filled_store, tmp_path):
    db = tmp_path / "r.duckdb"
    shutil.copy(filled_store[0], db)
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("flashback")), "review", "--db", str(db), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy(), text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"review server did not start: {proc.stdout.read()}")
        time.sleep(0.5)
    yield url, db
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_click_a_verdict_in_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, db = server
    shot = tmp_path / "event.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            review = page.get_by_role("button", name="Review", exact=True)
            review.first.wait_for(timeout=60_000)
            review.first.click()
            page.get_by_text("Why it was flagged").wait_for(timeout=60_000)
            page.get_by_label("Reviewer").fill("dana")
            page.get_by_label("Reviewer").press("Enter")
            page.get_by_label("Note").fill("confirmed on site")
            page.get_by_label("Note").press("Enter")
            page.wait_for_timeout(500)
            # the accessible name carries the keyboard shortcut after the label ("Confirmed Y")
            page.get_by_role("button", name=re.compile(r"^Confirmed\b")).click()
            page.get_by_text("Saved: Confirmed by dana").wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    with duckdb.connect(str(db), read_only=True) as c:
        assert c.execute("SELECT verdict, reviewer, note FROM reviews").fetchall() == [("confirmed", "dana", "confirmed on site")]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
