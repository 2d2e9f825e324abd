"""``flashback serve``'s part of the config file: cameras, outputs, the review app and the HTTP API.

The service reads the same file as every command (``cli/config.py``: ``$FLASHBACK_CONFIG``,
``./flashback.toml``, ``~/.config/flashback/config.toml``), so the encoder, memory, store and media
keys at its top level serve ``serve`` as they serve ``score``.  Under ``[serve]`` go the watch
flags (outputs: ``mqtt``, ``ha-discovery``, ``webhook``, ``events``, ``review-url``; retention:
``retention-days``; ``preset``, ``max-latency`` ...) and three tables of the service's own::

    [serve.api]            bind, port, read-tokens, write-tokens, cors-origins
    [serve.review]         enabled, bind, port, unauthenticated (required off loopback: it has no login)
    [[serve.cameras]]      name, url, roi | polygon, alert, ignore, threshold

A secret is written ``${NAME}`` in any value of the file and read from the environment (a
missing variable is a problem, never an empty password).  Every problem is collected, so ``serve --check`` prints them all at
once, one line each, naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError, masked, one_line

if TYPE_CHECKING:  # the live and video modules load PyAV and numpy: not for every command's config
    from ..live.feeds import FeedSpec
    from ..video.cameras import Cameras

TABLES = ("api", "review", "cameras")  # keys of [serve] that are the service's, not flags
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MIN_TOKEN = 16  # characters: a token is a secret, not a PIN


@dataclass(frozen=True)
class Camera:
    name: str
    url: str  # with its secrets filled in: never printed (``FeedSpec.shown`` masks it)
    threshold: float | None = None  # this camera's event threshold; None: the service's
    table: dict = field(default_factory=dict, compare=True, hash=False)  # roi/polygon/alert/ignore, as a camera file holds them


@dataclass(frozen=True)
class ApiConfig:
    bind: str = "127.0.0.1"
    port: int = 5080
    read_tokens: tuple[str, ...] = ()
    write_tokens: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()

    @property
    def loopback(self) -> bool:
        return _loopback(self.bind)


@dataclass(frozen=True)
class ReviewConfig:
    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = 8501
    unauthenticated: bool = False  # the app has no login: off loopback only when the operator says so


@dataclass(frozen=True)
class ServiceConfig:
    path: Path | None
    cameras: tuple[Camera, ...] = ()
    api: ApiConfig = ApiConfig()
    review: ReviewConfig = ReviewConfig()

    def feeds(self) -> list[FeedSpec]:
        """Each camera as a feed: its region and threshold set."""
        from ..live.feeds import parse_feed

        table = self.camera_table()
        return [dataclasses.replace(parse_feed(f"{c.name}={c.url}", i), region=table.for_feed(c.name), threshold=c.threshold)
                for i, c in enumerate(self.cameras)]

    def camera_table(self) -> Cameras:
        """Regions and texts per camera, as ``--cameras FILE`` would give them."""
        from ..video.cameras import cameras_from

        return cameras_from({c.name: c.table for c in self.cameras}, f"{self.path} [serve.cameras]")


class ConfigProblems(UsageError):
    """Every problem of the service's config, one line each (the command prints one error per line)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class _Problems(list):
    def add(self, where: str, key: str, what: str) -> None:
        self.append(f"{where} {key}: {what}")


def expand_env(text: str) -> tuple[str, list[str]]:
    """``${NAME}`` replaced from the environment; the names that are not set (left empty)."""
    missing: list[str] = []

    def fill(m: re.Match) -> str:
        if m.group(1) not in os.environ:
            missing.append(m.group(1))
        return os.environ.get(m.group(1), "")

    return ENV_REF.sub(fill, text), missing


def _secrets(value, where: str, key: str, problems: _Problems):
    """``${NAME}`` in a text replaced from the environment (in lists too)."""
    if isinstance(value, list):
        return [_secrets(v, where, key, problems) for v in value]
    if not isinstance(value, str):
        return value
    text, missing = expand_env(value)
    for name in missing:
        problems.add(where, key, f"the environment variable {name} is not set")
    return text


def _take(table: dict, spec: dict, where: str, problems: _Problems) -> dict:
    """The table's keys checked against ``spec`` (key -> (types, check or None)); dashes become underscores."""
    out = {}
    if not isinstance(table, dict):
        problems.append(f"{where}: expected a table")
        return out
    for key, value in table.items():
        if key not in spec:
            problems.add(where, key, f"unknown key (known: {', '.join(spec)})")
            continue
        types, check = spec[key]
        value = _secrets(value, where, key, problems)
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            problems.add(where, key, f"{one_line(repr(masked(str(value))))}: expected {' or '.join(t.__name__ for t in types)}")
            continue
        why = check(value) if check else None
        if why:
            problems.add(where, key, why)
            continue
        out[key.replace("-", "_")] = value
    return out


