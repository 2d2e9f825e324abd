"""Defaults remembered: a config file and environment variables under the flags, and ``flashback
config show``.

The file is TOML: ``$FLASHBACK_CONFIG``, else ``./flashback.toml``, else
``$XDG_CONFIG_HOME/flashback/config.toml`` (``~/.config/...``); the first that exists is read, only
that one.  Top-level keys are flags of any command, written as their long name (``checkpoint``,
``device``, ``db``, ``memory``, ``preset`` ...); a ``[score]``, ``[watch]``, ``[memory.build]`` ...
table holds keys for that command only and wins over the top level.  The encoder and store keys
also come from the environment (``FLASHBACK_CHECKPOINT``, ``FLASHBACK_DB`` ...).  A flag beats an
environment variable beats the file beats the built-in default.

Every value is checked as its flag would be, before anything loads, and an unknown key is refused:
a misspelt key must not be silently ignored.  Relative paths in the file are relative to the file.
A value may name environment variables, ``${NAME}``: secrets stay out of the file.  ``[serve]``
also holds the service's own tables (``service/config.py``).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError, one_line
from ..service.config import TABLES as SERVICE_TABLES
from ..service.config import ConfigProblems, expand_env
from .common import EXIT_OK, out, usage

ENV_KEYS = ("encoder", "pretrained", "checkpoint", "device", "precision", "backend", "memory", "db")
SHOWN = ENV_KEYS  # what ``config show`` lists even when nothing sets it


def config_path() -> Path | None:
    """The config file in force, or None."""
    if os.environ.get("FLASHBACK_CONFIG"):
        path = Path(os.environ["FLASHBACK_CONFIG"])
        if not path.is_file():
            raise UsageError(f"FLASHBACK_CONFIG={path}: no such config file")
        return path
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return next((p for p in (Path("flashback.toml"), home / "flashback" / "config.toml") if p.is_file()), None)


@dataclass
class Defaults:
    """Where each default came from, per command path (``("score",)``, ``("memory", "build")``)."""

    path: Path | None = None
    applied: dict[tuple, dict[str, tuple[object, str]]] = field(default_factory=dict)  # command -> dest -> (value, source)

    def source(self, command: tuple, dest: str) -> str | None:
        got = self.applied.get(command, {}).get(dest)
        return got[1] if got else None


def read_config(path: Path) -> dict:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid TOML ({one_line(e)})") from None
    return doc


def _parsers(parser: argparse.ArgumentParser, path: tuple = ()):
    """Every (command path, parser) under ``parser``, nested sub-commands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from _parsers(sub, path + (name,))


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """A parser's flags by config key (the long option without its dashes)."""
    out = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if longs and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            out[longs[0][2:]] = action
    return out


