"""The review app in a real browser: `flashback review` on a free loopback port, headless Chromium
(Debian's, driven by Playwright), a verdict clicked and found in DuckDB, a screenshot kept."""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest
from conftest import copy_of
from review_server import review_server

from flashback.review.overlays import list_overlays

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,  # a browser: every test here starts processes (see tests/lanes.py)
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium():
    """One Chromium for the file: a launch (the browser and Playwright's driver) costs a few
    CPU-seconds, and each test's pages get contexts of their own (``pages_of``), so no cookie,
    storage or cache passes from one test to the next."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def pages_of(browser):
    """The shared browser for a block; every context the block opened (``new_page`` opens one per
    page) is closed at its end, passed or failed."""
    before = set(browser.contexts)
    try:
        yield browser
    finally:
        for context in set(browser.contexts) - before:
            context.close()


@pytest.fixture
def server(filled_store, tmp_path):
    db = copy_of(filled_store, tmp_path)
    with review_server(db) as url:
        yield url, db


def open_first_event(page) -> None:
    review = page.get_by_role("button", name="Review", exact=True)
    review.first.wait_for(timeout=60_000)
    review.first.click()
    page.get_by_text("Why it was flagged").wait_for(timeout=60_000)


def video_state(page) -> dict:
    """The page's first video once it can play (or failed): its error code, ready state and duration."""
    player = page.locator("video").first
    player.wait_for(timeout=60_000)
    page.wait_for_function("() => { const v = document.querySelector('video'); return v && (v.readyState >= 2 || v.error); }",
                           timeout=30_000)
    return player.evaluate("v => ({error: v.error && v.error.code, ready: v.readyState, duration: v.duration})")


def stay_after_verdicts(page) -> None:
    """Turn off 'open the next pending event' so the test sees what the verdict did to this event."""
    page.get_by_text("After a verdict, open the next pending event").click()
    page.wait_for_timeout(500)


def give_verdict(page, label: str, reviewer: str) -> None:
    page.get_by_label("Reviewer").fill(reviewer)
    page.get_by_label("Reviewer").press("Enter")
    page.wait_for_timeout(500)
    # the accessible name carries the keyboard shortcut after the label ("Confirmed Y")
    page.get_by_role("button", name=re.compile(rf"^{label}\b")).click()
    page.get_by_text(f"Saved: {label} by {reviewer}").wait_for(timeout=60_000)


def test_click_a_verdict_in_chromium(server, tmp_path, chromium):
    url, db = server
    shot = tmp_path / "event.png"
    with pages_of(chromium) as browser:
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            open_first_event(page)
            stay_after_verdicts(page)
            assert page.get_by_role("button", name="Deploy").count() == 0  # no developer chrome
            page.get_by_label("Note").fill("confirmed on site")
            page.get_by_label("Note").press("Enter")
            give_verdict(page, "Confirmed", "dana")
            page.get_by_text("Learned: ").wait_for(timeout=60_000)  # the camera's overlay took the verdict
            assert len(list_overlays(db)) == 1
            page.get_by_role("button", name="Undo learning").click()
            page.get_by_text("Undone: this event's exemplars left 1 overlay(s)").wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(shot), full_page=True)
    assert list_overlays(db) == []
    with duckdb.connect(str(db), read_only=True) as c:
        assert c.execute("SELECT verdict, reviewer, note FROM reviews").fetchall() == [("confirmed", "dana", "confirmed on site")]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


class Beacon:
    """A loopback HTTP server that records every request: hostile data must never make the page call it."""

    def __init__(self):
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


HOSTILE_NAME = "evil **bold** <img src=x onerror=window.pwned=1> [link](javascript:window.pwned=2).mp4"


