-- Schema version 2: reviewers' verdicts on flagged events.
-- Every verdict is a new row (history kept); the current verdict is the newest row of an event.
-- An event is identified by (run, video, first frame, last frame): re-scoring with the same settings
-- reproduces it, so its reviews stay attached; re-scoring never deletes reviews.

CREATE SEQUENCE review_seq;

CREATE TABLE reviews (
    review_id   BIGINT PRIMARY KEY DEFAULT nextval('review_seq'),
    run_id      VARCHAR NOT NULL,
    video_id    VARCHAR NOT NULL,
    start_frame INTEGER NOT NULL,
    end_frame   INTEGER NOT NULL,
    verdict     VARCHAR NOT NULL CHECK (verdict IN ('confirmed', 'false_alarm', 'unsure')),
    note        VARCHAR,
    reviewer    VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
