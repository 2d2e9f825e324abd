-- Schema version 6: every scored segment's vector (text search over stored footage), and the
-- texts a run searched beside its memory (--alert / --ignore), so its results can be reproduced.
-- segment_vectors.vector: the segment's unit vector as float16 bytes, of the dimension of the run's
-- encoder (runs.encoder_id); for the tiles frame fit, the view that counted.  vector_id only grows,
-- so a search index can be brought up to date with the rows added since it was saved.

CREATE SEQUENCE segment_vector_seq;

CREATE TABLE segment_vectors (
    vector_id  BIGINT NOT NULL DEFAULT nextval('segment_vector_seq'),
    run_id     VARCHAR NOT NULL,
    video_id   VARCHAR NOT NULL,
    segment    INTEGER NOT NULL,
    start_s    DOUBLE NOT NULL,
    end_s      DOUBLE NOT NULL,
    vector     BLOB NOT NULL
);

ALTER TABLE runs ADD COLUMN extras JSON;  -- [{"text", "kind": "alert" | "ignore", "camera"?}], NULL: none
