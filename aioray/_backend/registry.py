"""Which backend serves the public API in this process, and starting one.

Three implementations stand behind :class:`~aioray._backend.base.Backend`: the embedded engine
(``aioray._engine.runtime``), the worker-process side (``aioray._worker.backend``, installed by
a worker at start) and the Ray adapter (``aioray._ray.backend``). They are loaded here *by module
name*, so no face or handle imports an implementation and imports point down.

Precedence, as before the seam existed: a Ray backend in use > the open embedded runtime > the
worker side > start one implicitly on first use (Ray when ``AIORAY_BACKEND=ray`` or inside a Ray
worker, else embedded), as Ray starts itself on the first ``.remote()``.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
import warnings
from typing import Any

from aioray._backend.base import Backend

ENGINE = "aioray._engine.runtime"
RAY = "aioray._ray.backend"

lock = threading.RLock()
_embedded: Backend | None = None
_worker: Backend | None = None
_ray: Backend | None = None

# init(address=...) values that select the Ray backend.
RAY_ADDRESSES = ("auto", "local-ray")


def current() -> Backend:
    """The backend to forward an API call to, starting one implicitly as Ray does."""
    rb = _ray
    if rb is not None:
        return rb
    rt = _embedded
    if rt is not None and not rt.is_stale():
        return rt
    if _worker is not None:
        return _worker
    with lock:
        rt = _embedded
        if rt is not None and not rt.is_stale():
            return rt
        if rt is not None:  # the loop it adopted has closed (an asyncio.run() or a test ended)
            _shutdown_embedded()
        rb = ray_backend(start=True)
        if rb is not None:
            return rb
        return start_embedded()


def installed() -> Backend | None:
    """The backend in use, if any — never starts one (for calls that make no sense without);
    inside a Ray worker, the Ray backend it attaches to."""
    if _ray is not None:
        return _ray
    if _embedded is not None and not _embedded.is_stale():
        return _embedded
    if _worker is not None:
        return _worker
    return ray_backend()


def embedded() -> Backend | None:
    """The embedded runtime of this process, while it is open."""
    rt = _embedded
    return rt if rt is not None and not rt.is_stale() else None


def is_initialized() -> bool:
    return embedded() is not None or _worker is not None or _ray is not None


def wants_ray(address: str | None) -> bool:
    """Whether ``init(address)`` (or the environment, when ``address`` is None) picks Ray."""
    if address is None:
        kind = os.environ.get("AIORAY_BACKEND", "").strip().lower()
        if kind in ("", "embedded", "aioray", "local"):
            return False
        if kind == "ray":
            return True
        raise ValueError(f"AIORAY_BACKEND={kind!r} is not a backend; use 'ray' or leave it "
                         "unset for the embedded runtime.")
    return address in RAY_ADDRESSES or address.startswith("ray://")


def runtime_env_supported() -> bool:
    """``runtime_env`` is Ray's: accepted when the Ray backend is (or will be) in use."""
    return _ray is not None or wants_ray(None)


def start_embedded(**options: Any) -> Backend:
    """Create the embedded runtime with ``options`` (``init``'s arguments)."""
    global _embedded
    with lock:
        if _embedded is not None:
            _shutdown_embedded()
        _embedded = importlib.import_module(ENGINE).start(**options)
        return _embedded


def start_ray(address: str | None, **options: Any) -> Backend:
    global _ray
    with lock:
        _ray = importlib.import_module(RAY).connect(address, **options)
        return _ray


def ray_backend(start: bool = False) -> Backend | None:
    """The Ray backend if one is in use: set by ``init``, found inside a Ray worker, or (with
    ``start``) started because ``AIORAY_BACKEND=ray``. None when aioray runs embedded."""
    global _ray
    if _ray is not None:
        return _ray
    if "ray" not in sys.modules and not (start and os.environ.get("AIORAY_BACKEND")):
        return None
    ray_mod = importlib.import_module(RAY)
    with lock:
        if _ray is None:
            _ray = ray_mod.attach_worker()
        if _ray is None and start and wants_ray(None):
            _ray = ray_mod.connect(None)
        return _ray


def install_worker(backend: Backend) -> None:
    """A worker process serves the API through the driver from now on."""
    global _worker
    _worker = backend


def _shutdown_embedded() -> None:
    global _embedded
    rt, _embedded = _embedded, None
    if rt is not None:
        rt.shutdown()


def shutdown() -> None:
    global _ray
    with lock:
        _shutdown_embedded()
        rb, _ray = _ray, None
        if rb is not None:
            rb.shutdown()


def _atexit() -> None:
    try:
        shutdown()
    except Exception as e:  # never let cleanup mask the program's own exit status
        warnings.warn(f"aioray cleanup at exit failed: {e!r}", stacklevel=1)


atexit.register(_atexit)
