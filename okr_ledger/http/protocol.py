"""The HTTP/1.1 protocol ``serve`` runs: uvicorn's httptools one, with the request head bounded
in size and in time.

uvicorn bounds a request's head only with its h11 protocol; with httptools (which
``uvicorn[standard]`` installs, and uvicorn prefers) a header or a URL may be any length, held
in memory as it comes: one client could make the server hold gigabytes before any route, key
or limit is checked. Here the bytes received while a request's head is incomplete are
counted, and once past :data:`MAX_HEAD_BYTES` with the head still incomplete, the connection
is answered 400 and closed (at most one read, 256 KiB, beyond it is held).

Nor does uvicorn bound the time a head takes: its keep-alive timeout is cancelled by every
byte received, so a client sending one byte a second (slowloris) held a connection for as
long as it liked. A head not complete :attr:`BoundedHttpToolsProtocol.head_timeout_s` after
its first byte is answered 408 and the connection closed.
"""

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
"""The most bytes a request line and its headers may take (h11's own bound is 16 KiB)."""
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 400 to a request whose head is too long and 408
    to one whose head is too slow (a module-level class: ``serve --workers`` hands it to
    spawned processes, each of which sets :attr:`head_timeout_s` from its settings)."""

    head_timeout_s = 10.0
    """``OKR_HTTP_HEAD_TIMEOUT_SECONDS``, set by ``serve`` before it serves."""
    _head_bytes = 0
    _in_head = True
    _head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)
        super().data_received(data)
        # Judged after parsing: a read that ends the head may carry much of the body too.
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._in_head = False
            self._stop_head_timer()
            if not self.transport.is_closing():
                self.send_400_response("Request header fields too large.")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.write(_TIMED_OUT)
            self.transport.close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
