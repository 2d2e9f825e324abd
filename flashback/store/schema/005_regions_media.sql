-- Schema version 5: camera regions, and each event's clip and thumbnail.
-- scorings.region: what of each frame the encoder saw (``roi x,y,w,h`` or ``polygon x,y ...`` in
-- displayed pixels); NULL: the whole frame.
-- event_media: an event's clip (its span plus context) and a JPEG of its peak frame, as files under
-- the store's media folder (``<store>.media/``, paths here relative to it).  Keyed like reviews, by
-- the event's run, video and first frame, so a live event's media row survives its closing.

ALTER TABLE scorings ADD COLUMN region VARCHAR;

CREATE TABLE event_media (
    run_id        VARCHAR NOT NULL,
    video_id      VARCHAR NOT NULL,
    start_frame   INTEGER NOT NULL,
    clip_path     VARCHAR,              -- NULL: no clip could be cut (the reason is in note)
    clip_start_s  DOUBLE,               -- the clip's span, in seconds of the video or feed
    clip_end_s    DOUBLE,
    thumb_path    VARCHAR,
    thumb_s       DOUBLE,
    note          VARCHAR,
    created_at    TIMESTAMP NOT NULL
);
