"""One TCP connect, to say why a service cannot be reached before a library spends its retries on it
(the MQTT broker at start, the Hugging Face hub when weights are not cached)."""

from __future__ import annotations

import socket


def unreachable(host: str, port: int, timeout_s: float) -> str | None:
    """Why ``host:port`` does not accept a connection now (the OS's reason), or None when it does."""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None
