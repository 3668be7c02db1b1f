"""The store for large pickle-5 buffers: shared-memory files with a size bound and spilling.

Each buffer of at least 1 MiB lives in its own file in the segment directory (``/dev/shm``
unless it is too small for the store, see :func:`configure`), named
``aioray-<driver pid>-u<uid>-<random>`` and created exclusively with mode ``0600``: another
user's file can never be mistaken for ours or block a name (we retry with a new random part),
and the driver can sweep everything it ever owned at shutdown — and, at the next ``init``, what
a killed driver of the same user left (other users' files are never touched).

* **No signal on a full filesystem.** The bytes are reserved with ``posix_fallocate`` before
  anything is written, so a full tmpfs is ``ENOSPC`` (then we spill and retry, or raise
  :class:`~aioray.exceptions.ObjectStoreFullError`), never a ``SIGBUS`` in the middle of a copy.
* **No file descriptor per object.** Files are mapped with libc's ``mmap`` through ctypes and
  the descriptor is closed at once (3.11's ``mmap`` module keeps a ``dup`` of it per mapping).
  The mapping is unmapped when the last view of it (a numpy array built on it) goes away.
* **A size bound.** The driver accounts every buffer it owns against ``object_store_memory``.
  When a new one does not fit, the least recently used buffers that nobody in this process is
  reading (no live view) are spilled to files in a disk directory and restored on the next
  ``get``; workers read a spilled argument straight from its disk file. Nothing spillable left:
  ``ObjectStoreFullError`` naming the sizes.
* **Warm reuse.** A freed buffer the driver made itself and never handed to another process
  keeps its file and mapping in a small pool; the next buffer of the same size class is a plain
  ``memcpy`` into pages that are already there (no page faults, no allocation).

We do not use ``multiprocessing.shared_memory``: its resource tracker unlinks segments when
*any* attaching process exits (fixed only in 3.13 with ``track=False``).
"""

from __future__ import annotations

import collections
import ctypes
import errno
import glob
import itertools
import mmap
import os
import secrets
import stat
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from aioray.exceptions import ObjectStoreFullError

PREFIX = "aioray-"
FREE = "free-"  # a freed file kept warm for reuse: aioray-<pid>-free-<random>
_IO_CHUNK = 1 << 30  # per read/write call (Linux caps one call at just under 2 GiB)
_UID = os.getuid()

# The user's override of the segment directory (as init(_temp_dir=...)), and of the spill one.
ENV_DIR = "AIORAY_OBJECT_STORE_DIR"
ENV_SPILL_DIR = "AIORAY_OBJECT_SPILLING_DIR"
# Set by the driver's init for the worker processes it starts (they inherit its environment).
_ENV_DIR_IN_USE = "AIORAY_SEGMENT_DIR_IN_USE"
_ENV_SPILL_IN_USE = "AIORAY_SPILL_DIR_IN_USE"

RAM_FRACTION = 0.3  # the default store size, as Ray's
POOL_FRACTION = 0.25  # at most this share of the store is kept warm for reuse


def _default_spill_dir() -> str:
    return os.path.join(tempfile.gettempdir(), f"aioray-spill-{_UID}")


