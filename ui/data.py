"""The review app's access to the results store: the queries live in ``flashback.review.queries``
(the HTTP API shares them); the app adds only where it finds the store (``FLASHBACK_REVIEW_DB``)."""

from __future__ import annotations

import os

from flashback.review import queries
from flashback.review.queries import STATUSES, VERDICTS, Filters, describe  # noqa: F401 - the app's pages import them from here
from flashback.store.keys import EventKey  # noqa: F401


class ReviewDB(queries.ReviewDB):
    @classmethod
    def from_env(cls) -> "ReviewDB":
        from .state import DB_ENV

        return cls(os.environ.get(DB_ENV, "flashback.duckdb"))
