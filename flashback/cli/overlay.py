"""``flashback overlay list|show|remove``: what reviewers' verdicts taught each camera."""

from __future__ import annotations

import argparse
import shutil

from rich.table import Table

from ..errors import UsageError
from ..review.overlays import list_overlays, remove_event, scan_overlays
from ..video.cameras import camera_matches
from .common import EXIT_FAILED, EXIT_OK, out, usage, warn
from .options import add_db_arg


def add_parser(sub) -> None:
    o = sub.add_parser("overlay", help="list, show or remove what verdicts taught each camera (its overlay of exemplars)")
    o.set_defaults(run=lambda a: usage(o))
    osub = o.add_subparsers(dest="overlay_command", metavar="ACTION")
    for name, helptext in (("list", "every camera's overlay: exemplars, events, encoder"),
                           ("show", "one camera's exemplars, event by event, with who judged them and when"),
                           ("remove", "forget a camera's overlay, or one event's exemplars in it")):
        p = osub.add_parser(name, help=helptext)
        add_db_arg(p)
        if name != "list":
            p.add_argument("camera", metavar="CAMERA", help="a live feed's name or a folder of files, as `overlay list` shows it")
        if name == "remove":
            p.add_argument("--event", metavar="VIDEO_ID:FIRST_FRAME", help="only this event's exemplars (run from the review app's key)")
        p.set_defaults(run={"list": run_list, "show": run_show, "remove": run_remove}[name])


def _find(a: argparse.Namespace):
    found = [o for o in list_overlays(a.db) if camera_matches(o.camera, a.camera)]
    if not found:
        have = ", ".join(o.camera for o in list_overlays(a.db)) or "none"
        raise UsageError(f"{a.db}: no overlay for camera {a.camera!r} (there are: {have})")
    return found[0]


def run_list(a: argparse.Namespace) -> int:
    t = Table(title=f"overlays of {a.db}", title_justify="left")
    for col in ("camera", "exemplars", "normal", "anomalous", "events", "encoder", "folder"):
        t.add_column(col)
    found, problems = scan_overlays(a.db)
    for o in found:
        normal = sum(e["label"] == "normal" for e in o.entries)
        t.add_row(o.camera, str(len(o.entries)), str(normal), str(len(o.entries) - normal), str(len(o.events)), o.encoder, str(o.path))
    out.print(t)
    for p in problems:
        warn(f"{p}; not used when scoring (remove this folder to start that camera's overlay afresh)")
    return EXIT_FAILED if problems else EXIT_OK


def run_show(a: argparse.Namespace) -> int:
    o = _find(a)
    t = Table(title=f"{o.camera}: {len(o.entries)} exemplar(s) from {len(o.events)} verdict(s)", title_justify="left")
    for col in ("event (for overlay remove --event)", "verdict", "category", "exemplars", "reviewer", "when"):
        t.add_column(col, overflow="fold")
    for (run_id, video_id, start), e in o.events.items():  # whole: it is what `overlay remove --event` takes
        t.add_row(f"{video_id}:{start}", e["verdict"], e["category"], str(e["exemplars"]), e["reviewer"], e["at"])
    out.print(t)
    return EXIT_OK


def run_remove(a: argparse.Namespace) -> int:
    o = _find(a)
    if a.event is None:
        shutil.rmtree(o.path)
        out.print(f"removed the overlay of {o.camera} ({len(o.entries)} exemplar(s)); the verdicts themselves stay in the store")
        return EXIT_OK
    video_id, _, start = a.event.rpartition(":")
    matches = [k for k in o.events if k[1] == video_id and str(k[2]) == start]
    if not matches:
        raise UsageError(f"--event {a.event}: not in the overlay of {o.camera}")
    for run_id, vid, first in matches:
        remove_event(a.db, run_id, vid, first)
    out.print(f"removed the exemplars of {a.event} from the overlay of {o.camera}")
    return EXIT_OK
