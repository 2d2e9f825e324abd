"""Session-state keys, named once so pages never disagree about them."""

DB_ENV = "FLASHBACK_REVIEW_DB"  # the database the app reviews; set by `flashback review`
ENCODER_ENV = "FLASHBACK_REVIEW_ENCODER"  # JSON: the encoder the Search page embeds queries with

VIEW = "view"
EVENT = "event_key"  # the event being reviewed (EventKey.encode())
VIDEO = "video_key"  # (run_id, video_id) of the video page
VIDEO_AT = "video_at"  # a moment to mark on the video page's timeline (seconds), from a search result
REVIEWER = "reviewer"
SNAPSHOT = "snapshot"  # data version when the current view was rendered

VIEWS = ("Queue", "Event", "Video", "Search", "False alarms & export")