def _value(action: argparse.Action, key: str, value, where: str, base: Path | None):
    """``value`` as the flag would take it; refused with the file (or variable) and key named."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UsageError(f"{where}: {key} = {value!r}: expected true or false")
        return value
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        return [_value(argparse.Action([], key, type=action.type, choices=action.choices), key, v, where, base) for v in values]
    if isinstance(value, (dict, list)):
        raise UsageError(f"{where}: {key} = {value!r}: expected a single value")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    text, missing = expand_env(text)
    if missing:
        raise UsageError(f"{where}: {key}: the environment variable {missing[0]} is not set")
    if action.type is Path and base is not None and not Path(text).expanduser().is_absolute():
        text = str(base / text)
    try:
        converted = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
        raise UsageError(f"{where}: {key} = {value!r}: {one_line(e)}") from None
    if action.choices is not None and converted not in action.choices:
        raise UsageError(f"{where}: {key} = {value!r}: choose one of {', '.join(map(str, action.choices))}")
    return converted


def apply(parser: argparse.ArgumentParser) -> Defaults:
    """Set every command's defaults from the config file and the environment (``set_defaults``:
    a flag on the command line still wins)."""
    path = config_path()
    doc = read_config(path) if path else {}
    base = path.resolve().parent if path else None
    parsers = dict(_parsers(parser))
    defaults = Defaults(path)
    known = set().union(*(_options(p) for p in parsers.values())) if parsers else set()
    tables = {k for k, v in doc.items() if isinstance(v, dict)}
    problems: list[str] = []  # every one of them said, not only the first
    for key in sorted(set(doc) - tables):
        if key not in known:
            problems.append(f"{path}: unknown key {key!r} (a config key is a flag's long name, such as checkpoint or db)")
    for name in sorted(tables):
        try:
            _check_table(doc, (name,), parsers, path)
        except UsageError as e:
            problems.append(str(e))
    for command, p in parsers.items():
        options = _options(p)
        chosen: dict[str, tuple[object, str]] = {}
        layers = [(doc, str(path))] + [(_table(doc, command[:i]), f"{path} [{'.'.join(command[:i])}]")
                                       for i in range(1, len(command) + 1)]
        serve = _table(doc, ("serve",))
        for table, where in layers:
            for key, value in table.items():
                if table is serve and key in SERVICE_TABLES:
                    continue  # [[serve.cameras]] are the service's cameras, not watch's --cameras FILE
                if key in options and not isinstance(value, dict):
                    try:
                        chosen[key] = (_value(options[key], key, value, where, base), where)
                    except UsageError as e:
                        if str(e) not in problems:  # a top-level key is checked once per command that has it
                            problems.append(str(e))
        for key in ENV_KEYS:
            env = f"FLASHBACK_{key.upper()}"
            if key in options and os.environ.get(env):
                chosen[key] = (_value(options[key], key, os.environ[env], env, None), env)
        if chosen:
            p.set_defaults(**{options[k].dest: v for k, (v, _) in chosen.items()})
            defaults.applied[command] = {options[k].dest: got for k, got in chosen.items()}
    if problems:
        raise ConfigProblems(problems)
    return defaults


def _table(doc: dict, command: tuple) -> dict:
    table = doc
    for part in command:
        table = table.get(part, {}) if isinstance(table, dict) else {}
    return table if isinstance(table, dict) else {}


def _check_table(doc: dict, command: tuple, parsers: dict, path: Path) -> None:
    """A ``[command]`` table names a command and only its flags (or its sub-commands' tables)."""
    if command not in parsers:
        raise UsageError(f"{path} [{'.'.join(command)}]: no such command")
    options = _options(parsers[command])
    for key, value in _table(doc, command).items():
        if command == ("serve",) and key in SERVICE_TABLES:
            continue  # the service's own tables (service/config.py checks them)
        if isinstance(value, dict):
            _check_table(doc, command + (key,), parsers, path)
        elif key not in options:
            raise UsageError(f"{path} [{'.'.join(command)}]: unknown key {key!r} for flashback {' '.join(command)}")


def command_of(a: argparse.Namespace) -> tuple:
    """The command path a parse chose: ``("score",)``, ``("memory", "build")``."""
    first = getattr(a, "command", None)
    second = getattr(a, f"{first}_command", None) if first else None
    return tuple(v for v in (first, second) if v)


def settle(a: argparse.Namespace, defaults: Defaults) -> None:
    """A ``--pretrained`` on the command line beats a ``checkpoint`` from the file or the
    environment, and the other way round (argparse keeps one of a group only among flags)."""
    command = command_of(a)
    if getattr(a, "pretrained", None) and getattr(a, "checkpoint", None):
        came = {k: defaults.source(command, k) for k in ("pretrained", "checkpoint")}
        if came["checkpoint"] and not came["pretrained"]:
            a.checkpoint = None
        elif came["pretrained"] and not came["checkpoint"]:
            a.pretrained = None


# ---------------------------------------------------------------- flashback config show


def add_parser(sub) -> None:
    c = sub.add_parser("config", help="show the defaults in force and where each comes from",
                       description="Defaults come from a flag, else an environment variable (FLASHBACK_DB ...), else "
                                   "the config file ($FLASHBACK_CONFIG, ./flashback.toml, ~/.config/flashback/config.toml), "
                                   "else flashback's own.")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION")
    s = csub.add_parser("show", help="what each setting is and where it came from")
    s.add_argument("--for", dest="for_command", default="score", metavar="COMMAND",
                   help="the command whose defaults to show, e.g. watch or 'memory build' (default: score)")
    s.set_defaults(run=run_show)
    c.set_defaults(run=lambda a: usage(c))


def run_show(a: argparse.Namespace) -> int:
    from rich.table import Table

    defaults, parser = a.config_defaults, a.config_parser
    command = tuple(a.for_command.split())
    parsers = dict(_parsers(parser))
    if command not in parsers:
        raise UsageError(f"--for {a.for_command!r}: no such command")
    options = _options(parsers[command])
    applied = defaults.applied.get(command, {})
    t = Table(title=f"flashback {' '.join(command)}: defaults in force (config file: {defaults.path or 'none'})",
              title_justify="left")
    for col in ("setting", "value", "from"):
        t.add_column(col)
    for key, action in sorted(options.items()):
        if action.dest in applied:
            value, where = applied[action.dest]
        elif key in SHOWN:
            value, where = action.default, "built-in"
        else:
            continue
        t.add_row(key, "-" if value is None else str(value), where)
    out.print(t)
    return EXIT_OK
