-- Flashback results store, schema version 1.
-- A "run" is one scoring configuration (settings + memory + encoder); re-scoring a video under the
-- same run replaces its rows in every per-video table, inside one transaction.
-- Per-video tables carry no PRIMARY KEY on purpose: uniqueness is kept by delete-then-insert in one
-- transaction, which older DuckDB releases reject when a unique index is on the table.

CREATE TABLE runs (
    run_id            VARCHAR PRIMARY KEY,  -- sha256(settings, memory_id, encoder_id)[:16]
    settings          JSON NOT NULL,        -- resolved ScoringSettings (alpha, logit scale filled in)
    memory_id         VARCHAR NOT NULL,
    memory_path       VARCHAR,
    encoder_id        VARCHAR NOT NULL,
    flashback_version VARCHAR NOT NULL,
    created_at        TIMESTAMP NOT NULL
);

CREATE TABLE videos (
    video_id    VARCHAR PRIMARY KEY,  -- SHA-256 of the file's bytes ("url-..." for streams)
    path        VARCHAR NOT NULL,     -- where it was last scored from
    fps         DOUBLE,               -- decoded frames / decoded duration
    duration_s  DOUBLE,
    n_frames    INTEGER,
    width       INTEGER,
    height      INTEGER,
    codec       VARCHAR,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE scorings (
    run_id      VARCHAR NOT NULL,
    video_id    VARCHAR NOT NULL,
    path        VARCHAR NOT NULL,
    scored_at   TIMESTAMP NOT NULL,
    truncated   BOOLEAN NOT NULL,
    note        VARCHAR,
    n_samples   INTEGER NOT NULL,     -- frames encoded
    n_segments  INTEGER NOT NULL,
    n_events    INTEGER NOT NULL,
    max_score   DOUBLE
);

CREATE TABLE frame_scores (
    run_id     VARCHAR NOT NULL,
    video_id   VARCHAR NOT NULL,
    frame      INTEGER NOT NULL,      -- decoded frame index, 0-based
    time_s     DOUBLE NOT NULL,       -- presentation time after the first frame
    raw_score  DOUBLE NOT NULL,       -- mean of covering segments
    score      DOUBLE NOT NULL        -- after smoothing
);

CREATE TABLE segments (
    run_id            VARCHAR NOT NULL,
    video_id          VARCHAR NOT NULL,
    segment           INTEGER NOT NULL,
    start_s           DOUBLE NOT NULL,
    end_s             DOUBLE NOT NULL,
    score             DOUBLE NOT NULL,
    dominant_category VARCHAR,
    anomalous_weight  DOUBLE NOT NULL,
    normal_weight     DOUBLE NOT NULL
);

CREATE TABLE segment_captions (
    run_id     VARCHAR NOT NULL,
    video_id   VARCHAR NOT NULL,
    segment    INTEGER NOT NULL,
    rank       INTEGER NOT NULL,      -- 0 = most similar
    caption_id BIGINT NOT NULL,
    text       VARCHAR NOT NULL,
    label      VARCHAR NOT NULL,
    category   VARCHAR NOT NULL,
    similarity DOUBLE NOT NULL,       -- after alpha
    weight     DOUBLE NOT NULL        -- softmax weight in the segment score
);

CREATE TABLE events (
    run_id            VARCHAR NOT NULL,
    video_id          VARCHAR NOT NULL,
    event             INTEGER NOT NULL,
    start_s           DOUBLE NOT NULL,
    end_s             DOUBLE NOT NULL,
    start_frame       INTEGER NOT NULL,
    end_frame         INTEGER NOT NULL,
    peak_score        DOUBLE NOT NULL,
    peak_frame        INTEGER NOT NULL,
    peak_s            DOUBLE NOT NULL,
    category          VARCHAR,
    anomalous_weight  DOUBLE NOT NULL,
    normal_weight     DOUBLE NOT NULL,
    captions          JSON NOT NULL      -- supporting captions, pooled over the event's segments
);
