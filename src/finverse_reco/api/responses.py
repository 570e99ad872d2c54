"""orjson-rendered JSON responses (FastAPI deprecated its own ORJSONResponse)."""

from typing import Any

import orjson
from starlette.responses import Response

# Every served list's id, also in its body: what the audit trail files the list under.
RECOMMENDATION_ID_HEADER = "X-Recommendation-ID"


class JSONBytesResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
