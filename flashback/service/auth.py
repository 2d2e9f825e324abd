"""Who may call the HTTP API, and how much one request may ask.

Tokens come from the config (``[serve.api] read-tokens`` / ``write-tokens``, usually ``${ENV}``
references).  A write token also reads.  With no token configured the API answers only on a
loopback bind (``config.py`` refuses anything else), as Frigate's internal port does.  A token is
compared with every configured one in constant time (``hmac.compare_digest``), all of them, so the
time taken says nothing about which one, or how much of one, matched.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

MAX_PAGE = 500  # events per page
MAX_QUERY = 300  # characters of a search text (as an alert text)
MAX_BODY = 4096  # bytes of a verdict
MAX_KEY = 400  # characters of an event key (run id, video id, frame)


class Access:
    def __init__(self, read_tokens: tuple[str, ...] = (), write_tokens: tuple[str, ...] = ()):
        self.read, self.write = tuple(read_tokens), tuple(write_tokens)

    @property
    def open(self) -> bool:
        return not (self.read or self.write)

    @staticmethod
    def _matches(given: str, tokens: tuple[str, ...]) -> bool:
        found = False
        for t in tokens:  # no early exit: every token is compared
            found |= hmac.compare_digest(given.encode(), t.encode())
        return found

    def _token(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def check(self, request: Request, write: bool) -> None:
        """401 without a token, 403 with one that does not allow this."""
        if self.open:
            return
        token = self._token(request)
        if token is None:
            raise HTTPException(401, "a token is needed: Authorization: Bearer TOKEN", headers={"WWW-Authenticate": "Bearer"})
        if self._matches(token, self.write) or not write and self._matches(token, self.read):
            return
        raise HTTPException(403, "this token may not " + ("post verdicts" if write else "read"))
