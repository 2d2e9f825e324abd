"""Live streams on loopback for the tests: Debian's ffmpeg serving a video as MPEG-TS over HTTP."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

FFMPEG = shutil.which("ffmpeg")


def serve(video: Path, port: int, loop: bool = False) -> subprocess.Popen:
    """ffmpeg as a one-client HTTP server streaming MPEG-TS at the video's real rate."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-re"] + (["-stream_loop", "-1"] if loop else []) + [
        "-i", str(video), "-c", "copy", "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/feed"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline and not listening(port):  # a test connection would be its one client
        time.sleep(0.05)
    return p


def listening(port: int) -> bool:
    """Is a socket listening on this loopback port? Read from /proc, without connecting."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A" for r in rows)


def described(url: str, port: int) -> bool:
    """Does the RTSP server on this loopback port describe ``url`` yet (a publisher has announced
    it)?  One DESCRIBE over TCP and its status line; no session is set up."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
            return s.recv(64).split(b"\r\n", 1)[0].endswith(b"200 OK")
    except OSError:
        return False
