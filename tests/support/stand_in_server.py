"""Run the nx-27017 stand-in with one fidelity fix: `_id` as a key of a compound index.

MongoDB indexes `_id` inside a compound key like any other field (the store declares
`(user_id, timestamp, _id)`). nx-27017 0.8 builds `json_extract(data, '_id')` for it, a path SQLite
refuses ("JSON path error"), so `createIndexes` fails. neosqlite keeps `_id` in the stored JSON too
(the ObjectId as `{"__neosqlite_objectid__": true, "id": "<hex>"}`), so `$._id` indexes the real
value, in ObjectId order, and `listIndexes` reports the key as `_id`. Nothing else changes.

Usage: python stand_in_server.py [nx-27017 arguments]
"""

from __future__ import annotations

import sys

from neosqlite.collection import index_manager
from nx_27017.nx_27017 import main

_parse_json_path = index_manager.parse_json_path


def parse_json_path(field: str) -> str:
    return "$._id" if field == "_id" else _parse_json_path(field)


if __name__ == "__main__":
    index_manager.parse_json_path = parse_json_path
    sys.argv[0] = "nx-27017"
    sys.exit(main())
