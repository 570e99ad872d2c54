"""The package order holds in the imports: the pure core never reaches an adapter, and the processes
that do not serve HTTP never load the web stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import finverse_reco

PACKAGE = Path(finverse_reco.__file__).parent
CORE = ("pipeline", "model", "index", "policy")
# What the pure core must not import: our adapters and composition, and the libraries behind them.
FORBIDDEN = (
    "finverse_reco.api",
    "finverse_reco.catalog",
    "finverse_reco.compose",
    "finverse_reco.ingest",
    "finverse_reco.service",
    "finverse_reco.settings",
    "finverse_reco.store",
    "fastapi",
    "starlette",
    "httpx",
    "pymongo",
    "aio_pika",
    "redis",
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", CORE)
def test_the_core_imports_no_adapter(package):
    offending = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in (PACKAGE / package).rglob("*.py")
        for name in imported_modules(path)
        if name.startswith(FORBIDDEN)
    }
    assert not offending


def test_train_and_consume_do_not_load_the_web_stack():
    """What `finverse-reco train` and `consume` import, in a fresh interpreter."""
    probe = """
import sys
from finverse_reco import cli, compose
from finverse_reco.ingest import run_consumer
from finverse_reco.service.training import run_training
from finverse_reco.settings import load_settings
settings = load_settings()
compose.training_config(settings), compose.store(settings, "trainer"), compose.catalog(settings)
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in {"fastapi", "starlette"})))
"""
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


COMPOSITION_ROOTS = {"compose.py", "cli.py", "api/app.py", "settings.py"}


def test_only_the_composition_roots_import_settings():
    offending = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if str(path.relative_to(PACKAGE)) not in COMPOSITION_ROOTS
        and "finverse_reco.settings" in imported_modules(path)
    }
    assert not offending
