"""The HTTP API of ``flashback serve`` (FastAPI; its OpenAPI schema at ``/openapi.json``).

What a Frigate user's integrations ask of a camera service: health, events with filters and a
cursor, one event with its explanation, verdict history and media, the clip (with HTTP Range, so
a browser seeks) and the thumbnail, a verdict posted the way the review app saves one, text
search, a camera's score series, live feed statistics, event updates as Server-Sent Events, and
Prometheus metrics.  Everything is read from the results store through the review app's queries
(``review/queries.py``), so the API and the app never disagree, and a verdict goes through the
store's one writer and into the camera's overlay exactly as the app does it.

No request reaches a file but a recorded clip or thumbnail, found by event key under the store's
media folder (``ReviewDB.stored_media`` refuses a path that leaves it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from ..errors import FlashbackError, UsageError, one_line, printable
from ..review.queries import Filters, ReviewDB
from ..store.keys import EventKey
from ..video.cameras import camera_matches
from ..video.clock import wall_time
from .auth import MAX_BODY, MAX_KEY, MAX_PAGE, MAX_QUERY, Access
from .metrics import Metrics

EVENT_FIELDS = ("key", "camera", "category", "start_s", "end_s", "peak_score", "peak_s", "status", "reviewer", "clock")


class EventOut(BaseModel):
    key: str
    camera: str
    category: str
    start_s: float
    end_s: float
    peak_score: float
    peak_s: float | None
    status: str
    reviewer: str | None
    clock: str | None
    at: datetime | None = Field(description="the event's start on its camera's clock, or when it was scored")
    links: dict[str, str]


class EventPage(BaseModel):
    events: list[EventOut]
    next_cursor: str | None


class Caption(BaseModel):
    text: str
    anomalous: bool
    weight: float


class EventDetail(EventOut):
    captions: list[Caption]
    history: list[dict]
    media_note: str | None


class VerdictIn(BaseModel):
    verdict: Literal["confirmed", "false_alarm", "unsure"]
    reviewer: str = Field(min_length=1, max_length=100)
    note: str = Field("", max_length=2000)


class VerdictOut(BaseModel):
    saved: bool
    overlay: str


class FeedOut(BaseModel):
    feed: str
    state: str
    last_update_age_s: float | None
    segments_scored: int | None
    segments_lost: int | None
    drop_share: float
    latency_p95_s: float | None
    over_budget: bool


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    store: dict
    feeds: list[FeedOut]
    queues: dict[str, int]


class Hit(BaseModel):
    camera: str
    video_id: str
    start_s: float
    end_s: float
    similarity: float
    score: float
    caption: str | None
    when: datetime
    event: str | None = Field(description="the key of the stored event covering this moment, if one does")


class Series(BaseModel):
    camera: str
    at: list[datetime]
    score: list[float]


def _at(r: dict) -> datetime | None:
    return wall_time(r.get("started_at"), r["start_s"]) or r.get("scored_at")


def _event(r: dict) -> dict:
    q = f"/api/events/{r['key']}"
    links = {"self": q}
    if r.get("clip_path"):
        links["clip"] = q + "/clip"
    if r.get("thumb_path"):
        links["thumbnail"] = q + "/thumbnail"
    return {**{k: r.get(k) for k in EVENT_FIELDS}, "at": _zoned(_at(r)), "links": links}


def _cursor(at: str, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([at, key]).encode()).decode()


def _uncursor(text: str) -> tuple[str, str]:
    try:
        at, key = json.loads(base64.urlsafe_b64decode(text.encode()))
        if not isinstance(at, str) or not isinstance(key, str):
            raise ValueError
        return at, key
    except (ValueError, binascii.Error, UnicodeDecodeError, TypeError):
        raise HTTPException(400, "cursor: not one this API gave out") from None


def _key(key: str) -> EventKey:
    try:
        if len(key) > MAX_KEY:
            raise ValueError
        k = EventKey.decode(key)
        if not -2**31 <= k.start_frame < 2**31:  # the store's INTEGER: no event has it, and the query must not see it
            raise ValueError
        return k
    except ValueError:
        raise HTTPException(404, "no such event") from None


def make_app(db: Path, access: Access, metrics: Metrics | None = None, cors_origins: tuple[str, ...] = (),
             searcher: Callable[[], object] | None = None, queues: Callable[[], dict[str, int]] = dict,
             poll_s: float = 1.0) -> FastAPI:
    """The API over the store ``db``.  ``searcher``: makes the text encoder (loaded on the first
    search); ``queues``: the running service's outbox and buffer depths; ``metrics``: the registry
    the watcher reports to."""
    store = ReviewDB(db)
    metrics = metrics or Metrics()
    app = FastAPI(title="flashback", version="1", description="Zero-shot video anomaly detection by memory retrieval: "
                                                                   "events, verdicts, search and health of a flashback service.")
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    def reader(request: Request) -> None:
        access.check(request, write=False)

    def writer(request: Request) -> None:
        access.check(request, write=True)

    read, write = Depends(reader), Depends(writer)

    @app.exception_handler(FlashbackError)
    async def store_busy(request: Request, e: FlashbackError):
        """A store locked by a writer for longer than the wait, or unreadable: said, never a traceback."""
        status = 400 if isinstance(e, UsageError) else 503
        return JSONResponse({"detail": one_line(e)}, status_code=status, headers={"Retry-After": "5"} if status == 503 else None)

    encoder: dict = {}  # the text encoder, loaded by the first search

    def rows(f: Filters | None = None) -> list[dict]:
        if store.problem():
            return []
        return store.events(f or Filters())

    def one(key: str) -> dict:
        """The event by its key, with a query for it alone (a clip or a verdict does not read the whole store)."""
        found = rows(Filters(event=_key(key)))
        if not found:
            raise HTTPException(404, "no such event")
        return found[0]

    @app.get("/api/health", response_model=Health, dependencies=[read])
    def health() -> dict:
        problem = store.problem()
        feeds = [] if problem else store.feeds()
        now = datetime.now()
        out = [{"feed": f["feed"], "state": f["state"], "segments_scored": f["segments_scored"], "segments_lost": f["segments_lost"],
                "last_update_age_s": round((now - f["updated_at"]).total_seconds(), 3) if f["updated_at"] else None,
                "drop_share": f["drop_share"], "latency_p95_s": f["latency_p95_s"], "over_budget": f["over_budget"]} for f in feeds]
        # the store is opened per write, so what matters is whether a write could happen now
        exists = store.path.exists()
        writable = os.access(store.path if exists else store.path.parent, os.W_OK) and (problem is None or not exists)
        down = any(f["state"] == "down" or f["over_budget"] for f in out)
        return {"status": "degraded" if problem and exists or down else "ok",
                "store": {"path": str(store.path), "exists": exists, "problem": problem, "writable": writable},
                "feeds": out, "queues": queues()}

    @app.get("/api/events", response_model=EventPage, dependencies=[read])
    def events(camera: str | None = Query(None, max_length=200), category: str | None = Query(None, max_length=200),
               since: datetime | None = None, before: datetime | None = None,
               verdict: Literal["pending", "confirmed", "false_alarm", "unsure"] | None = None,
               min_peak: float = Query(0.0, ge=0.0, le=1.0), limit: int = Query(50, ge=1, le=MAX_PAGE),
               cursor: str | None = Query(None, max_length=2 * MAX_KEY)) -> dict:
        """Newest first (by camera clock, else when scored); ``next_cursor`` fetches the page after."""
        since, before = _local_or_400(since, "since"), _local_or_400(before, "before")
        chosen = []  # (position, row): the position orders the pages and is what a cursor holds
        for r in rows():
            at = _at(r)
            if ((camera is None or camera_matches(r["camera"], camera)) and (category is None or r["category"] == category)
                    and (verdict is None or r["status"] == verdict) and r["peak_score"] >= min_peak
                    and (since is None or (at and at >= since)) and (before is None or (at and at < before))):
                chosen.append((((at or datetime.min).isoformat(), r["key"]), r))
        chosen.sort(key=lambda p: p[0], reverse=True)
        if cursor:
            after = _uncursor(cursor)
            chosen = [p for p in chosen if p[0] < after]
        page = chosen[:limit]
        return {"events": [_event(r) for _, r in page], "next_cursor": _cursor(*page[-1][0]) if len(chosen) > limit else None}

    @app.get("/api/events/{key}", response_model=EventDetail, dependencies=[read])
    def event(key: str) -> dict:
        r = one(key)
        caps = [{"text": c.get("text", ""), "anomalous": bool(c.get("anomalous")), "weight": float(c.get("weight", 0.0))}
                for c in r["captions"] if isinstance(c, dict)]
        return {**_event(r), "captions": caps, "media_note": r.get("media_note"),
                "history": [{**h, "when": h["when"] and _zoned(h["when"]).isoformat()} for h in store.history(_key(key))]}

    def media(key: str, column: str, kind: str) -> Path:
        p = store.stored_media(one(key).get(column))
        if p is None:
            raise HTTPException(404, f"this event has no {kind} (not recorded, or pruned)")
        return p

    @app.get("/api/events/{key}/clip", dependencies=[read], response_class=FileResponse,
             responses={200: {"content": {"video/mp4": {}}}, 206: {"content": {"video/mp4": {}}}, 404: {}})
    def clip(key: str):
        p = media(key, "clip_path", "clip")
        return FileResponse(p, media_type="video/mp4" if p.suffix == ".mp4" else "application/octet-stream")

    @app.get("/api/events/{key}/thumbnail", dependencies=[read], response_class=FileResponse,
             responses={200: {"content": {"image/jpeg": {}}}, 404: {}})
    def thumbnail(key: str):
        return FileResponse(media(key, "thumb_path", "thumbnail"), media_type="image/jpeg")

    @app.post("/api/events/{key}/verdict", response_model=VerdictOut, dependencies=[write],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": VerdictIn.model_json_schema()}}}})
    async def post_verdict(key: str, request: Request) -> dict:
        body = await request.body()
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"a verdict is at most {MAX_BODY} bytes")
        try:
            v = VerdictIn.model_validate_json(body or b"{}")
        except ValueError as e:
            raise HTTPException(400, printable(str(e).splitlines()[0])) from None
        r = one(key)
        said = await asyncio.to_thread(store.save_verdict, _key(key), r["end_frame"], v.verdict, v.reviewer, v.note)
        metrics.verdict(v.verdict)
        return {"saved": True, "overlay": said}

    @app.get("/api/search", response_model=list[Hit], dependencies=[read])
    def search(q: str = Query(..., min_length=1, max_length=MAX_QUERY), camera: str | None = Query(None, max_length=200),
               top: int = Query(10, ge=1, le=100)) -> list[dict]:
        if searcher is None:
            raise HTTPException(503, "search is not available: this service has no text encoder")
        if not q.strip():
            raise HTTPException(400, "q: the query text is empty")
        if "encoder" not in encoder:
            encoder["encoder"] = searcher()
        hits = store.search(encoder["encoder"], q, top, camera)
        events = rows()
        return [{"camera": h.camera, "video_id": h.video_id, "start_s": h.start_s, "end_s": h.end_s, "similarity": h.similarity,
                 "score": h.score, "caption": h.caption, "when": _zoned(h.when),
                 "event": store.event_at(events, h.run_id, h.video_id, h.start_s)} for h in hits]

    @app.get("/api/cameras/{camera}/scores", response_model=Series, dependencies=[read])
    def scores(camera: str, since: datetime | None = None, before: datetime | None = None,
               points: int = Query(1000, ge=10, le=10_000)) -> dict:
        if store.problem():
            raise HTTPException(404, "no such camera")
        at, score = store.score_series(camera, _local_or_400(since, "since"), _local_or_400(before, "before"), points)
        if at is None:
            raise HTTPException(404, "no such camera")
        return {"camera": camera, "at": [_zoned(t) for t in at], "score": score}

    @app.get("/api/feeds", response_model=list[dict], dependencies=[read])
    def feeds() -> list[dict]:
        return [] if store.problem() else json.loads(json.dumps(store.feeds(), default=str))

    @app.get("/api/events-stream", dependencies=[read], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def stream(request: Request):
        """``event: event`` with an event's JSON each time one appears or changes (opens, grows, closes, gets a verdict)."""
        async def updates():
            seen: dict[str, tuple] = {r["key"]: _state(r) for r in await asyncio.to_thread(rows)}
            yield ": connected\n\n"
            while not await request.is_disconnected():
                await asyncio.sleep(poll_s)
                for r in await asyncio.to_thread(rows):
                    if seen.get(r["key"]) != _state(r):
                        seen[r["key"]] = _state(r)
                        yield f"event: event\ndata: {json.dumps(_event(r), default=str)}\n\n"

        return StreamingResponse(updates(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[read])
    def prometheus():
        return PlainTextResponse(metrics.exposition(), media_type=metrics.content_type)

    return app


def _zoned(t: datetime | None) -> datetime | None:
    """A stored time (local wall time, no zone) with this machine's offset, as RFC 3339 wants."""
    return t.astimezone() if t is not None and t.tzinfo is None else t


def _local(t: datetime | None) -> datetime | None:
    """A time with a zone as the store keeps times: local wall time, no zone."""
    return t.astimezone().replace(tzinfo=None) if t is not None and t.tzinfo else t


def _local_or_400(t: datetime | None, name: str) -> datetime | None:
    try:
        return _local(t)
    except (OverflowError, ValueError, OSError):
        raise HTTPException(400, f"{name}: not a time this machine can place") from None


def _state(r: dict) -> tuple:
    return (r["end_s"], r["peak_score"], r["status"], bool(r.get("clip_path")))