@pytest.fixture
def hostile_store(tiny_encoder, tmp_path):
    """A real memory whose captions and category carry HTML and Markdown, a video with a hostile name,
    scored by the real pipeline into a real store."""
    import json

    from flashback.memory.bundle import load_bundle
    from flashback.scoring.pipeline import Detector
    from flashback.settings import ScoringSettings
    from flashback.store import ResultStore, RunRecord
    from flashback.video.synthetic import make_video
    from memory_builder import build_from_captions

    beacon = Beacon()
    b = beacon.url
    anomalous = ['<iframe srcdoc="<script>parent.pwned=3</script>"></iframe> a man smashes a window',
                 f'<img src="{b}/img.png"> two men fight', f"![beacon]({b}/md.png) a car burns",
                 f'<form action="{b}/steal"><input type="password" placeholder="re-enter password"></form>']
    normal = [f"[click me]({b}/link) a calm street", ":red[calm] people walk"]  # six captions: every one is in every top-K
    rows = [{"text": t, "label": "normal"} for t in normal]
    rows += [{"text": t, "label": "anomalous", "category": f'Arson <img src="{b}/cat.png">'} for t in anomalous]
    caps = tmp_path / "hostile.jsonl"
    caps.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_from_captions([caps], tiny_encoder, tmp_path / "mem")
    memory = load_bundle(tmp_path / "mem")
    video = make_video(tmp_path / HOSTILE_NAME, n_frames=90)
    det = Detector(memory, tiny_encoder, ScoringSettings(threshold=0.0, min_event_s=0.5))
    result = det.score(str(video))
    assert result.events
    db = tmp_path / "hostile.duckdb"
    store = ResultStore(db)
    store.initialize()
    store.save(RunRecord(det.settings.to_dict(), memory.memory_id, str(memory.path), tiny_encoder.identity.key, "t"), result)
    return db, beacon


def test_hostile_captions_and_file_names_stay_text(hostile_store, tmp_path, chromium):
    from playwright.sync_api import expect

    db, beacon = hostile_store
    with review_server(db) as url, pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        try:
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("button", name="Review", exact=True).first.wait_for(timeout=60_000)
            assert page.get_by_text("evil **bold** <img src=x", exact=False).count() >= 1  # the name, as text
            open_first_event(page)
            stay_after_verdicts(page)
            page.wait_for_timeout(1500)  # let anything that would load, load
            body = page.inner_text("body")
            for text in ("<iframe srcdoc=", "<img src=", "![beacon](", "<form action=", "[click me](", ":red[calm]"):
                assert text in body, text  # every hostile caption is shown, as the text it is
            for selector in ("iframe", "form", "input[type=password]", "img[src='x']", "a[href^='javascript']"):
                assert page.locator(selector).count() == 0, selector
            assert page.locator(f"img[src^='{beacon.url}']").count() == 0
            assert page.locator(f"a[href^='{beacon.url}']").count() == 0
            assert page.evaluate("window.pwned === undefined")
            give_verdict(page, "False alarm", "dana")  # the verdict still works on such an event
            # a hostile reviewer: the History table (st.table renders Markdown) must show the name as text
            page.get_by_label("Reviewer").fill(f"![x]({beacon.url}/rev.png) [y]({beacon.url}/l)")
            page.get_by_label("Reviewer").press("Enter")
            page.get_by_label("Note").fill(f"**loud** ![n]({beacon.url}/note.png)")
            page.get_by_label("Note").press("Enter")
            page.wait_for_timeout(500)
            page.get_by_role("button", name=re.compile(r"^Unsure\b")).click()
            page.get_by_text("Saved: Unsure by").wait_for(timeout=60_000)
            # while Streamlit reruns, the old copy of a block can stay on the page beside the new one for
            # a moment (two "History" headings once in CI): wait for the first, then for one alone
            history = page.get_by_text("History (newest first)")
            history.first.wait_for(timeout=60_000)
            expect(history).to_have_count(1, timeout=30_000)
            page.wait_for_timeout(1500)
            assert "**loud**" in page.inner_text("body")  # the note, as the text it is
            assert page.locator(f"img[src^='{beacon.url}']").count() == 0
            assert page.locator(f"a[href^='{beacon.url}']").count() == 0
        finally:
            page.screenshot(path=str(tmp_path / "hostile.png"), full_page=True)
    assert beacon.hits == [], f"the page contacted {beacon.hits}"


