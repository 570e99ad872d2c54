"""A corrupt version named by CURRENT is refused with a logged and exposed reason, and the old
version keeps serving: through the watcher itself and through a running app."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from ranked import ranked, user_query  # tests/support

from finverse_reco.api.app import create_app
from finverse_reco.model.artifacts import (
    ARRAYS_FILE,
    CURRENT_FILE,
    MANIFEST_FILE,
    MAPPINGS_FILE,
    VERSIONS_DIR,
    activate,
    current_version,
    load_version,
    save_version,
)
from finverse_reco.service.models import ModelHolder, ModelWatcher

from .harness import RECS, wait_until

WATCHER_LOG = "finverse_reco.service.models"


def point_current_at(model_dir: Path, version: str) -> None:
    """What a buggy writer or a half-finished copy leaves behind: CURRENT names an unverified
    version (`activate` would have refused it)."""
    (model_dir / CURRENT_FILE).write_text(version + "\n")


def truncate_arrays(directory: Path) -> None:
    path = directory / ARRAYS_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(directory: Path) -> None:
    path = directory / ARRAYS_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def remove_manifest(directory: Path) -> None:
    (directory / MANIFEST_FILE).unlink()


def half_written(directory: Path) -> None:
    (directory / MAPPINGS_FILE).unlink()


def garbage_with_matching_checksums(directory: Path) -> None:
    """A replaced arrays file whose manifest was updated to match: checksums pass, loading fails."""
    garbage = b"not an npz archive" * 100
    (directory / ARRAYS_FILE).write_bytes(garbage)
    manifest = orjson.loads((directory / MANIFEST_FILE).read_bytes())
    manifest["files"][ARRAYS_FILE] = {
        "sha256": hashlib.sha256(garbage).hexdigest(),
        "bytes": len(garbage),
    }
    (directory / MANIFEST_FILE).write_bytes(orjson.dumps(manifest))


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated array file": (truncate_arrays, "truncated or replaced"),
    "checksum mismatch": (flip_a_byte, "fails its sha256 checksum"),
    "missing manifest": (remove_manifest, f"has no {MANIFEST_FILE}"),
    "half-written directory": (half_written, f"{MAPPINGS_FILE} is missing"),
    "unloadable arrays": (garbage_with_matching_checksums, "unusable contents"),
}


@pytest.fixture
def serving(world) -> tuple[Path, str]:
    """The world's model directory and its active (good) version."""
    return world.model_dir, current_version(world.model_dir)


def new_copy_of(model_dir: Path, version: str) -> str:
    """A second, complete and valid version (the same model saved again)."""
    return save_version(model_dir, load_version(model_dir, version), {"note": "copy"})


def refusals(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == WATCHER_LOG and r.levelno == logging.ERROR]


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_a_corrupt_version_is_refused_and_the_old_one_keeps_serving(
    serving, corruption, caplog
):
    model_dir, good = serving
    holder = ModelHolder(load_version(model_dir, good))
    watcher = ModelWatcher(holder, model_dir, poll_seconds=0.1)
    bad = new_copy_of(model_dir, good)
    corrupt, expected_reason = CORRUPTIONS[corruption]
    corrupt(model_dir / VERSIONS_DIR / bad)
    point_current_at(model_dir, bad)

    with caplog.at_level(logging.INFO, logger=WATCHER_LOG):
        assert await watcher.check_once() is False
        assert await watcher.check_once() is False  # nothing changed: not retried, not re-logged

    assert holder.version == good
    assert ranked(holder.index, user_query(holder.index, 0), 5)[0].size == 5
    [record] = refusals(caplog)
    assert expected_reason in record.getMessage() and bad in record.getMessage()
    assert good in record.getMessage(), "the log says what keeps serving"
    assert expected_reason in holder.last_refusal


async def test_garbage_in_current_is_refused(serving, caplog):
    model_dir, good = serving
    holder = ModelHolder(load_version(model_dir, good))
    watcher = ModelWatcher(holder, model_dir, poll_seconds=0.1)
    (model_dir / CURRENT_FILE).write_text("../../etc/passwd\n")
    with caplog.at_level(logging.INFO, logger=WATCHER_LOG):
        assert await watcher.check_once() is False
    assert holder.version == good
    assert "does not hold a version name" in holder.last_refusal
    assert len(refusals(caplog)) == 1


async def test_a_refused_half_copied_version_is_taken_once_complete(serving, caplog):
    """A version copied onto a shared volume may be seen before its last file lands: refused while
    incomplete, served once the copy finishes, without CURRENT having to change again."""
    model_dir, good = serving
    holder = ModelHolder(load_version(model_dir, good))
    watcher = ModelWatcher(holder, model_dir, poll_seconds=0.1)
    arriving = new_copy_of(model_dir, good)
    directory = model_dir / VERSIONS_DIR / arriving
    mappings = (directory / MAPPINGS_FILE).read_bytes()
    (directory / MAPPINGS_FILE).unlink()
    point_current_at(model_dir, arriving)
    assert await watcher.check_once() is False
    assert holder.last_refusal is not None

    (directory / MAPPINGS_FILE).write_bytes(mappings)
    assert await watcher.check_once() is True
    assert holder.version == arriving
    assert holder.last_refusal is None


def test_a_running_app_refuses_a_corrupt_version_and_reports_why(world, caplog):
    model_dir = world.model_dir
    good = current_version(model_dir)
    bad = new_copy_of(model_dir, good)
    truncate_arrays(model_dir / VERSIONS_DIR / bad)
    settings = world.model_copy(update={"model_poll_seconds": 0.1})

    with (
        caplog.at_level(logging.INFO, logger=WATCHER_LOG),
        TestClient(create_app(settings), raise_server_exceptions=False) as client,
    ):
        assert client.get("/ready").json()["model_version"] == good
        point_current_at(model_dir, bad)
        ready = wait_until(
            lambda: (r := client.get("/ready").json())["model_refusal"] and r,
            within=10,
            what="the app reports the refusal",
        )
        assert ready["ready"] is True and ready["model_version"] == good
        assert bad in ready["model_refusal"] and "truncated" in ready["model_refusal"]
        response = client.get(f"{RECS}/products/user_00001")
        assert response.status_code == 200 and response.json()["model_version"] == good

        # An operator fixes it by activating a good version; the refusal clears.
        fixed = new_copy_of(model_dir, good)
        activate(model_dir, fixed)
        wait_until(
            lambda: client.get("/ready").json()["model_version"] == fixed,
            within=10,
            what="the app serves the fixed version",
        )
        assert client.get("/ready").json()["model_refusal"] is None
    assert any(bad in r.getMessage() for r in refusals(caplog))
