"""uvicorn's httptools protocol with a bound on the request head (request line plus headers).

httptools (llhttp) sets no limit of its own: a client streaming one endless header kept the parser
buffering it, grew the process by the header's size and held the event loop feeding it, stalling
every other client. Here the bytes of an unfinished head are counted as they arrive; past
`max_header_bytes`, or past `max_headers` header lines, the connection gets 431 and is closed,
and nothing more of it is parsed.

The count restarts whenever a request begins, so a head is counted from the next read on: the
parser holds at most `max_header_bytes` plus one read (asyncio reads 256 KiB at most).
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REFUSAL_STATUS = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"


class HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a refused request head."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, max_header_bytes: int, max_headers: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_header_bytes = max_header_bytes
        self._max_headers = max_headers
        self._in_head = False
        self._began_in_this_read = False
        self._head_bytes = 0
        self._header_count = 0
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the connection is closing; parsing more would only buffer it
        self._began_in_this_read = False
        super().data_received(data)
        if self._in_head and not self._began_in_this_read:
            self._head_bytes += len(data)
        if self._in_head and self._head_bytes > self._max_header_bytes:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._began_in_this_read = True
        self._head_bytes = 0
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._max_headers:
            self._refuse()
            # Stops the parser mid-head; uvicorn then sees a parser error and calls
            # `send_400_response`, which knows the 431 has already gone out.
            raise HeadRefused
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def _refuse(self) -> None:
        self._refused = True
        message = (
            f"the request head is larger than {self._max_header_bytes} bytes"
            if self._head_bytes > self._max_header_bytes
            else f"the request has more than {self._max_headers} header lines"
        )
        body = orjson.dumps({"error": {"code": "header_fields_too_large", "message": message}})
        self.transport.write(
            b"".join(
                [
                    _REFUSAL_STATUS,
                    b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()


def bounded_http_protocol(max_header_bytes: int, max_headers: int) -> functools.partial:
    """What uvicorn's `http=` takes: a protocol factory with the limits bound in."""
    return functools.partial(
        BoundedHttpToolsProtocol, max_header_bytes=max_header_bytes, max_headers=max_headers
    )
