"""The shape of the code, checked from its source with ``ast``: the import graph has no cycles inside
``flashback/``, its folders import only the folders before them in the flow, the online path never
imports the offline builder (only the composition roots do),
no module outgrows ~400 lines, every error class is a ``FlashbackError``, every table has one
writer module, the README's "Layout" names every folder and docs/architecture.md every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flashback", "memory_builder", "indexes", "ui")
COMPOSITION_ROOTS = {"flashback.cli.memory", "flashback.memory.default_memory", "flashback.eval.bench"}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(name: str, path: Path) -> set[str]:
    """Modules this one imports, anywhere in it (function-level imports count: they are still edges)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - (node.level - 1)]
                mod = ".".join(stem + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # "from . import x" imports module x
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imports_of(name, path) if m in mods and m != name} for name, path in mods.items()}


def test_no_import_cycles_inside_flashback():
    g = {k: {m for m in v if m.startswith("flashback")} for k, v in graph().items() if k.startswith("flashback")}
    # a package's __init__ re-exporting its own modules is not a cycle of the code's layering
    g = {k: {m for m in v if not (k.startswith(m + ".") and m + ".__init__" not in g)} for k, v in g.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)


# flashback's folders in the order data flows through them: a folder imports from the folders before
# it and from the few top-level modules (errors, settings, checks, atomic, processes, net), never from one
# after it or beside it; the package root (the public face) re-exports and is left out
LAYERS = [("video",), ("encoders",), ("memory",), ("scoring",), ("store",), ("batch", "review", "live", "cluster", "eval"),
          ("service",), ("cli",)]
TOP_LEVEL_MAX = 12


def folder_of(module: str) -> str | None:
    """``flashback.video.decode`` -> "video"; a top-level module -> ""; the package root -> None."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return parts[1] if (ROOT / "flashback" / parts[1]).is_dir() else ""


def test_every_folder_has_its_place_in_the_flow():
    folders = {p.name for p in (ROOT / "flashback").iterdir() if p.is_dir() and p.name != "__pycache__" and (p / "__init__.py").exists()}
    placed = [f for layer in LAYERS for f in layer]
    assert sorted(placed) == sorted(folders), "add the new folder to LAYERS, where the data reaches it"
    top = sorted(p.name for p in (ROOT / "flashback").glob("*.py"))
    assert len(top) <= TOP_LEVEL_MAX, f"flashback/ keeps only the shared basics at its top level: {top}"


def test_folders_import_only_what_comes_before_them_in_the_flow():
    level = {f: i for i, layer in enumerate(LAYERS) for f in layer} | {"": -1}
    upward = []
    for src, deps in graph().items():
        a = folder_of(src) if src.startswith("flashback") else None
        for dst in deps:
            b = folder_of(dst) if dst.startswith("flashback") else None
            if a is None or b is None or a == b:
                continue
            if level[b] >= level[a]:
                upward.append(f"{src} -> {dst}")
    assert upward == [], f"imports against the flow: {upward}"


def test_only_composition_roots_import_the_offline_builder():
    offenders = sorted(name for name, deps in graph().items()
                       if name.startswith("flashback") and name not in COMPOSITION_ROOTS
                       and any(d.startswith("memory_builder") for d in deps))
    assert offenders == [], f"query-time modules importing memory_builder: {offenders}"


def test_no_module_outgrows_the_limit():
    big = {name: n for name, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}, f"modules over {MAX_LINES} lines: {big}"


def test_every_error_class_is_a_flashback_error():
    """Commands catch FlashbackError only, so an error class outside the family would be a traceback."""
    stray = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and (node.name.endswith("Error") or node.name.endswith("Exception")):
                bases = {b.id if isinstance(b, ast.Name) else b.attr for b in node.bases if isinstance(b, (ast.Name, ast.Attribute))}
                if name != "flashback.errors" and not bases & ERROR_FAMILY:
                    stray.append(f"{name}.{node.name}({', '.join(sorted(bases))})")
    assert stray == []


ERROR_FAMILY = {"FlashbackError", "UsageError", "InputError", "DataFileError", "BundleError", "StoreError",
                "EncoderError", "BuildError", "ClusterError", "EncoderMismatchError", "CaptionInputError", "AnnotationError", "CaptionFileError"}


def test_each_table_has_one_writer_module():
    """INSERT/UPDATE/DELETE on a results table appear in flashback/store/writers.py only (migrations aside)."""
    from flashback.store import migrations

    created = sorted({m for _, sql in migrations() for m in re.findall(r"CREATE TABLE (\w+)", sql)})
    tables = "|".join(created)
    write = re.compile(rf"(?:\b(?:INSERT INTO|UPDATE|DELETE FROM)\s+|_insert(?:_columns)?\(con, \")({tables})\b")
    writers = {name: sorted({m.group(1) for m in write.finditer(p.read_text())}) for name, p in modules().items()}
    writers = {name: tables for name, tables in writers.items() if tables}
    assert list(writers) == ["flashback.store.writers"], writers
    assert writers["flashback.store.writers"] == created  # every results table has its writer there


def test_readme_layout_names_every_folder():
    """The README's Layout is the map: every folder of ``flashback/`` and every top-level package."""
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[: layout.index("\n## ", 4)]
    folders = {p.name + "/" for p in (ROOT / "flashback").iterdir() if (p / "__init__.py").exists()}
    missing = sorted(f for f in folders | {f"{pkg}/" for pkg in PACKAGES} | {"tests/", "benchmarks/", "docs/"} if f"`{f}`" not in layout)
    assert missing == [], f"README Layout does not mention: {missing}"


def test_architecture_doc_names_what_is_in_the_tree():
    """docs/architecture.md goes module by module: it names every module, and nothing that is gone."""
    layout = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([\w/]+(?:\.py)?)`", layout))
    tree = {p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if not p.name.startswith("__") and "__pycache__" not in p.parts}
    folders = {p.relative_to(ROOT).as_posix() + "/" for pkg in PACKAGES for p in [ROOT / pkg, *(ROOT / pkg).rglob("*")]
               if p.is_dir() and "__pycache__" not in p.parts}

    def mentioned(path: str) -> bool:  # by its own name, or by a trailing part of its path
        return any(path == n or path.endswith("/" + n) for n in named)

    missing = sorted(t for t in tree if not mentioned(t))
    assert missing == [], f"docs/architecture.md does not mention: {missing}"
    real = tree | folders | {"benchmarks/", "tests/"} | {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("*.py")}
    gone = sorted(n for n in named if ("/" in n or n.endswith(".py")) and not any(r == n or r.endswith("/" + n) for r in real))
    assert gone == [], f"docs/architecture.md names paths that do not exist: {gone}"


@pytest.mark.parametrize("module", sorted(COMPOSITION_ROOTS))
def test_composition_roots_exist(module):
    assert module in modules()


def test_ci_runs_the_readmes_two_set_up_commands_own_test_command():
    """The README's "Set up" has exactly two commands; CI runs the second one, character for character."""
    setup = (ROOT / "README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    install, test = commands
    assert test.endswith("&& python -m pytest")
    pins = [re.search(r"pip install (?:--\S+ )*(torch==\S+ torchvision==\S+) ", c) for c in commands]
    assert all(pins) and pins[0][1] == pins[1][1], commands  # one torch for running it and for its tests
    # llama.cpp compiled for the CPU it runs on crashed on one with AMX (issue 34): the tests build it portable
    assert "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install" in test
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, f".ci/run does not run the README's test command: {test}"
