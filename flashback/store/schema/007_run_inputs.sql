-- Schema version 7: a run is also the part of each frame it saw and the camera table it came from,
-- so results with and without a region (or under two camera tables) are stored side by side.
-- runs.region: cameras.Region.describe() ("roi 0,0,320,240", "polygon ..."), NULL: the whole frame;
-- runs.camera: the camera file's table (its glob or feed name), NULL: none.  Rows stored before
-- keep their run ids: an id includes these only when they are set.

ALTER TABLE runs ADD COLUMN region VARCHAR;
ALTER TABLE runs ADD COLUMN camera VARCHAR;
