"""Streamlit review app for flagged events (``flashback review --db FILE``)."""
