"""`IdMap`: external ids ↔ rows, one immutable value object for every id list in the core.

The pipeline makes them (users, items, feature names), the model's arrays are aligned with them, the
artifacts store them as plain lists, the index and evaluation look rows up in them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np


class IdMap:
    """Ids in row order. Unique; rows are positions; nothing changes after construction."""

    __slots__ = ("_ids", "_rows")

    def __init__(self, ids: Iterable[str]) -> None:
        self._ids: tuple[str, ...] = tuple(ids)
        self._rows: dict[str, int] = {external: row for row, external in enumerate(self._ids)}
        if len(self._rows) != len(self._ids):
            raise ValueError("ids must be unique")

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __contains__(self, external: object) -> bool:
        return external in self._rows

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._ids == other._ids

    def __hash__(self) -> int:
        return hash(self._ids)

    def __repr__(self) -> str:
        return f"IdMap({len(self._ids)} ids)"

    def row(self, external: str) -> int | None:
        """The row of an id, or None when it is not mapped."""
        return self._rows.get(external)

    def rows(self, externals: Iterable[str]) -> np.ndarray:
        """Rows of the mapped ids among `externals`, in their order (unmapped ones left out)."""
        rows = self._rows
        found = [rows[e] for e in externals if e in rows]
        return np.asarray(found, dtype=np.int64)

    def id(self, row: int) -> str:
        return self._ids[row]

    def ids_of(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The ids of `rows`, in their order."""
        ids = self._ids
        return [ids[row] for row in (rows.tolist() if isinstance(rows, np.ndarray) else rows)]
