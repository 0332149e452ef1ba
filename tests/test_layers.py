"""The layers stay apart: the image library knows nothing of the server, and no Backend method deals in local paths."""

from __future__ import annotations

import ast
import inspect
import re
import typing
from pathlib import Path
from typing import List

from wes_arvados.wes.backend import Backend

PACKAGE = Path(__file__).resolve().parents[1] / "wes_arvados"
SERVER_PACKAGES = ("web", "local", "wes", "cli", "arvados", "config", "errors", "processes")


def _imported_modules(path: Path) -> List[str]:
    """Every module `path` imports, as absolute dotted names."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            names.append(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_the_image_library_imports_nothing_from_the_server_around_it() -> None:
    leaks = [(str(path.relative_to(PACKAGE)), module)
             for path in sorted((PACKAGE / "images").rglob("*.py"))
             for module in _imported_modules(path)
             if module.startswith("wes_arvados.") and module.split(".")[1] in SERVER_PACKAGES]
    assert leaks == []


def test_the_import_check_resolves_relative_imports() -> None:
    assert "wes_arvados.images.errors" in _imported_modules(PACKAGE / "images" / "policy.py")  # from .errors
    assert "wes_arvados.errors" in _imported_modules(PACKAGE / "local" / "backend.py")  # from ..errors
    assert "wes_arvados.wes.backend" in _imported_modules(PACKAGE / "web" / "handlers.py")


def test_no_backend_method_takes_or_returns_a_local_path() -> None:
    offending = []
    for name, method in inspect.getmembers(Backend, inspect.isfunction):
        hints = typing.get_type_hints(method)
        for role, hint in hints.items():
            if Path in (hint, *typing.get_args(hint)):
                offending.append(f"{name}: {role}")
    assert offending == []


def test_sql_lives_only_in_the_run_store() -> None:
    statement = re.compile(r"\b(SELECT \S|INSERT (OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE)")
    holders = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                     if statement.search(path.read_text()))
    assert holders == ["local/store.py"]
