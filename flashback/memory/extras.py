"""Entries searched beside the memory for one run, without touching the bundle: texts the operator
gives at run time (``--alert``, ``--ignore``, or per camera in the camera file), and the exemplars
reviewers' verdicts left in a camera's overlay (``overlays.py``).

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

from ..encoders.protocols import TextEncoder
from ..video.cameras import UserText
from .bundle import NORMAL_CATEGORY, CaptionTable
from .templates import apply_template

ALERT_CATEGORY = "Alert"


@dataclass(frozen=True)
class Entry:
    """One extra entry, as explanations and the store show it."""

    text: str
    anomalous: bool
    category: str
    provenance: str  # "user alert", "user ignore", or a verdict exemplar's JSON provenance
    scope: str | None = None  # the camera it belongs to; None: every input
    exemplar: bool = False  # a segment vector from a verdict (overlays.py), not a text


@dataclass
class Extras:
    """The run's extra entries: their vectors, labels, and the camera each belongs to."""

    entries: list[Entry] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    texts: list[UserText] = field(default_factory=list)  # the user texts among them, as given (for the run record)

    @classmethod
    def embed(cls, texts: list[UserText], encoder: TextEncoder, template: str) -> "Extras":
        if not texts:
            return cls()
        categories = [ALERT_CATEGORY if t.anomalous else NORMAL_CATEGORY for t in texts]
        v = np.asarray(encoder.encode_texts([apply_template(template, t.text, t.anomalous, c)
                                             for t, c in zip(texts, categories)]), dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
        entries = [Entry(t.text, t.anomalous, c, "user " + ("alert" if t.anomalous else "ignore"), t.scope)
                   for t, c in zip(texts, categories)]
        return cls(entries, v, list(texts))

    def __add__(self, other: "Extras") -> "Extras":
        if not len(other):
            return self
        if not len(self):
            return other
        return Extras(self.entries + other.entries, np.concatenate([self.vectors, other.vectors]), self.texts + other.texts)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def anomalous(self) -> np.ndarray:
        return np.array([e.anomalous for e in self.entries], dtype=bool)

    @property
    def exemplar(self) -> np.ndarray:
        return np.array([e.exemplar for e in self.entries], dtype=bool)

    @property
    def scoped(self) -> bool:
        return any(e.scope is not None for e in self.entries)

    def allowed(self, scopes) -> np.ndarray:
        """Which entries an input retrieves: the shared ones and those of its cameras (``scopes``:
        a feed's name, a file's folder, the camera-file glob it matched)."""
        scopes = {scopes} if isinstance(scopes, str) or scopes is None else set(scopes)
        return np.array([e.scope is None or e.scope in scopes for e in self.entries], dtype=bool)

    def table(self, captions: CaptionTable) -> CaptionTable:
        """The memory's captions followed by these entries, for explanations and the store."""
        if not self.entries:
            return captions
        return CaptionTable(captions.texts + [e.text for e in self.entries],
                            np.concatenate([captions.anomalous, self.anomalous]),
                            captions.categories + [e.category for e in self.entries],
                            captions.provenance + [e.provenance for e in self.entries], ordered=False)

    def to_list(self) -> list[dict]:
        return [t.to_dict() for t in self.texts]
