-- Schema version 8: when a video's first frame was on its camera, local wall time, and what says
-- so, so every page can give an event's clock time: 'feed clock' (a live feed's start),
-- 'container' (a file's creation_time tag), 'file time' (its modification time less its duration).
-- NULL for videos stored before, and for URLs.

ALTER TABLE videos ADD COLUMN started_at TIMESTAMP;
ALTER TABLE videos ADD COLUMN started_from VARCHAR;