def _port(v: int) -> str | None:
    return None if 1 <= v <= 65_535 else f"{v}: a port is 1 to 65535"


def _loopback(bind: str) -> bool:
    """Whether a bind address (already checked by ``_address``) answers this machine only."""
    return bind == "localhost" or ipaddress.ip_address(bind).is_loopback


def _address(v: str) -> str | None:
    if v == "localhost":
        return None
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return f"{v!r}: expected an IP address to listen on (127.0.0.1, 0.0.0.0, ::1)"
    return None


def _tokens(v: list) -> str | None:
    if not all(isinstance(t, str) for t in v):
        return "expected a list of texts"
    short = [t for t in v if len(t) < MIN_TOKEN]
    return f"a token must be at least {MIN_TOKEN} characters (python -c 'import secrets; print(secrets.token_urlsafe())')" if short else None


def _texts(v: list) -> str | None:
    return None if all(isinstance(t, str) for t in v) else "expected a list of texts"


API = {"bind": ((str,), _address), "port": ((int,), _port), "read-tokens": ((list,), _tokens),
       "write-tokens": ((list,), _tokens), "cors-origins": ((list,), _texts)}
REVIEW = {"enabled": ((bool,), None), "bind": ((str,), _address), "port": ((int,), _port), "unauthenticated": ((bool,), None)}
CAMERA = {"name": ((str,), None), "url": ((str,), None), "threshold": ((float, int), lambda v: None if 0 < v < 1 else f"{v}: between 0 and 1"),
          "roi": ((list,), None), "polygon": ((list,), None), "alert": ((list,), None), "ignore": ((list,), None)}


def read_service(path: Path | None, doc: dict, mqtt_topic: str | None = None) -> ServiceConfig:
    """The ``[serve]`` tables of the config file ``path``, already read as ``doc``; ``ConfigProblems``
    with every problem.  ``mqtt_topic``: with MQTT on, camera names must make topics under it."""
    serve = doc.get("serve", {})
    problems = _Problems()
    api = ApiConfig(**{k: tuple(v) if isinstance(v, list) else v
                       for k, v in _take(serve.get("api", {}), API, f"{path} [serve.api]", problems).items()})
    review = ReviewConfig(**_take(serve.get("review", {}), REVIEW, f"{path} [serve.review]", problems))
    cameras = []
    raw = serve.get("cameras", [])
    if not isinstance(raw, list):
        problems.append(f"{path} [serve] cameras: expected [[serve.cameras]] tables, one per camera")
        raw = []
    for i, table in enumerate(raw):
        where = f"{path} [serve.cameras] #{i + 1}" + (f" ({table['name']})" if isinstance(table, dict) and isinstance(table.get("name"), str) else "")
        got = _take(table, CAMERA, where, problems)
        if "name" not in got or "url" not in got:
            problems.append(f"{where}: a camera needs a name and a url")
            continue
        cameras.append(Camera(got["name"], got["url"], got.get("threshold"),
                              {k: got[k] for k in ("roi", "polygon", "alert", "ignore") if k in got}))
    config = ServiceConfig(path, tuple(cameras), api, review)
    _check_whole(config, problems, mqtt_topic)
    if problems:
        raise ConfigProblems(problems)
    return config


def _check_whole(c: ServiceConfig, problems: _Problems, mqtt_topic: str | None) -> None:
    """What only the whole tells: unique names, feeds that can be opened, tokens for an open bind."""
    from ..live.feeds import parse_feed
    from ..live.sinks.mqtt import check_topics

    where = f"{c.path} [serve.cameras]"
    names = [cam.name for cam in c.cameras]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add(where, "name", f"{name!r} names two cameras")
    for i, cam in enumerate(c.cameras):
        try:
            parse_feed(f"{cam.name}={cam.url}", i)
        except UsageError as e:
            problems.add(f"{where} ({cam.name})", "url", str(e))
    try:
        c.camera_table()
    except UsageError as e:
        problems.append(str(e))
    if mqtt_topic is not None:
        try:
            check_topics(mqtt_topic, names)
        except UsageError as e:
            problems.add(where, "name", str(e))
    r = c.review
    if r.enabled and not _loopback(r.bind) and not r.unauthenticated:
        problems.add(f"{c.path} [serve.review]", "bind", f"{r.bind}: the review app has no login, so anyone who reaches it can "
                     "post verdicts: keep 127.0.0.1 behind a reverse proxy with authentication, or set unauthenticated = true")
    if c.api.port == r.port and r.enabled:
        problems.add(f"{c.path} [serve.api]", "port", f"{c.api.port} is the review app's port too")
    if not c.api.loopback and not (c.api.read_tokens or c.api.write_tokens):
        problems.add(f"{c.path} [serve.api]", "bind", f"{c.api.bind} is reachable from other machines: "
                     "set read-tokens (and write-tokens to post verdicts), or bind 127.0.0.1")
