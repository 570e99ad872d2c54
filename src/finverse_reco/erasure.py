"""Erased customers, known by tombstone: a keyed hash of the customer id, never the id itself.

A domain type below every adapter: the stores keep the tombstones, serving masks the customers
whose tombstones it has read, ingestion drops their late events, training leaves them out
(docs/ACCOUNTABILITY.md). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence


class ErasedCustomers:
    """The tombstones a process knows of, and the key that makes them.

    HMAC-SHA256 under a secret key (`FINVERSE_ERASURE_KEY`): without the key a tombstone cannot
    be matched against a list of guessed customer ids. The set is replaced whole (`replace`) when
    the store is read again, so a reader never sees it half updated."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()
        self._tombstones: frozenset[str] = frozenset()

    def tombstone(self, user_id: str) -> str:
        return hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()

    def is_erased(self, user_id: str) -> bool:
        # The hash costs ~1 µs: skipped while nobody is erased.
        return bool(self._tombstones) and self.tombstone(user_id) in self._tombstones

    def erased_among(self, user_ids: Iterable[str]) -> set[str]:
        """The erased ones of these customer ids (each hashed once)."""
        if not self._tombstones:
            return set()
        return {u for u in set(user_ids) if self.tombstone(u) in self._tombstones}

    def tombstones_of(self, user_ids: Sequence[str]) -> dict[str, str]:
        """tombstone → customer id, for asking the store about these customers."""
        return {self.tombstone(user_id): user_id for user_id in dict.fromkeys(user_ids)}

    def replace(self, tombstones: Iterable[str]) -> None:
        self._tombstones = frozenset(tombstones)

    def add(self, tombstone: str) -> None:
        self._tombstones = self._tombstones | {tombstone}

    def __len__(self) -> int:
        return len(self._tombstones)
