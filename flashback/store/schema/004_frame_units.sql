-- Schema version 4: what "frame" means, said per scoring; verdicts keyed by an event's start.
-- scorings.frame_unit: 'frame' = frame_scores.frame and the events' start/end/peak frames are
-- decoded frame indices (files, caption tracks); 'segment' = they are segment numbers (live feeds:
-- one frame_scores row per segment, at the segment's end time).
-- reviews: a verdict belongs to the event of its run and video that starts at reviews.start_frame.
-- A live event's end moves when it closes but its start does not, so a verdict given while it was
-- open stays attached; reviews.end_frame is the event's last frame when the verdict was given.
-- live videos: videos.fps is the feed's decoded frame rate, filled in as the feed runs.

ALTER TABLE scorings ADD COLUMN frame_unit VARCHAR DEFAULT 'frame';
UPDATE scorings SET frame_unit = 'segment' WHERE video_id IN (SELECT video_id FROM live_feeds);