def test_an_avi_events_clip_plays_in_chromium(seed_memory, tiny_encoder, tmp_path, chromium):
    """MPEG-4 Part 2 in AVI plays in no browser: the page serves the event's span as H.264 MP4."""
    from flashback.scoring.pipeline import Detector
    from flashback.settings import ScoringSettings
    from flashback.store import ResultStore, RunRecord
    from flashback.video.media import clip_span
    from flashback.video.synthetic import make_video

    video = make_video(tmp_path / "dock.avi", n_frames=240, codec="mpeg4", scene_of=lambda k: k // 40)
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(threshold=0.0, min_event_s=0.5))
    result = det.score(str(video))
    assert len(result.events) == 1 and result.info.codec == "mpeg4"
    e = result.events[0]
    a, b, _ = clip_span(e.start_s, e.end_s, e.peak_s, result.duration_s)
    db = tmp_path / "avi.duckdb"
    ResultStore(db).save(RunRecord.of(det), result)
    with review_server(db) as url, pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        try:
            page.goto(url, wait_until="domcontentloaded")
            open_first_event(page)
            state = video_state(page)
            assert state["error"] is None and state["ready"] >= 2, state
            assert abs(state["duration"] - (b - a)) < 0.1  # the event's span with its context
            assert page.get_by_text(f"clip {a:.1f}–{b:.1f} s of the video").count() == 1
        finally:
            page.screenshot(path=str(tmp_path / "avi.png"), full_page=True)


def test_stored_thumbnails_and_clip_load_in_chromium(server, tmp_path, chromium):
    """The queue's thumbnails are real images in the page; the event page plays the clip the
    scorer stored (stream-copied H.264), not the source file."""
    url, db = server
    with duckdb.connect(str(db), read_only=True) as c:
        n, span = c.execute("SELECT count(*), max(clip_end_s - clip_start_s) FROM event_media").fetchone()
    with pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        try:
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("button", name="Review", exact=True).first.wait_for(timeout=60_000)
            page.wait_for_function(f"() => [...document.images].filter(i => i.complete && i.naturalWidth >= 320).length >= {n}",
                                   timeout=30_000)
            open_first_event(page)
            state = video_state(page)
            assert state["error"] is None and state["ready"] >= 2, state
            assert 0 < state["duration"] <= span + 0.5
            assert page.get_by_text("stored clip, ").count() == 1
        finally:
            page.screenshot(path=str(tmp_path / "stored.png"), full_page=True)


def test_search_in_chromium(filled_store, tmp_path, chromium):
    """Type a query on the Search page, get ranked results with key frames, open one at its moment."""
    from conftest import TINY_CLI
    db = copy_of(filled_store, tmp_path)
    with review_server(db, args=TINY_CLI) as url, pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        try:
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_text("Search", exact=True).first.click()
            page.get_by_label("Look for").fill("a car on fire")
            page.get_by_role("button", name="Search").click()
            page.get_by_text("similarity").first.wait_for(timeout=60_000)
            page.wait_for_function(  # ranked results, each with its similarity (Streamlit draws them one by one)
                "() => [...document.querySelectorAll('p')].filter(p => p.textContent.includes(' · similarity ')).length >= 5",
                timeout=30_000)
            page.wait_for_function("() => [...document.images].filter(i => i.complete && i.naturalWidth > 0).length >= 5",
                                   timeout=30_000)
            page.get_by_role("button", name=re.compile(r"^Open (event|video)$")).first.click()
            page.get_by_text(re.compile("Why it was flagged|search result")).first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(tmp_path / "search.png"), full_page=True)


