"""Erasure (GDPR Art. 17): forget a customer everywhere the service keeps them, keep a tombstone.

The order matters: the tombstone is stored first, so that from then on ingestion drops the
customer's events (it asks the store, batch by batch) and every replica masks them once it has read
the tombstones (`ErasureWatcher`, at the model poll interval); this replica masks them at once.
Then the audit trail's buffer forgets them, and the store deletes their interactions and audit
records. The next training leaves them out even if a late event slipped in (it reads the
tombstones too). Erasing again finds nothing more to delete and says so: idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from finverse_reco import telemetry
from finverse_reco.erasure import ErasedCustomers
from finverse_reco.service.audit import AuditTrail
from finverse_reco.store import InteractionStore, StoreUnavailable

log = logging.getLogger(__name__)


class CustomerErasure:
    def __init__(self, store: InteractionStore, erased: ErasedCustomers, audit: AuditTrail) -> None:
        self._store = store
        self._erased = erased
        self._audit = audit

    async def erase(self, user_id: str) -> dict[str, Any]:
        """The receipt: the tombstone, when, whether it was already erased, what was deleted.
        Raises StoreUnavailable (nothing is known to be done: the caller tries again)."""
        tombstone = self._erased.tombstone(user_id)
        erased_at = datetime.now(UTC)
        first_time = await self._store.add_tombstone(tombstone, erased_at)
        self._erased.add(tombstone)
        unwritten = await self._audit.forget(user_id)
        deleted = await self._store.delete_customer(user_id)
        deleted["audit_records"] += unwritten
        if first_time:
            telemetry.ERASURES.inc()
        log.info("erased a customer (tombstone %s…): %s", tombstone[:12], deleted)
        return {
            "tombstone": tombstone,
            "erased_at": erased_at.isoformat().replace("+00:00", "Z"),
            "already_erased": not first_time,
            "deleted": deleted,
        }


class ErasureWatcher:
    """Keeps this process's `ErasedCustomers` on the store's tombstones (every replica masks an
    erased customer within one poll interval)."""

    def __init__(
        self, store: InteractionStore, erased: ErasedCustomers, poll_seconds: float
    ) -> None:
        self._store = store
        self._erased = erased
        self._poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> None:
        try:
            self._erased.replace(await self._store.tombstones())
        except StoreUnavailable as exc:
            # Keep masking what we knew; the store's tombstones are read again next time.
            log.warning("could not read the erasure tombstones: %s", exc)

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._poll_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="erasure-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