_DIR = (os.environ.get(_ENV_DIR_IN_USE) or os.environ.get(ENV_DIR)
        or ("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()))
_SPILL_DIR = (os.environ.get(_ENV_SPILL_IN_USE) or os.environ.get(ENV_SPILL_DIR)
              or _default_spill_dir())


def segment_prefix(driver_pid: int) -> str:
    return f"{PREFIX}{driver_pid}-"


def _new_name(driver_pid: int) -> str:
    return f"{segment_prefix(driver_pid)}u{_UID}-{secrets.token_hex(8)}"


def _path(name: str) -> str:
    return os.path.join(_DIR, name)


def _spill_path(name: str) -> str:
    return os.path.join(_SPILL_DIR, name)


def size_class(n: int) -> int:
    """Bytes a buffer of ``n`` bytes occupies: rounded up to 1/8 of its power of two (at most
    12.5% more) and to pages, so freed files fit later buffers of about the same size."""
    if n <= 1 << 16:
        return max(4096, (n + 4095) & ~4095)
    step = 1 << (n.bit_length() - 4)
    return (n + step - 1) & ~(step - 1)


# -- mapping without keeping a file descriptor --------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
_c_mmap = _libc.mmap
_c_mmap.restype = ctypes.c_void_p
_c_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                    ctypes.c_long]
_c_munmap = _libc.munmap
_c_munmap.restype = ctypes.c_int
_c_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_TOKENS = itertools.count()
_IDLE_LOCK = threading.Lock()


class _Mapping:
    """One ``mmap`` of a whole segment file; unmapped when this object goes. Views handed out
    keep it alive (their ctypes region is the buffer exporter) and are counted in ``exports``:
    a mapping with no export is one nobody in this process reads."""

    __slots__ = ("__weakref__", "addr", "length", "on_idle", "readers", "writable")

    def __init__(self, fd: int, length: int, writable: bool, populate: bool) -> None:
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        flags = mmap.MAP_SHARED | (_MAP_POPULATE if populate else 0)
        addr = _c_mmap(None, length, prot, flags, fd, 0)
        if addr is None or addr == _MAP_FAILED:
            err = ctypes.get_errno()
            raise OSError(err, f"mmap of a shared memory segment failed: {os.strerror(err)}")
        self.addr: int = addr
        self.length = length
        # One token per live view (set.add/discard are atomic: views come and go on any
        # thread, finalizers included).
        self.readers: set[int] = set()
        self.writable = writable
        self.on_idle: Callable[[], None] | None = None

    @property
    def exports(self) -> int:
        return len(self.readers)

    def _region(self) -> Any:
        return (ctypes.c_ubyte * self.length).from_address(self.addr)

    def view(self, size: int) -> memoryview:
        """A read-only view of the first ``size`` bytes, counted until it (and everything
        built on it) is gone."""
        region = self._region()
        token = next(_TOKENS)
        self.readers.add(token)
        weakref.finalize(region, self._unexport, token).atexit = False
        return memoryview(region).cast("B")[:size].toreadonly()

    def _unexport(self, token: int) -> None:
        self.readers.discard(token)
        if not self.readers and self.on_idle is not None:
            self._fire()

    def when_idle(self, cb: Callable[[], None]) -> None:
        """Call ``cb`` once no view is left (at once if none is)."""
        self.on_idle = cb
        if not self.readers:
            self._fire()

    def _fire(self) -> None:
        with _IDLE_LOCK:
            cb, self.on_idle = self.on_idle, None
        if cb is not None:
            cb()

    def write(self, src: memoryview) -> None:
        dst = memoryview(self._region()).cast("B")
        dst[:src.nbytes] = src

    def raw(self, size: int) -> memoryview:
        """An uncounted view for our own short-lived reads (spilling)."""
        return memoryview(self._region()).cast("B")[:size]

    def __del__(self) -> None:
        _c_munmap(self.addr, self.length)


class _NoSpace(OSError):
    pass


def _create_file(driver_pid: int, alloc: int) -> tuple[str, int]:
    """A new segment file of ``alloc`` reserved bytes: (name, open fd). Exclusive creation
    with a fresh random name on collision; ``_NoSpace`` if the filesystem is full."""
    for _ in range(100):
        name = _new_name(driver_pid)
        try:
            fd = os.open(_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        try:
            _reserve(fd, alloc)
        except BaseException:
            os.close(fd)
            _unlink(_path(name))
            raise
        return name, fd
    raise FileExistsError(f"could not create a unique segment name in {_DIR}")


def _reserve(fd: int, alloc: int) -> None:
    try:
        os.posix_fallocate(fd, 0, alloc)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _NoSpace(e.errno, f"no space left in {_DIR} for {alloc} bytes") from None
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without fallocate
            os.ftruncate(fd, alloc)  # writes below still fail with ENOSPC, never SIGBUS
        else:
            raise


def _pwrite_all(fd: int, src: memoryview) -> None:
    size = src.nbytes
    done = 0
    try:
        while done < size:
            done += os.pwrite(fd, src[done:done + _IO_CHUNK], done)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _NoSpace(e.errno, f"no space left in {_DIR}") from None
        raise


def _copy_file(src_path: str, dst_fd: int, size: int) -> None:
    fd = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        done = 0
        while done < size:
            n = os.sendfile(dst_fd, fd, done, min(size - done, _IO_CHUNK))
            if n <= 0:
                raise OSError(f"{src_path} is shorter than expected")
            done += n
    finally:
        os.close(fd)


def _open_for_read(name: str) -> int:
    """The segment, in memory or spilled (the driver may move it between our two looks)."""
    for _ in range(5):
        for path in (_path(name), _spill_path(name)):
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                pass
    raise FileNotFoundError(errno.ENOENT, f"shared memory segment {name} is gone", _path(name))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Seg:
    """The state of one segment, shared by its :class:`SharedBuffer` and its finalizer."""

    __slots__ = ("alloc", "gen", "mapping", "name", "owned", "shared", "size", "spilled")

    def __init__(self, name: str, size: int, alloc: int) -> None:
        self.name = name
        self.size = size
        self.alloc = alloc
        self.mapping: _Mapping | None = None
        self.owned = False  # accounted in this process's store
        self.shared = False  # another process knows it: its file is never reused
        self.spilled = False
        self.gen = -1


class SharedBuffer:
    """One out-of-band buffer in a segment file.

    The creating side owns it while ``owner`` is true: dropping the last reference frees the
    file (or keeps it warm for reuse). Views already handed out (numpy arrays over it) stay
    valid after that and after shutdown's sweep.
    """

    __slots__ = ("__weakref__", "_finalizer", "seg")

    def __init__(self, seg: _Seg, owner: bool) -> None:
        self.seg = seg
        self._finalizer: Any = None
        if owner:
            self.adopt()

    @property
    def name(self) -> str:
        return self.seg.name

    @property
    def size(self) -> int:
        return self.seg.size

    @classmethod
    def create(cls, driver_pid: int, data: memoryview, owner: bool = True) -> SharedBuffer:
        src = data.cast("B") if data.format != "B" or data.ndim != 1 else data
        if owner and STORE.active:
            return cls(STORE.put(driver_pid, src), owner=True)
        size = src.nbytes
        alloc = size_class(size)
        try:
            name, fd = _create_file(driver_pid, alloc)
        except _NoSpace:
            raise ObjectStoreFullError(_no_room_message(size)) from None
        try:
            _pwrite_all(fd, src)
        except _NoSpace:
            os.close(fd)
            _unlink(_path(name))
            raise ObjectStoreFullError(_no_room_message(size)) from None
        except BaseException:
            os.close(fd)
            _unlink(_path(name))
            raise
        seg = _Seg(name, size, alloc)
        if owner:  # no store configured in this process (tests): map now, as a driver would
            seg.mapping = _Mapping(fd, alloc, writable=False, populate=False)
        os.close(fd)
        return cls(seg, owner=owner)

    @classmethod
    def attach(cls, name: str, size: int, owner: bool = False) -> SharedBuffer:
        return cls(_Seg(name, size, size_class(size)), owner)

    def adopt(self) -> None:
        """Take ownership of the segment (a worker's result, in the driver)."""
        if self._finalizer is None:
            seg = self.seg
            if STORE.active and not seg.owned:
                STORE.adopt(seg)
            self._finalizer = weakref.finalize(self, _release, seg)

    def disown(self) -> None:
        """Hand ownership to another process (the driver adopts a worker's result)."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def map(self) -> None:
        """Map the segment now; the mapping outlives the file's unlink (shutdown's sweep)."""
        seg = self.seg
        if seg.mapping is None:
            if seg.spilled and seg.owned:
                STORE.restore(seg)
                if seg.mapping is not None:
                    return
            fd = _open_for_read(seg.name)
            try:
                seg.mapping = _Mapping(fd, seg.alloc, writable=False, populate=False)
            finally:
                os.close(fd)

    def view(self) -> memoryview:
        """A read-only view of the bytes: arrays built on it are immutable, as Ray's are."""
        seg = self.seg
        if seg.owned:
            STORE.touch(seg)
        self.map()
        assert seg.mapping is not None
        return seg.mapping.view(seg.size)

    def read_bytes(self) -> bytes:
        """A copy of the contents as ``bytes``, read with ``pread`` (one copy, no page faults
        on the source); from the mapping if the file is already gone (swept at shutdown)."""
        seg = self.seg
        if seg.mapping is not None:
            if seg.owned:
                STORE.touch(seg)
            return bytes(seg.mapping.raw(seg.size))
        if seg.owned and seg.spilled:
            STORE.note_restore(seg.size)
        fd = _open_for_read(seg.name)
        try:
            size = seg.size
            if size <= _IO_CHUNK:
                data = os.pread(fd, size, 0)
                if len(data) == size:
                    return data
            out = bytearray(size)  # > 2 GiB: pread returns at most ~2 GiB per call
            view = memoryview(out)
            done = 0
            while done < size:
                n = os.preadv(fd, [view[done:done + _IO_CHUNK]], done)
                if n <= 0:
                    raise OSError(f"shared memory segment {seg.name} is shorter than expected")
                done += n
            return bytes(out)
        finally:
            os.close(fd)

    def __reduce__(self) -> Any:
        # Another process will map the file: it must never be reused for another object.
        self.seg.shared = True
        return (SharedBuffer.attach, (self.seg.name, self.seg.size))


def _release(seg: _Seg) -> None:
    STORE.release(seg)


def _no_room_message(size: int, detail: str = "") -> str:
    free = _free_bytes(_DIR)
    return (f"Could not store an object of {_mb(size)}: {_DIR} has {_mb(free)} free"
            f"{detail}. Free objects you no longer need (drop their refs), give the store "
            f"more room (init(_temp_dir=...) or {ENV_DIR}) or a smaller object_store_memory.")


def _mb(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


class ObjectMemory:
    """The driver's accounting of the large buffers it owns: the size bound, LRU spilling and
    the warm pool. All state changes hold ``lock``; releases that arrive while this thread is
    inside an operation (a finalizer run by the garbage collector) wait in ``_pending``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.active = False
        self.gen = 0
        self.capacity = 0
        self.used = 0  # bytes of owned segments in memory, the pool included
        self.live: collections.OrderedDict[str, _Seg] = collections.OrderedDict()
        self.pool: dict[int, list[_Seg]] = {}
        self.pooled = 0
        self._busy = threading.local()
        self._pending: collections.deque[tuple[Callable[[_Seg], None], _Seg]] = (
            collections.deque())
        self.stats = {"spilled_objects": 0, "spilled_bytes": 0, "spill_seconds": 0.0,
                      "restored_objects": 0, "restored_bytes": 0, "restore_seconds": 0.0}

    # -- configuration -------------------------------------------------------------------
    def reset(self, capacity: int, active: bool = True) -> None:
        with self.lock:
            self.gen += 1
            self.capacity = capacity
            self.used = 0
            self.live.clear()
            for segs in self.pool.values():
                for seg in segs:
                    seg.mapping = None
            self.pool.clear()
            self.pooled = 0
            self._pending.clear()
            self.active = active
            for k in self.stats:
                self.stats[k] = 0

    def in_memory(self) -> int:
        return self.used - self.pooled

    # -- operations ----------------------------------------------------------------------
    def put(self, driver_pid: int, src: memoryview) -> _Seg:
        size = src.nbytes
        alloc = size_class(size)
        seg = self._take_pooled(alloc)
        if seg is not None and seg.mapping is not None:
            seg.mapping.write(src)  # a memcpy into pages already there
            seg.size = size
            self._add(seg)
            return seg
        self.make_room(alloc, size)  # reserves alloc in `used`
        try:
            seg = self._write_new(driver_pid, src, alloc)
        except _NoSpace:
            # The filesystem holds less than the store's size: make room on it, try again.
            try:
                if not self._free_filesystem(alloc):
                    raise _NoSpace(errno.ENOSPC, "full") from None
                seg = self._write_new(driver_pid, src, alloc)
            except _NoSpace:
                with self.lock:
                    self.used -= alloc
                raise ObjectStoreFullError(_no_room_message(
                    size, f"; the object store holds {_mb(self.in_memory())} in "
                    f"{len(self.live)} objects that are being read and cannot be spilled"
                )) from None
            except BaseException:
                with self.lock:
                    self.used -= alloc
                raise
        except BaseException:
            with self.lock:
                self.used -= alloc
            raise
        self._add(seg)
        return seg

    @staticmethod
    def _write_new(driver_pid: int, src: memoryview, alloc: int) -> _Seg:
        name, fd = _create_file(driver_pid, alloc)
        try:
            # write(), not the mapping: the kernel fills the reserved pages in bulk instead of
            # one page fault per 4 KiB. The mapping (for reads, and for reuse once freed) is
            # faulted in lazily: an object only passed to tasks never touches it.
            _pwrite_all(fd, src)
            mapping = _Mapping(fd, alloc, writable=True, populate=False)
        except BaseException:
            _unlink(_path(name))
            raise
        finally:
            os.close(fd)
        seg = _Seg(name, src.nbytes, alloc)
        seg.mapping = mapping
        return seg

    def _add(self, seg: _Seg) -> None:
        with self.lock:
            seg.owned = True
            seg.gen = self.gen
            self.live[seg.name] = seg

    def adopt(self, seg: _Seg) -> None:
        """Account a segment another process made (its size is already in memory)."""
        with self.lock:
            seg.shared = True
            try:
                self.make_room(seg.alloc, seg.size)
            except ObjectStoreFullError:
                self.used += seg.alloc  # it exists anyway: over the bound until freed
            self._add(seg)

    def touch(self, seg: _Seg) -> None:
        with self.lock:
            if seg.gen == self.gen and seg.name in self.live:
                self.live.move_to_end(seg.name)

    def make_room(self, alloc: int, size: int) -> None:
        """Reserve ``alloc`` bytes of the bound (added to ``used``), evicting pooled files and
        spilling LRU objects nobody reads; ``ObjectStoreFullError`` if that is not enough."""
        with self.lock:
            self._enter()
            try:
                if alloc > self.capacity:
                    raise ObjectStoreFullError(
                        f"An object of {_mb(size)} is larger than the whole object store "
                        f"(object_store_memory={_mb(self.capacity)}). Pass a larger "
                        "object_store_memory to init().")
                need = self.used + alloc - self.capacity
                if need > 0:
                    need -= self._evict_pool(need)
                if need > 0:
                    for seg in list(self.live.values()):
                        if need <= 0:
                            break
                        if self._spill(seg):
                            need -= seg.alloc
                if need > 0:
                    raise ObjectStoreFullError(
                        f"Object store is full: an object of {_mb(size)} does not fit in "
                        f"object_store_memory={_mb(self.capacity)}, which holds "
                        f"{_mb(self.in_memory())} in {len(self.live)} objects that are being "
                        "read (a live view, e.g. a numpy array from get) and cannot be spilled. "
                        "Drop refs and arrays you no longer need, or init(object_store_memory="
                        "...) with more.")
                self.used += alloc
            finally:
                self._leave()

    def _free_filesystem(self, alloc: int) -> bool:
        """After ENOSPC: spill until the filesystem has ``alloc`` bytes free; False if not."""
        with self.lock:
            self._enter()
            try:
                self._evict_pool(self.pooled)
                for seg in list(self.live.values()):
                    if _free_bytes(_DIR) >= alloc:
                        break
                    self._spill(seg)
                return _free_bytes(_DIR) >= alloc
            finally:
                self._leave()

    def _take_pooled(self, alloc: int) -> _Seg | None:
        with self.lock:
            segs = self.pool.get(alloc)
            if not segs:
                return None
            seg = segs.pop()
            self.pooled -= alloc
            name = _new_name(os.getpid())
            try:
                os.rename(_path(seg.name), _path(name))  # an object's name again
            except OSError:
                self.used -= alloc
                _unlink(_path(seg.name))
                seg.mapping = None
                return None
            seg.name = name
            return seg

    def _evict_pool(self, need: int) -> int:
        freed = 0
        for alloc, segs in list(self.pool.items()):
            while segs and freed < need:
                seg = segs.pop()
                seg.mapping = None
                _unlink(_path(seg.name))
                self.pooled -= alloc
                self.used -= alloc
                freed += alloc
        return freed

    def _spill(self, seg: _Seg) -> bool:
        if seg.spilled or (seg.mapping is not None and seg.mapping.exports):
            return False
        t = time.perf_counter()
        final = _spill_path(seg.name)
        tmp = final + ".tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            _make_spill_dir()
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        try:
            if seg.mapping is not None:
                _pwrite_all(fd, seg.mapping.raw(seg.size))
            else:
                _copy_file(_path(seg.name), fd, seg.size)
        except OSError:
            os.close(fd)
            _unlink(tmp)
            return False  # the disk is full too: keep it in memory
        os.close(fd)
        os.rename(tmp, final)
        _unlink(_path(seg.name))
        seg.mapping = None
        seg.spilled = True
        self.live.pop(seg.name, None)
        self.used -= seg.alloc
        self.stats["spilled_objects"] += 1
        self.stats["spilled_bytes"] += seg.size
        self.stats["spill_seconds"] += time.perf_counter() - t
        return True

    def restore(self, seg: _Seg) -> None:
        """Bring a spilled segment back into memory (the next ``get``); if it does not fit,
        leave it on disk (the caller maps the disk file)."""
        with self.lock:
            if not seg.spilled or seg.gen != self.gen:
                return
            try:
                self.make_room(seg.alloc, seg.size)
            except ObjectStoreFullError:
                return
            t = time.perf_counter()
            final = _path(seg.name)
            tmp = f"{final}.restoring"
            try:
                fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
                try:
                    _reserve(fd, seg.alloc)
                    _copy_file(_spill_path(seg.name), fd, seg.size)
                    mapping = _Mapping(fd, seg.alloc, writable=not seg.shared, populate=True)
                finally:
                    os.close(fd)
                os.rename(tmp, final)
            except OSError:
                _unlink(tmp)
                self.used -= seg.alloc
                return
            _unlink(_spill_path(seg.name))
            seg.mapping = mapping
            seg.spilled = False
            self.live[seg.name] = seg
            self.note_restore(seg.size, time.perf_counter() - t)

    def note_restore(self, size: int, seconds: float = 0.0) -> None:
        self.stats["restored_objects"] += 1
        self.stats["restored_bytes"] += size
        self.stats["restore_seconds"] += seconds

    def release(self, seg: _Seg) -> None:
        """The owner dropped the segment (finalizer: any thread)."""
        self._later(self._release, seg)

    def _later(self, fn: Callable[[_Seg], None], seg: _Seg) -> None:
        # Finalizers may run inside our own operation (the garbage collector): queue, and
        # apply once that operation is done.
        self._pending.append((fn, seg))
        if getattr(self._busy, "depth", 0):
            return
        with self.lock:
            self._enter()
            try:
                self._apply_pending()
            finally:
                self._leave()

    def _apply_pending(self) -> None:
        while self._pending:
            f, s = self._pending.popleft()
            f(s)

    def _enter(self) -> None:
        self._busy.depth = getattr(self._busy, "depth", 0) + 1

    def _leave(self) -> None:
        self._busy.depth -= 1
        if not self._busy.depth and self._pending:
            self._enter()
            try:
                self._apply_pending()
            finally:
                self._busy.depth -= 1

    def _release(self, seg: _Seg) -> None:
        current = seg.gen == self.gen and self.live.pop(seg.name, None) is not None
        if seg.spilled:
            _unlink(_spill_path(seg.name))
            return
        mapping = seg.mapping
        if (current and not seg.shared and mapping is not None and mapping.writable
                and self.pooled + seg.alloc <= self.capacity * POOL_FRACTION
                and self._rename_free(seg)):
            if mapping.exports:  # someone still reads it: decide when they are done
                mapping.when_idle(lambda: self._later(self._recycle, seg))
                return
            self.pool.setdefault(seg.alloc, []).append(seg)
            self.pooled += seg.alloc
            return
        _unlink(_path(seg.name))
        seg.mapping = None
        if current:
            if mapping is not None and mapping.exports:
                # Its pages stay in memory while arrays built on it live: still counted.
                mapping.when_idle(lambda: self._later(self._uncount, seg))
            else:
                self.used -= seg.alloc

    def _uncount(self, seg: _Seg) -> None:
        if seg.gen == self.gen:
            self.used -= seg.alloc

    @staticmethod
    def _rename_free(seg: _Seg) -> bool:
        """The object is gone; its file (free space now) gets a name of its own."""
        free = f"{segment_prefix(os.getpid())}{FREE}{secrets.token_hex(8)}"
        try:
            os.rename(_path(seg.name), _path(free))
        except OSError:
            return False
        seg.name = free
        return True

    def _recycle(self, seg: _Seg) -> None:
        if seg.gen == self.gen and seg.mapping is not None and not seg.shared:
            self.pool.setdefault(seg.alloc, []).append(seg)
            self.pooled += seg.alloc
        else:
            _unlink(_path(seg.name))
            seg.mapping = None
            if seg.gen == self.gen:
                self.used -= seg.alloc

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {"directory": _DIR, "spill_directory": _SPILL_DIR,
                    "directory_free_bytes": _free_bytes(_DIR),
                    "object_store_memory": self.capacity, "in_memory_bytes": self.in_memory(),
                    "objects_in_memory": len(self.live), "reusable_bytes": self.pooled,
                    **self.stats}


STORE = ObjectMemory()
_warned: set[str] = set()


def _make_spill_dir() -> None:
    """The per-user spill directory, 0700; refused (then a private one) if someone else owns
    it or it is not a plain directory."""
    global _SPILL_DIR
    try:
        os.mkdir(_SPILL_DIR, 0o700)
    except FileExistsError:
        st = os.lstat(_SPILL_DIR)
        if st.st_uid == _UID and stat.S_ISDIR(st.st_mode):
            return
        _SPILL_DIR = tempfile.mkdtemp(prefix=f"aioray-spill-{_UID}-")
    except FileNotFoundError:
        os.makedirs(_SPILL_DIR, 0o700, exist_ok=True)


def ram_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return 8 << 30


def configure(object_store_memory: int | None = None, temp_dir: str | None = None) -> None:
    """Choose the directories and size of the store (the driver's ``init``), like Ray: the
    segment directory is ``_temp_dir`` / ``$AIORAY_OBJECT_STORE_DIR`` if given, else
    ``/dev/shm`` unless it is missing or has less room than the store (then the system temp
    directory, on disk, with a warning once). Then sweep what killed drivers of this user
    left behind."""
    global _DIR, _SPILL_DIR
    if object_store_memory is not None and (
            isinstance(object_store_memory, bool) or not isinstance(object_store_memory, int)
            or object_store_memory <= 0):
        raise ValueError("object_store_memory must be a positive number of bytes, got "
                         f"{object_store_memory!r}.")
    capacity = object_store_memory or int(ram_bytes() * RAM_FRACTION)
    override = temp_dir or os.environ.get(ENV_DIR)
    if override:
        os.makedirs(override, exist_ok=True)
        _DIR = override
    elif os.path.isdir("/dev/shm") and _free_bytes("/dev/shm") >= capacity:
        _DIR = "/dev/shm"
    else:
        _DIR = tempfile.gettempdir()
        why = ("is missing" if not os.path.isdir("/dev/shm") else
               f"has only {_mb(_free_bytes('/dev/shm'))} free")
        msg = (f"aioray: /dev/shm {why}, less than the object store's {_mb(capacity)} "
               f"(object_store_memory): large objects go to {_DIR} instead, on disk, which is "
               "slower. Give the container more shared memory (docker run --shm-size=...), "
               f"pass a smaller object_store_memory, or choose a directory with "
               f"init(_temp_dir=...) / {ENV_DIR}.")
        if msg not in _warned:
            _warned.add(msg)
            warnings.warn(msg, stacklevel=4)
    _SPILL_DIR = os.environ.get(ENV_SPILL_DIR) or _default_spill_dir()
    _make_spill_dir()
    os.environ[_ENV_DIR_IN_USE] = _DIR
    os.environ[_ENV_SPILL_IN_USE] = _SPILL_DIR
    STORE.reset(capacity)
    sweep_dead_drivers()


def describe() -> dict[str, Any]:
    return STORE.describe()


def sweep(driver_pid: int) -> int:
    """Unlink every segment and spill file of this driver (shutdown); returns how many."""
    if driver_pid == os.getpid():
        STORE.reset(STORE.capacity, active=False)
    n = 0
    for d in {_DIR, _SPILL_DIR}:
        for path in glob.glob(os.path.join(d, segment_prefix(driver_pid) + "*")):
            try:
                os.unlink(path)
                n += 1
            except FileNotFoundError:
                pass
    return n


def sweep_dead_drivers() -> int:
    """Unlink segments of drivers of this user that no longer run (killed with SIGKILL:
    nothing of theirs could clean up). Called at init; a pid that is alive (even reused) is
    left alone, and so is every file another user owns."""
    n = 0
    for d in {_DIR, _SPILL_DIR}:
        for path in glob.glob(os.path.join(d, PREFIX + "*")):
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
                st = os.lstat(path)
                if st.st_uid != _UID or not stat.S_ISREG(st.st_mode):
                    continue
                os.unlink(path)
                n += 1
            except OSError:
                pass
    return n


def list_segments(driver_pid: int | None = None) -> list[str]:
    """The segments of objects (of one driver): files kept warm for reuse are not listed."""
    pattern = segment_prefix(driver_pid) + "*" if driver_pid else PREFIX + "*"
    return sorted(name for name in (os.path.basename(p)
                                    for p in glob.glob(os.path.join(_DIR, pattern)))
                  if not name.split("-", 2)[-1].startswith(FREE))
