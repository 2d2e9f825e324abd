"""Defaults remembered: flashback.toml (or FLASHBACK_CONFIG, or the user's config folder) and
FLASHBACK_* variables under the flags, checked like flags, shown by ``flashback config show``; and
search finding the encoder a store was scored with by itself."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_MODEL, flashback_here

from flashback.video.synthetic import make_video

TINY_TOML = f'encoder = "{TINY_MODEL}"\npretrained = "random"\ndevice = "cpu"\n'


def test_the_file_sets_every_commands_defaults_and_a_flag_beats_the_environment_beats_the_file(tmp_path, seed_memory):
    (tmp_path / "flashback.toml").write_text(TINY_TOML + f'memory = "{seed_memory.path}"\ndb = "store/r.duckdb"\n'
                                             '[score]\nthreshold = 0.2\n')
    (tmp_path / "store").mkdir()
    video = make_video(tmp_path / "v.mp4", n_frames=30)
    p = flashback_here("score", video, "--json", tmp_path / "r.json", cwd=tmp_path)  # no encoder, memory or store flag
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "store" / "r.duckdb").is_file()  # relative to the file
    assert json.loads((tmp_path / "r.json").read_text())["run"]["settings"]["threshold"] == 0.2
    shown = flashback_here("config", "show", cwd=tmp_path, env={"FLASHBACK_DEVICE": "cuda"})
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]] for line in shown.stdout.splitlines()
            if line.startswith("│")}
    assert rows["device"] == ["cuda", "FLASHBACK_DEVICE"] and rows["encoder"] == [TINY_MODEL, "flashback.toml"]
    assert rows["threshold"] == ["0.2", "flashback.toml [score]"] and rows["db"][0] == str(tmp_path / "store" / "r.duckdb")
    bad_env = flashback_here("score", video, "--no-db", cwd=tmp_path, env={"FLASHBACK_PRETRAINED": "no-such-tag"})
    assert bad_env.returncode != 0 and "no-such-tag" in bad_env.stderr  # the environment beat the file...
    flag = flashback_here("score", video, "--no-db", "--pretrained", "random", cwd=tmp_path, env={"FLASHBACK_PRETRAINED": "no-such-tag"})
    assert flag.returncode == 0, flag.stderr  # ...and the flag beat the environment


@pytest.mark.parametrize("text,message", [
    ("thresold = 0.3\n", "flashback.toml: unknown key 'thresold'"),
    ("[score]\nthreshold = 2\n", "flashback.toml [score]: threshold = 2: must be a number in [0, 1]"),
    ('precision = "fp8"\n', "precision = 'fp8': choose one of auto, fp32, fp16, bf16"),
    ("[scroe]\nthreshold = 0.3\n", "flashback.toml [scroe]: no such command"),
    ("quiet = 1\n", "quiet = 1: expected true or false"),
    ("device = [\n", "flashback.toml: not valid TOML"),
])
def test_a_bad_config_file_is_one_line_before_anything_loads(tmp_path, text, message):
    (tmp_path / "flashback.toml").write_text(text)
    p = flashback_here("score", "x.mp4", cwd=tmp_path)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_secrets_come_from_the_environment_and_every_problem_is_said(tmp_path):
    (tmp_path / "flashback.toml").write_text('checkpoint = "${MODELS}/vit.pt"\nthresold = 0.3\n[score]\nthreshold = 2\n'
                                             '[watch]\nmqtt = "mqtt://u:${MQTT_PW}@localhost"\n')
    p = flashback_here("config", "show", cwd=tmp_path, env={"MODELS": "/opt/models"})
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 3, p.stderr
    assert "unknown key 'thresold'" in lines[0] and "threshold = 2" in lines[1]
    assert lines[2].endswith("flashback.toml [watch]: mqtt: the environment variable MQTT_PW is not set")
    (tmp_path / "flashback.toml").write_text('checkpoint = "${MODELS}/vit.pt"\n')
    p = flashback_here("config", "show", cwd=tmp_path, env={"MODELS": "/opt/models"})
    assert p.returncode == 0 and "/opt/models/vit.pt" in p.stdout, p.stderr


def test_flashback_config_names_the_file_and_a_missing_one_is_refused(tmp_path):
    (tmp_path / "mine.toml").write_text('device = "cpu"\n')
    p = flashback_here("config", "show", "--for", "watch", env={"FLASHBACK_CONFIG": tmp_path / "mine.toml"})
    assert p.returncode == 0 and str(tmp_path / "mine.toml") in p.stdout and "│ cpu" in p.stdout
    p = flashback_here("config", "show", env={"FLASHBACK_CONFIG": tmp_path / "none.toml"})
    assert p.returncode == 2 and "FLASHBACK_CONFIG=" in p.stderr and "no such config file" in p.stderr


def test_search_takes_the_encoder_the_store_was_scored_with(filled_store, tmp_path):
    """No encoder flag: search used ViT-B-32 (a download) and refused the store; now it asks the store."""
    from conftest import copy_of

    db = copy_of(filled_store, tmp_path)
    p = flashback_here("search", "a car on fire", "--db", db, "--json", "--device", "cpu")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["hits"]


def test_a_pretrained_flag_beats_a_checkpoint_from_the_file(tmp_path, seed_memory):
    (tmp_path / "flashback.toml").write_text(f'encoder = "{TINY_MODEL}"\ncheckpoint = "nowhere.pt"\ndevice = "cpu"\n')
    video = make_video(tmp_path / "v.mp4", n_frames=30)
    p = flashback_here("score", video, "--no-db", "--memory", seed_memory.path, cwd=tmp_path)
    assert p.returncode != 0 and "nowhere.pt" in p.stderr  # the file's checkpoint is used...
    p = flashback_here("score", video, "--no-db", "--memory", seed_memory.path, "--pretrained", "random", cwd=tmp_path)
    assert p.returncode == 0, p.stderr  # ...unless --pretrained is given: a flag beats the file


def test_an_offline_box_is_told_at_once_to_name_a_checkpoint(tmp_path, seed_memory):
    """Without --checkpoint an offline score spent 51 s on download retries before it said anything."""
    import time

    from conftest import free_port

    from flashback.encoders.encoder_registry import EncoderSpec, weights_cached

    if weights_cached(EncoderSpec()):
        pytest.skip("the default weights are in this machine's Hugging Face cache")
    video = make_video(tmp_path / "v.mp4", n_frames=30)
    t = time.monotonic()
    p = flashback_here("score", video, "--no-db", "--memory", seed_memory.path, "--device", "cpu",
                       env={"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"})  # the default ViT-B-32, not cached here
    assert p.returncode == 1 and "are not in the local cache and the hub cannot be reached" in p.stderr, p.stderr
    assert "pass --checkpoint FILE" in p.stderr and time.monotonic() - t < 30
    p = flashback_here("score", video, "--no-db", "--memory", seed_memory.path, env={"HF_HUB_OFFLINE": "1"})
    assert p.returncode == 1 and "HF_HUB_OFFLINE is set" in p.stderr
