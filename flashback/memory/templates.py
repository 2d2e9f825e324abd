"""Repulsive prompting: wrap each caption in a label-naming template before text encoding.

Naming the label (and the anomalous category) in the text pushes the two classes apart in the
text tower's space; the paper reports the normal/anomalous centroid angle growing from 8.12 to
33.29 degrees.  The template id is recorded in the manifest, and evaluation sweeps re-embed a
memory under the other template, so this lives on the query side; "none" exists for ablations.
"""

from __future__ import annotations

from ..errors import UsageError

TEMPLATES: dict[str, tuple[str, str]] = {
    # (normal wrapper, anomalous wrapper); {text} and {category} are filled in
    "label": ("Normal scene: {text}", "Anomalous scene, {category}: {text}"),
    "none": ("{text}", "{text}"),
}
DEFAULT_TEMPLATE = "label"
DEFAULT_ALPHA = 0.95  # the paper's scaled anomaly penalization


def apply_template(name: str, text: str, anomalous: bool, category: str) -> str:
    try:
        normal, anomalous_t = TEMPLATES[name]
    except KeyError:
        raise UsageError(f"--template {name!r}: choose one of {', '.join(TEMPLATES)}") from None
    return (anomalous_t if anomalous else normal).format(text=text, category=category.lower())
