"""Length-prefixed pickle frames between the driver and its worker processes.

Each frame is an 8-byte big-endian length (no size limit below what memory allows) and a
pickled ``(tag, fields)`` pair standing for one message of ``aioray._wire.messages``. Large
buffers never travel here: they sit in shared memory and frames carry their names.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any

from aioray._objects import pickler as _pickle
from aioray._wire.messages import MESSAGES, TAGS

HEADER = struct.Struct("!Q")
# What the zygote (aioray._worker.zygote) reports: kind (b"P" forked / b"X" ended), pid,
# wait status.
ZYGOTE_RECORD = struct.Struct("!cii")


def encode(msg: tuple[Any, ...]) -> bytes:
    """One frame for ``msg`` (a message record)."""
    data = _pickle.dumps((TAGS[type(msg)], tuple(msg)))
    return HEADER.pack(len(data)) + data


def decode(data: bytes | bytearray | memoryview) -> Any:
    tag, fields = _pickle.loads(data)
    return tuple.__new__(MESSAGES[tag], fields)


def recv_frame(sock: socket.socket) -> Any:
    """Blocking read of one frame (worker side). Raises EOFError when the driver is gone."""
    header = _recv_exact(sock, HEADER.size)
    (n,) = HEADER.unpack(header)
    return decode(_recv_exact(sock, n))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError("connection closed")
        got += k
    return bytes(buf)


class FrameProtocol(asyncio.Protocol):
    """asyncio side: splits the byte stream into messages and hands each to ``on_message``."""

    def __init__(self, on_message: Callable[[Any], None],
                 on_lost: Callable[[Exception | None], None]) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        size = len(buf)
        hs = HEADER.size
        while size - pos >= hs:
            (n,) = HEADER.unpack_from(buf, pos)
            if size - pos - hs < n:
                break
            start = pos + hs
            msg = decode(buf[start:start + n])
            pos = start + n
            try:
                self._on_message(msg)
            except Exception:  # a bug in one handler must not kill the connection
                import traceback
                traceback.print_exc()
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(exc)

    def send(self, msg: tuple[Any, ...]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(msg))
