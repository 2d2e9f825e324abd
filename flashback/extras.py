"""Entries searched beside the memory for one run, without touching the bundle: texts the operator
gives at run time (``--alert``, ``--ignore``, or per camera in the camera file).

Each text is wrapped in the memory's own template (``templates.py``: an alert as an anomalous
caption of category "Alert", an exclusion as a normal caption), embedded once with the run's text
tower, and searched with the memory's captions: it takes part in the top-K, the softmax and the
score exactly as a caption of the memory would (alpha included), and when it wins, the user's own
words are the explanation.  Extra entries have caption ids after the memory's, in one table for
the whole run; an entry may belong to every feed or to one (``scope``), and each feed only
retrieves its own and the shared ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bundle import NORMAL_CATEGORY, CaptionTable
from .errors import UsageError
from .protocols import TextEncoder
from .templates import apply_template

ALERT_CATEGORY = "Alert"
MAX_TEXT = 300


@dataclass(frozen=True)
class UserText:
    text: str
    anomalous: bool  # --alert (True) or --ignore (False)
    scope: str | None = None  # a camera (feed name, or the file glob of the camera file); None: every input

    def to_dict(self) -> dict:
        return {"text": self.text, "kind": "alert" if self.anomalous else "ignore", **({"camera": self.scope} if self.scope else {})}


def user_texts(alerts: list[str] | None, ignores: list[str] | None, scope: str | None = None) -> list[UserText]:
    """``--alert``/``--ignore`` values, checked: not empty, one line, not absurdly long, no repeats."""
    out: list[UserText] = []
    for flag, values, anomalous in (("--alert", alerts, True), ("--ignore", ignores, False)):
        for v in values or []:
            t = " ".join(str(v).split())
            if not t:
                raise UsageError(f"{flag}: the text is empty")
            if len(t) > MAX_TEXT:
                raise UsageError(f"{flag} {t[:40]!r}...: longer than {MAX_TEXT} characters; describe the scene in a sentence")
            u = UserText(t, anomalous, scope)
            if u not in out:
                out.append(u)
    return out


@dataclass
class Extras:
    """The run's extra entries: vectors, labels, and which feed each belongs to."""

    texts: list[UserText] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    @classmethod
    def embed(cls, texts: list[UserText], encoder: TextEncoder, template: str) -> "Extras":
        if not texts:
            return cls()
        wrapped = [apply_template(template, t.text, t.anomalous, ALERT_CATEGORY if t.anomalous else NORMAL_CATEGORY)
                   for t in texts]
        v = np.asarray(encoder.encode_texts(wrapped), dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
        return cls(list(texts), v)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def anomalous(self) -> np.ndarray:
        return np.array([t.anomalous for t in self.texts], dtype=bool)

    def allowed(self, scope: str | None) -> np.ndarray:
        """Which entries a feed (by name; None: a file) retrieves: the shared ones and its own."""
        return np.array([t.scope is None or t.scope == scope for t in self.texts], dtype=bool)

    def table(self, captions: CaptionTable) -> CaptionTable:
        """The memory's captions followed by these entries, for explanations and the store."""
        if not self.texts:
            return captions
        return CaptionTable(captions.texts + [t.text for t in self.texts],
                            np.concatenate([captions.anomalous, self.anomalous]),
                            captions.categories + [ALERT_CATEGORY if t.anomalous else NORMAL_CATEGORY for t in self.texts],
                            captions.provenance + ["user " + ("alert" if t.anomalous else "ignore") for t in self.texts],
                            ordered=False)

    def to_list(self) -> list[dict]:
        return [t.to_dict() for t in self.texts]
