"""Waiting on a test's raw sockets."""

import select
import socket


def readable(connection: socket.socket, timeout_s: float) -> bool:
    """Whether ``connection`` has something to read, or was closed, within ``timeout_s``.
    ``poll``, not ``select``, which refuses a descriptor past 1,023: an xdist worker that has
    run many tests holds more than that."""
    poller = select.poll()
    poller.register(connection, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))
