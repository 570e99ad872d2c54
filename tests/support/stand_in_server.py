"""Run the nx-27017 stand-in with two fixes: `_id` as a key of a compound index, and date-range
finds that do not read the whole collection.

1. MongoDB indexes `_id` inside a compound key like any other field (the store declares
   `(user_id, timestamp, _id)`). nx-27017 0.8 builds `json_extract(data, '_id')` for it, a path
   SQLite refuses ("JSON path error"), so `createIndexes` fails. neosqlite keeps `_id` in the stored
   JSON too (the ObjectId as `{"__neosqlite_objectid__": true, "id": "<hex>"}`), so `$._id` indexes
   the real value, in ObjectId order, and `listIndexes` reports the key as `_id`.
2. A filter with a date comparison that neosqlite cannot translate to SQL (a date range beside an
   `$in`, as every customer read has) falls back to decoding every document in Python: 400 ms at
   15,000 events, where MongoDB answers from the (user_id, timestamp, _id) index. The fallback now
   first narrows with the filter's other top-level conditions (through SQL, as any find) and then
   applies the whole filter in Python to those: a top-level filter is a conjunction, so the
   result is the same documents.

Nothing else changes. Usage: python stand_in_server.py [nx-27017 arguments]
"""

from __future__ import annotations

import sys
from typing import Any

from neosqlite.collection import index_manager
from neosqlite.collection.datetime_query_processor import DateTimeQueryProcessor
from nx_27017.nx_27017 import main

_parse_json_path = index_manager.parse_json_path


def parse_json_path(field: str) -> str:
    return "$._id" if field == "_id" else _parse_json_path(field)


def python_tier_narrowed(self: DateTimeQueryProcessor, query: dict[str, Any]) -> list[dict]:
    narrowing = {
        name: condition
        for name, condition in query.items()
        if not name.startswith("$") and not self._contains_datetime_operations({name: condition})
    }
    return [
        document
        for document in self.collection.find(narrowing)
        if self.helpers._apply_query(query, document)
    ]


if __name__ == "__main__":
    index_manager.parse_json_path = parse_json_path
    DateTimeQueryProcessor._process_with_python_tier = python_tier_narrowed
    sys.argv[0] = "nx-27017"
    sys.exit(main())