def triage_store(folder, seed_memory, tiny_encoder, n_events: int = 20):
    """A real store with ``n_events`` events: a video that cuts to scene 5 for half a second every second."""
    from flashback.scoring.pipeline import Detector
    from flashback.settings import ScoringSettings
    from flashback.store import ResultStore, RunRecord
    from flashback.video.synthetic import make_video

    video = make_video(folder / "busy.mp4", n_frames=30 * (n_events + 1) * 2, fps=30, size=(64, 48),
                       scene_of=lambda i: 5 if (i // 30) % 2 else 0)
    det = Detector(seed_memory, tiny_encoder, ScoringSettings(threshold=0.5, min_event_s=0.2, merge_gap_s=0.1,
                                                              smoothing_sigma_s=0.1))
    result = det.score(str(video))
    db = folder / "triage.duckdb"
    store = ResultStore(db)
    store.initialize()
    store.save(RunRecord.of(det), result)
    return db, len(result.events)


def settled(page, text: str, when: str, db) -> None:
    """Wait until ``text`` shows and the app has finished its run: a key pressed while Streamlit is
    still drawing the previous event may land on a button that is being replaced.  On a timeout, say
    what the page and the store show instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from ui.data import ReviewDB

    try:
        page.wait_for_function("t => document.body.innerText.includes(t) && document.querySelector("
                               "'[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'", arg=text, timeout=60_000)
    except PlaywrightTimeout:
        shown = re.findall(r"Event \d+ of \d+", page.inner_text("body"))
        state = page.get_attribute("[data-testid=stApp]", "data-test-script-state")
        saved = [r["status"] for r in ReviewDB(db).events()].count("false_alarm")
        raise AssertionError(f"{when}: no '{text}' within 60 s; the page shows {shown[:2]} (script {state}), "
                             f"the store holds {saved} false alarm(s)") from None


def test_twenty_events_triaged_by_keyboard_alone(seed_memory, tiny_encoder, tmp_path, chromium):
    """Open the first event by its link (reviewer in the URL), then only keys: each 'x' saves a false
    alarm and opens the next pending event.  The time per event is printed (a benchmark figure, no
    assert: benchmarks/README.md records it)."""
    import time

    from ui.data import ReviewDB

    db, n = triage_store(tmp_path, seed_memory, tiny_encoder)
    assert n >= 21, n  # the 20th verdict must still have a pending event to open
    first = ReviewDB(db).events()[0]["key"]
    with review_server(db) as url, pages_of(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            import urllib.parse

            page.goto(f"{url}/?view=Event&event={urllib.parse.quote(first, safe='')}&reviewer=dana",
                      wait_until="domcontentloaded")
            settled(page, "Event 1 of", "on opening the link", db)
            box = page.get_by_role("button", name=re.compile(r"^False alarm\b")).bounding_box()
            assert box is not None and box["y"] + box["height"] < 900  # the verdict needs no scrolling
            t0 = time.perf_counter()
            for k in range(20):
                page.keyboard.press("x")
                settled(page, f"Event {k + 2} of", f"after {k + 1} press(es) of x", db)
            per_event = (time.perf_counter() - t0) / 20
        finally:
            page.screenshot(path=str(tmp_path / "triage.png"), full_page=True)
    statuses = [r["status"] for r in ReviewDB(db).events()]
    assert statuses.count("false_alarm") == 20 and {r["reviewer"] for r in ReviewDB(db).events() if r["reviewer"]} == {"dana"}
    print(f"keyboard triage: {per_event:.2f} s per event (20 events, headless Chromium, this machine)")


def test_every_page_in_chromium(server, tmp_path, chromium):
    """Each page opened by its link in a fresh page, checked for what it must show, screenshot kept."""
    url, db = server
    expect = {"Queue": "Flagged events", "Day": "click a mark to open it", "Event": "Why it was flagged", "Video": "threshold",
              "Search": "Search", "Feeds": "Feeds", "False alarms & export": "By camera"}
    with pages_of(chromium) as browser:
        for view, text in expect.items():
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/?view={view.replace(' ', '+').replace('&', '%26')}", wait_until="domcontentloaded")
            page.get_by_text(text, exact=False).first.wait_for(timeout=60_000)
            if view in ("Day", "Event", "Video"):  # their timelines drawn, marks and all
                page.locator(".js-plotly-plot .scatterlayer path").first.wait_for(timeout=60_000)
            page.wait_for_timeout(300)
            assert "Traceback" not in page.inner_text("body") and page.get_by_role("button", name="Deploy").count() == 0
            page.screenshot(path=str(tmp_path / f"{view.split()[0].lower()}.png"), full_page=True)
            page.close()
    assert len(list(tmp_path.glob("*.png"))) == len(expect)
