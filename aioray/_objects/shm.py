"""Named shared-memory segments for large pickle-5 buffers.

Files in ``/dev/shm`` (or the temp dir where there is none) mapped with ``mmap``. We do not use
``multiprocessing.shared_memory``: its resource tracker unlinks segments when *any* attaching
process exits (fixed only in 3.13 with ``track=False``), and spawned workers would need the
driver's tracker. Instead every segment name starts with ``aioray-<driver pid>-`` so the driver
can sweep everything it ever owned at shutdown, even segments a crashed worker left behind.
"""

from __future__ import annotations

import glob
import mmap
import os
import tempfile
import uuid
import weakref
from typing import Any

_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
PREFIX = "aioray-"
_IO_CHUNK = 1 << 30  # per read/write call (Linux caps one call at just under 2 GiB)


def segment_prefix(driver_pid: int) -> str:
    return f"{PREFIX}{driver_pid}-"


def _path(name: str) -> str:
    return os.path.join(_DIR, name)


class SharedBuffer:
    """One shared-memory segment holding one out-of-band buffer.

    The creating side owns it while ``owner`` is true: dropping the last reference unlinks the
    file. Mappings already handed out (numpy arrays over it) stay valid after the unlink.
    """

    __slots__ = ("__weakref__", "_finalizer", "_mm", "name", "size")

    def __init__(self, name: str, size: int, mm: mmap.mmap | None, owner: bool) -> None:
        self.name = name
        self.size = size
        self._mm = mm
        self._finalizer = weakref.finalize(self, _unlink, name) if owner else None

    @classmethod
    def create(cls, driver_pid: int, data: memoryview, owner: bool = True) -> SharedBuffer:
        name = f"{segment_prefix(driver_pid)}{uuid.uuid4().hex[:16]}"
        size = data.nbytes
        fd = os.open(_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            # write(), not a mapping: the kernel copies into the file's pages in bulk instead
            # of one page fault per 4 KiB, and a full filesystem is an OSError, not SIGBUS.
            src = data.cast("B")
            done = 0
            while done < size:
                done += os.pwrite(fd, src[done:done + _IO_CHUNK], done)
            if not size:
                os.ftruncate(fd, 1)
        except BaseException:
            os.close(fd)
            _unlink(name)
            raise
        os.close(fd)
        buf = cls(name, size, None, owner=owner)
        if owner:
            buf.map()  # the owner's objects stay readable after shutdown() sweeps the files
        return buf

    @classmethod
    def attach(cls, name: str, size: int, owner: bool = False) -> SharedBuffer:
        return cls(name, size, None, owner)

    def adopt(self) -> None:
        """Take ownership of a segment another process created (a worker's result)."""
        if self._finalizer is None:
            self._finalizer = weakref.finalize(self, _unlink, self.name)

    def disown(self) -> None:
        """Hand ownership to another process (the driver adopts a worker's result)."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def map(self) -> None:
        """Map the segment now; the mapping outlives the file's unlink (shutdown's sweep)."""
        if self._mm is None:
            fd = os.open(_path(self.name), os.O_RDONLY)
            try:
                self._mm = mmap.mmap(fd, max(self.size, 1), prot=mmap.PROT_READ)
            finally:
                os.close(fd)

    def view(self) -> memoryview:
        """A read-only view of the bytes: arrays built on it are immutable, as Ray's are."""
        self.map()
        assert self._mm is not None
        mv = memoryview(self._mm)[: self.size]
        return mv if mv.readonly else mv.toreadonly()

    def read_bytes(self) -> bytes:
        """A copy of the contents as ``bytes``, read with ``pread`` (one copy, no page faults
        on the source); from the mapping if the file is already gone (swept at shutdown)."""
        try:
            fd = os.open(_path(self.name), os.O_RDONLY)
        except FileNotFoundError:
            return bytes(self.view())
        try:
            if self.size <= _IO_CHUNK:
                data = os.pread(fd, self.size, 0)
                if len(data) == self.size:
                    return data
            out = bytearray(self.size)  # > 2 GiB: pread returns at most ~2 GiB per call
            view = memoryview(out)
            done = 0
            while done < self.size:
                n = os.preadv(fd, [view[done:done + _IO_CHUNK]], done)
                if n <= 0:
                    raise OSError(f"shared memory segment {self.name} is shorter than expected")
                done += n
            return bytes(out)
        finally:
            os.close(fd)

    def __reduce__(self) -> Any:
        return (SharedBuffer.attach, (self.name, self.size))


def _unlink(name: str) -> None:
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        pass


def sweep(driver_pid: int) -> int:
    """Unlink every segment of this driver (shutdown); returns how many were left."""
    n = 0
    for path in glob.glob(os.path.join(_DIR, segment_prefix(driver_pid) + "*")):
        try:
            os.unlink(path)
            n += 1
        except FileNotFoundError:
            pass
    return n


def sweep_dead_drivers() -> int:
    """Unlink segments of drivers that no longer run (killed with SIGKILL: nothing of theirs
    could clean up). Called at init; a pid that is alive (even reused) is left alone."""
    n = 0
    for path in glob.glob(os.path.join(_DIR, PREFIX + "*")):
        try:
            pid = int(os.path.basename(path)[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or not ours to signal): leave it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(path)
            n += 1
        except FileNotFoundError:
            pass
    return n


def list_segments(driver_pid: int | None = None) -> list[str]:
    pattern = segment_prefix(driver_pid) + "*" if driver_pid else PREFIX + "*"
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(_DIR, pattern)))
