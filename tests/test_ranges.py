"""Every declared range is enforced, in the manner of scikit-learn's estimator checks: for every
``knob`` of every settings dataclass, an out-of-range value and NaN are refused when the dataclass is
built from Python, and on the command line by the flag that sets it (exit 2, before anything
loads), each refusal naming the flag.  A knob added later is checked without a line more here."""

from __future__ import annotations

import dataclasses

import pytest

from flashback.checks import Range
from flashback.cli import main
from flashback.errors import UsageError
from flashback.live.watcher import WatchConfig
from flashback.settings import ScoringSettings
from memory_builder.job import BuildConfig

# each settings dataclass, and a command line that fills it (the inputs need not exist: a bad flag
# is refused while the arguments are parsed)
KNOBBED = {ScoringSettings: ["score", "cam.mp4"], WatchConfig: ["watch", "cam=cam.mp4"],
           BuildConfig: ["memory", "build", "--out", "mem"]}


def out_of_range(rng: Range) -> float:
    if rng.high is not None:
        return rng.high + (1 if rng.integer else rng.high * 0.5 + 1)
    assert rng.low is not None, "a knob's range has at least one end"
    return rng.low if rng.low_open else rng.low - 1


KNOBS = [pytest.param(cls, f, id=f"{cls.__name__}.{f.name}")
         for cls in KNOBBED for f in dataclasses.fields(cls) if "range" in f.metadata]


def test_every_settings_dataclass_declares_knobs():
    assert {p.values[0] for p in KNOBS} == set(KNOBBED)


@pytest.mark.parametrize("cls, field", KNOBS)
def test_an_out_of_range_knob_is_refused_naming_its_flag(cls, field, capsys):
    rng, flag = field.metadata["range"], field.metadata["flag"]
    for bad in (out_of_range(rng), float("nan")):
        value = int(bad) if rng.integer and bad == bad else bad
        with pytest.raises(UsageError, match=(flag or field.name).replace("-", r"\-")):
            cls(**{field.name: value})
        if flag is None:
            continue  # set from Python only: its message names the field
        with pytest.raises(SystemExit) as stop:
            main([*KNOBBED[cls], flag, str(value)])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {flag}" in err and "must be" in err, err
