-- Schema version 9: each live feed's health over its last stats window (live/health.py), so the
-- review app's Feeds page can say which camera is not covered: the share of samples dropped, p95
-- latency against the watch's budget, and whether it keeps up.  NULL before the first window.

ALTER TABLE live_feeds ADD COLUMN window_drop_share DOUBLE;
ALTER TABLE live_feeds ADD COLUMN window_latency_p95_s DOUBLE;
ALTER TABLE live_feeds ADD COLUMN latency_budget_s DOUBLE;
ALTER TABLE live_feeds ADD COLUMN keeping_up BOOLEAN;
