"""``flashback serve``: the cameras' watch, retention, the HTTP API and the review app as one service."""
