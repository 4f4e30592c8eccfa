"""The HTTP/1.1 protocol ``serve`` runs: uvicorn's httptools one, with the request head bounded.

uvicorn bounds a request's head only with its h11 protocol; with httptools (which
``uvicorn[standard]`` installs, and uvicorn prefers) a header or a URL may be any length, held
in memory as it comes: one client could make the server hold gigabytes before any route, key
or limit is checked. Here the bytes received while a request's head is incomplete are
counted, and once past :data:`MAX_HEAD_BYTES` with the head still incomplete, the connection
is answered 400 and closed (at most one read, 256 KiB, beyond it is held).
"""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
"""The most bytes a request line and its headers may take (h11's own bound is 16 KiB)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 400 to a request whose head is too long (a
    module-level class: ``serve --workers`` hands it to spawned processes)."""

    _head_bytes = 0
    _in_head = True

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Judged after parsing: a read that ends the head may carry much of the body too.
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._in_head = False
            if not self.transport.is_closing():
                self.send_400_response("Request header fields too large.")

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0
