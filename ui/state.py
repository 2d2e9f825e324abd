"""Session-state keys, named once so pages never disagree about them."""

DB_ENV = "FLASHBACK_REVIEW_DB"  # the database the app reviews; set by `flashback review`
ENCODER_ENV = "FLASHBACK_REVIEW_ENCODER"  # JSON: the encoder the Search page embeds queries with

VIEW = "view"
EVENT = "event_key"  # the event being reviewed (EventKey.encode())
VIDEO = "video_key"  # (run_id, video_id) of the video page
VIDEO_AT = "video_at"  # a moment to mark on the video page's timeline (seconds), from a search result
REVIEWER = "reviewer"
AUTO_NEXT = "auto_next"  # after a verdict, open the next pending event (on unless turned off)
SNAPSHOT = "snapshot"  # data version when the current view was rendered

VIEWS = ("Queue", "Day", "Event", "Video", "Search", "Feeds", "False alarms & export")


# ---------------------------------------------------------------- links: the page's URL says what it shows

LINKED = {VIEW: "view", EVENT: "event", REVIEWER: "reviewer"}  # session key -> query parameter


def from_url() -> None:
    """Once per session: what the URL names (a colleague's link, a bookmark) becomes the state."""
    import streamlit as st

    if st.session_state.get("_from_url"):
        return
    st.session_state["_from_url"] = True
    st.session_state.setdefault(AUTO_NEXT, True)
    for key, param in LINKED.items():
        value = st.query_params.get(param)
        if value and (key != VIEW or value in VIEWS):
            st.session_state[key] = value


def to_url() -> None:
    """The page's URL follows what it shows, so it can be copied and opened elsewhere."""
    import streamlit as st

    for key, param in LINKED.items():
        value = st.session_state.get(key)
        if value and (key != EVENT or st.session_state.get(VIEW) == "Event"):
            st.query_params[param] = value
        elif param in st.query_params:
            del st.query_params[param]

