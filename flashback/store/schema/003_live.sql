-- Schema version 3: live feeds (flashback watch).
-- A watched feed is stored as a "video" with id live-<feed>-<hash>-<start time>; rows are appended
-- as the feed runs.  Its frame_scores hold one row per scored segment (frame = segment index,
-- time_s = segment end, score = causally smoothed), and its events' start/end/peak frames are
-- segment indices.  An event row is written when the event opens and replaced when it closes.

CREATE TABLE live_feeds (
    video_id         VARCHAR PRIMARY KEY,
    feed             VARCHAR NOT NULL,
    location         VARCHAR NOT NULL,
    started_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    active           BOOLEAN NOT NULL,
    segments_scored  INTEGER NOT NULL,
    segments_lost    INTEGER NOT NULL,   -- every sample of the segment dropped, or the feed was down
    frames_decoded   BIGINT NOT NULL,
    samples_dropped  BIGINT NOT NULL,    -- grid frames dropped to keep latency bounded
    reconnects       INTEGER NOT NULL,
    latency_p50_s    DOUBLE,             -- frame capture to segment score
    latency_p95_s    DOUBLE,
    latency_max_s    DOUBLE
);

CREATE TABLE outages (
    video_id  VARCHAR NOT NULL,
    feed      VARCHAR NOT NULL,
    start_s   DOUBLE NOT NULL,   -- feed time (seconds since the watch started) the feed was lost
    end_s     DOUBLE,            -- when it came back; NULL if it never did
    reason    VARCHAR NOT NULL,
    attempts  INTEGER NOT NULL
);
