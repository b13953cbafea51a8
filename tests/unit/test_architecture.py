"""The layout and the dependency rule stay as the architecture page says."""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

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
