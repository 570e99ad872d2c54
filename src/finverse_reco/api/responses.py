"""orjson-rendered JSON responses (FastAPI deprecated its own ORJSONResponse)."""

from typing import Any

import orjson
from starlette.responses import Response


class JSONBytesResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
