"""Ranges of numeric settings, declared once and checked the same way everywhere.

A setting's range is written on its dataclass field (``knob(default, Range(...))``); the dataclass
checks itself with ``check_fields`` when it is built (from Python or from the CLI), and the CLI
derives each flag's argparse type from the same declaration, so a flag and the setting it fills
can never disagree about what is allowed.  NaN and infinities are never in a range.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    integer: bool = False

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{kind} <= {self.high:g}"
        return f"a finite {kind[2:]}"

    def problem(self, value) -> str | None:
        """Why ``value`` is out of range, or None."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {self.describe()} (got {value!r})"
        if self.integer and not isinstance(value, int):
            return f"must be {self.describe()} (got {value!r})"
        if not math.isfinite(value):
            return f"must be {self.describe()} (got {value})"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and value > self.high
        return f"must be {self.describe()} (got {value:g})" if too_low or too_high else None

    def parse(self, text: str):
        """A command-line value: parsed and checked, or a ValueError saying what is allowed."""
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            raise ValueError(f"must be {self.describe()} (got {text!r})") from None
        problem = self.problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def argtype(self):
        """This range as an argparse ``type=``: a bad value is refused with what is allowed."""

        def parse(text: str):
            try:
                return self.parse(text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None

        parse.__name__ = self.describe()
        return parse


POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1)
COUNT = Range(1, integer=True)
NON_NEGATIVE_INT = Range(0, integer=True)


def knob(default, rng: Range, flag: str | None = None, optional: bool = False):
    """A dataclass field with its range (and the CLI flag that sets it, for messages)."""
    return dataclasses.field(default=default, metadata={"range": rng, "flag": flag, "optional": optional})


def field_range(cls, name: str) -> Range:
    return next(f.metadata["range"] for f in dataclasses.fields(cls) if f.name == name)


def check_fields(obj) -> list[str]:
    """Every out-of-range field of a dataclass built with ``knob``, one phrase each."""
    problems = []
    for f in dataclasses.fields(obj):
        rng = f.metadata.get("range")
        value = getattr(obj, f.name)
        if rng is None or (value is None and f.metadata.get("optional")):
            continue
        problem = rng.problem(value)
        if problem:
            problems.append(f"{f.metadata.get('flag') or f.name} {problem}")
    return problems


def raise_problems(problems: list[str], what: str) -> None:
    if problems:
        raise UsageError(f"{what}: " + "; ".join(problems))
