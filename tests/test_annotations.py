"""Annotation parsers on crafted files, and frame labels aligned with decoded frames."""

import numpy as np
import pytest

from flashback.eval.annotations import AnnotationError, VideoTruth, frame_labels, load_ground_truth


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_ucf_crime(tmp_path):
    p = write(tmp_path, "ucf.txt", "Arrest001_x264.mp4  Arrest  1185  1485  -1  -1\n"
                                   "Arson011_x264.mp4  Arson  150  420  680  1267\n\n"
                                   "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n")
    gt = load_ground_truth("ucf-crime", p)
    assert gt.videos["Arrest001_x264"].intervals == [(1185, 1485)]
    assert gt.videos["Arson011_x264"].intervals == [(150, 420), (680, 1267)]
    assert gt.videos["Arson011_x264"].category == "Arson"
    assert not gt.videos["Normal_Videos_003_x264"].anomalous
    assert gt.truth_for("Unlisted_x264") is None  # UCF lists every test video


def test_xd_violence_unlisted_are_normal(tmp_path):
    p = write(tmp_path, "xd.txt", "A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_B2-0-0 1 100 200 300 400 500\n")
    gt = load_ground_truth("xd-violence", p)
    assert gt.videos["A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_B2-0-0"].intervals == [(1, 100), (200, 300), (400, 500)]
    assert gt.truth_for("Something_label_A").intervals == []


def test_generic_csv_in_seconds_and_frames(tmp_path):
    p = write(tmp_path, "a.csv", "video,start_s,end_s\ncam1.mp4,1.5,3.0\ncam1.mp4,10,12\ncam2.mp4,,\n")
    gt = load_ground_truth("frames", p)
    assert gt.videos["cam1"].intervals == [(1.5, 3.0), (10.0, 12.0)] and gt.videos["cam1"].unit == "seconds"
    assert not gt.videos["cam2"].anomalous
    p = write(tmp_path, "b.csv", "video,start,end,unit\ncam1,10,20,frames\ncam3,0.5,1,seconds\n")
    gt = load_ground_truth("frames", p)
    assert gt.videos["cam1"].unit == "frames" and gt.videos["cam3"].unit == "seconds"


@pytest.mark.parametrize(
    "dataset,text,match",
    [
        ("ucf-crime", "A_x264.mp4 Abuse 10 20 -1 -1\nB_x264.mp4 Abuse ten 20 -1 -1\n", r"ucf\.txt:2: start frame 'ten' is not a number"),
        ("ucf-crime", "A_x264.mp4 Abuse 10 20 -1\n", r"ucf\.txt:1: start/end frames come in pairs"),
        ("ucf-crime", "A_x264.mp4 Abuse\n", r"ucf\.txt:1: expected 'video class start end"),
        ("ucf-crime", "A_x264.mp4 Abuse 30 20 -1 -1\n", r"ucf\.txt:1: interval 30\.\.20 is not a valid frame range"),
        ("ucf-crime", "A_x264.mp4 Abuse 1 2 -1 -1\nA_x264.mp4 Abuse 3 4 -1 -1\n", r"ucf\.txt:2: A_x264 is annotated twice"),
        ("ucf-crime", "N_x264.mp4 Normal 1 20 -1 -1\n", r"ucf\.txt:1: a Normal video with anomalous intervals"),
        ("xd-violence", "v1 1 2\nv2 5\n", r"ucf\.txt:2: expected 'video start end"),
        ("frames", "name,start,end\n", r"ucf\.txt:1: header must have a 'video' column"),
        ("frames", "video,start,end,unit\nc,1,2,minutes\n", r"ucf\.txt:2: unit 'minutes'"),
        ("frames", "video,start_s,end_s\nc,5,x\n", r"ucf\.txt:2: start/end '5', 'x' are not numbers"),
        ("frames", "video,a,b\n", r"ucf\.txt:1: header needs"),
        ("ucf-crime", "\n# only a comment\n", r"ucf\.txt: no annotations"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, dataset, text, match):
    with pytest.raises(AnnotationError, match=match):
        load_ground_truth(dataset, write(tmp_path, "ucf.txt", text))


def test_missing_file_and_unknown_dataset(tmp_path):
    with pytest.raises(AnnotationError, match="no such annotation file"):
        load_ground_truth("ucf-crime", tmp_path / "nope.txt")
    with pytest.raises(AnnotationError, match="unknown dataset"):
        load_ground_truth("kinetics", tmp_path / "nope.txt")


def test_frame_labels_are_inclusive_and_clipped_at_the_video_end():
    t = VideoTruth("v", [(0, 2), (7, 50)])
    np.testing.assert_array_equal(frame_labels(t, 10), [1, 1, 1, 0, 0, 0, 0, 1, 1, 1])
    assert frame_labels(VideoTruth("v"), 4).sum() == 0


def test_second_labels_follow_frame_timestamps():
    times = np.array([0.0, 0.4, 0.5, 0.9, 1.0, 1.7])  # variable frame rate
    t = VideoTruth("v", [(0.5, 1.0)], unit="seconds")
    np.testing.assert_array_equal(frame_labels(t, 6, times), [0, 0, 1, 1, 1, 0])


def test_video_stems_keep_dots_that_are_not_extensions():
    from flashback.eval.annotations import stem

    assert stem("/d/Arrest001_x264.mp4") == "Arrest001_x264"
    assert stem("A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_B2-0-0.mp4") == "A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_B2-0-0"
    assert stem("A.Beautiful.Mind.2001__#00-25-20_label_A") == "A.Beautiful.Mind.2001__#00-25-20_label_A"
