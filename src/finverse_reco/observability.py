"""Structured JSON logs, each line carrying the id of the request being served.

Every process logs one JSON object per line to stderr at `FINVERSE_LOG_LEVEL`. Inside a request the
`request_id` field is added (taken from a well-formed `X-Request-ID` header, else generated), so one
request's lines can be found across replicas. Logs carry ids, never personal data: no query strings,
demographics, search terms or client addresses.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar
from typing import TextIO

from pythonjsonlogger.orjson import OrjsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is echoed into logs and headers, so only a short plain token is trusted.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

current_request_id: ContextVar[str | None] = ContextVar("finverse_request_id", default=None)


def request_id_from(incoming: str | None) -> str:
    """The caller's request id when it is a safe token, otherwise a new random one."""
    if incoming is not None and _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to records logged while a request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def json_formatter() -> logging.Formatter:
    return OrjsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """One JSON handler on the root logger; uvicorn's loggers propagate to it (it runs with
    `log_config=None`). Safe to call again: the previous handlers are replaced."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # httpx logs every outgoing URL, query string included, at INFO: only when debugging.
    logging.getLogger("httpx").setLevel(level if level == "DEBUG" else "WARNING")
