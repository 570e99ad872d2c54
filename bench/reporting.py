"""What every benchmark writes: the machine it ran on, and its rows in docs/BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "BENCHMARKS.md"


def machine() -> str:
    """Platform, cores, Python, and the load average at the start (these machines are shared)."""
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpu,"
        f" Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"
    )


def add_table_rows(section: str, intro: str, table_header: str, rows: list[str]) -> None:
    """Append `rows` to the table under `section`, creating the section (and file) if needed."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if section not in text:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{intro}\n\n{table_header}\n"
    lines = text.split("\n")
    at = lines.index(section) + 1
    while at < len(lines) and not lines[at].startswith("|"):
        at += 1
    while at < len(lines) and lines[at].startswith("|"):
        at += 1
    lines[at:at] = rows
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text("\n".join(lines))


def add_to_section(section: str, intro: str, text: str) -> None:
    """Append free text at the end of `section` (before the next `## ` heading)."""
    docs = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if section not in docs:
        docs = docs.rstrip("\n") + f"\n\n{section}\n\n{intro}\n"
    start = docs.index(section) + len(section)
    end = docs.find("\n## ", start)
    end = len(docs) if end < 0 else end
    head = docs[:end].rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    DOCS.write_text(head + ("\n" + docs[end:].lstrip("\n") if end < len(docs) else ""))


def verdict(misses: list[str], check: bool) -> int:
    """Print every missed target; the exit code is 1 only when `--check` asked for one."""
    for miss in misses:
        print(f"target missed: {miss}", file=sys.stderr)
    return 1 if check and misses else 0


@contextmanager
def checked_out(ref: str) -> Iterator[Path]:
    """A git ref's tree in a temporary detached worktree, removed afterwards: the code a benchmark
    compares this tree with, side by side in one run."""
    where = Path(tempfile.mkdtemp(prefix="finverse-ref-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), ref],
                   check=True)  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                       check=False)  # fmt: skip
