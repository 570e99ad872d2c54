"""`models list` and `models activate` (rollback) through the CLI's functions, and keep-last-N
pruning as trainings publish new versions."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import time
import weakref

from finverse_reco.cli import models_activate, models_list, train_once
from finverse_reco.model.artifacts import (
    ARRAYS_FILE,
    STAGING_PREFIX,
    STALE_STAGING_SECONDS,
    VERSIONS_DIR,
    activate,
    current_version,
    list_versions,
    load_version,
    prune,
    save_version,
)
from finverse_reco.service.models import ModelHolder, ModelWatcher


async def test_train_list_roll_back_and_prune(world, capsys):
    settings = world.model_copy(update={"model_keep_versions": 2})
    first = current_version(settings.model_dir)
    assert await train_once(settings) == 0
    assert await train_once(settings) == 0
    versions = list_versions(settings.model_dir)
    assert len(versions) == 2 and first not in versions, "keep-last-2 pruned the oldest"
    older, newest = versions
    assert current_version(settings.model_dir) == newest

    capsys.readouterr()
    assert await models_list(settings) == 0
    listed = capsys.readouterr().out
    lines = {v: next(line for line in listed.splitlines() if v in line) for v in versions}
    assert "*" in lines[newest] and "*" not in lines[older]
    assert listed.index(newest) < listed.index(older), "newest first"

    holder = ModelHolder()
    watcher = ModelWatcher(holder, settings.model_dir, poll_seconds=0.1)
    assert await watcher.check_once() and holder.version == newest

    assert await models_activate(settings, older) == 0
    assert current_version(settings.model_dir) == older
    assert await watcher.check_once() and holder.version == older, "the rollback reaches serving"

    # Pruning keeps the active version even when it is not among the newest.
    assert prune(settings.model_dir, keep=1) == []
    assert list_versions(settings.model_dir) == versions


def test_activate_refuses_what_cannot_be_served(world, capsys):
    model_dir = world.model_dir
    good = current_version(model_dir)
    broken = "20200101T000000Z-abcdef"
    shutil.copytree(model_dir / VERSIONS_DIR / good, model_dir / VERSIONS_DIR / broken)
    capsys.readouterr()
    for version in (broken, "20990101T000000Z-123456", "../../etc"):
        assert asyncio.run(models_activate(world, version)) == 1
        assert "refused" in capsys.readouterr().err
        assert current_version(model_dir) == good


def test_prune_removes_dead_staging_directories_only(world):
    versions = world.model_dir / VERSIONS_DIR
    dead = versions / f"{STAGING_PREFIX}20200101T000000Z-aaaaaa"
    alive = versions / f"{STAGING_PREFIX}20200101T000001Z-bbbbbb"
    dead.mkdir()
    alive.mkdir()
    old = time.time() - STALE_STAGING_SECONDS - 60
    os.utime(dead, (old, old))
    removed = prune(world.model_dir, keep=5)
    assert removed == [dead.name]
    assert alive.is_dir() and not dead.exists()
    active = current_version(world.model_dir)
    assert list_versions(world.model_dir) == [active]
    assert (versions / active / ARRAYS_FILE).is_file()


def test_versions_written_within_a_second_keep_their_order_and_pruning_keeps_the_newest(world):
    model_dir = world.model_dir
    index = load_version(model_dir, current_version(model_dir))
    written = [save_version(model_dir, index) for _ in range(6)]
    assert list_versions(model_dir)[-6:] == written
    activate(model_dir, written[-1])
    prune(model_dir, keep=2)
    assert list_versions(model_dir) == written[-2:]


async def test_a_served_index_is_frozen_out_of_collections_and_freed_by_the_next_swap(world):
    model_dir = world.model_dir
    holder = ModelHolder()
    watcher = ModelWatcher(holder, model_dir, poll_seconds=0.1)
    assert await watcher.check_once()
    served = weakref.ref(holder.index)

    # Frozen: a full collection no longer walks its objects (a pause of ~90 ms at 100k users).
    assert not any(obj is holder.index for obj in gc.get_objects())

    newer = save_version(model_dir, load_version(model_dir, holder.version))
    activate(model_dir, newer)
    assert await watcher.check_once() and holder.version == newer
    assert served() is None, "reference counting frees a frozen index once nothing holds it"
