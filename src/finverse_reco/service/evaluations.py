"""The latest offline evaluation report (`finverse-reco evaluate --json` into the evaluation
directory), for the console's quality page."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson


class NoEvaluationReport(LookupError):
    """The evaluation directory holds no readable report."""


async def latest_report(directory: Path) -> dict[str, Any]:
    return await asyncio.to_thread(_latest_report, Path(directory))


def _latest_report(directory: Path) -> dict[str, Any]:
    candidates = sorted(
        directory.glob("*.json") if directory.is_dir() else (),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    skipped = []
    for path in candidates:
        try:
            report = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            skipped.append(f"{path.name} ({exc})")
            continue
        if not isinstance(report, dict) or not isinstance(report.get("results"), list):
            skipped.append(f"{path.name} (not an evaluation report)")
            continue
        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        return {"file": path.name, "modified_at": modified.isoformat(), "report": report}
    detail = f"; skipped {', '.join(skipped)}" if skipped else ""
    raise NoEvaluationReport(
        f"no evaluation report in {directory.name or directory} "
        f"(write one with `finverse-reco evaluate --json {directory}/NAME.json`){detail}"
    )
