"""The results store (DuckDB): ``db`` opens, migrates and guards transactions; ``writers`` holds
the one writer of each table; ``schema/`` the numbered migrations."""

from .db import SCHEMA_VERSION, PruneReport, ResultStore, migrations, write_result
from .writers import PER_VIDEO_TABLES, RunRecord

__all__ = ["PER_VIDEO_TABLES", "PruneReport", "SCHEMA_VERSION", "ResultStore", "RunRecord", "migrations", "write_result"]
