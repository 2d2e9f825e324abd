"""Session-state keys, named once so pages never disagree about them."""

DB_ENV = "FLASHBACK_REVIEW_DB"  # the database the app reviews; set by `flashback review`

VIEW = "view"
EVENT = "event_key"  # the event being reviewed (EventKey.encode())
VIDEO = "video_key"  # (run_id, video_id) of the video page
REVIEWER = "reviewer"
SNAPSHOT = "snapshot"  # data version when the current view was rendered

VIEWS = ("Queue", "Event", "Video", "False alarms & export")
