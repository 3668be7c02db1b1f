"""Objects: put/get/wait, refs, immutability, numpy and shared memory, freeing."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import aioray
from aioray._objects import shm as _shared_memory
from aioray._objects.store import STORE
from aioray.exceptions import GetTimeoutError

np = pytest.importorskip("numpy")


def _eventually(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``cond`` (collecting garbage) until true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gc.collect()
        if cond():
            return True
        time.sleep(0.02)
    return False


def _segments() -> list[str]:
    rt = aioray._engine.runtime.current_runtime()
    return _shared_memory.list_segments(rt.driver_pid)


@aioray.remote
def identity(x: Any) -> Any:
    return x


# -- put / get ---------------------------------------------------------------------------------
@pytest.mark.all_backends
@pytest.mark.parametrize("value", [
    1, 2.5, "text", b"bytes", None, True, (1, "a"), [1, [2, 3]], {"k": ["v"]}, {1, 2},
    range(3), complex(1, 2),
])
def test_put_get_roundtrip(ray: Any, value: Any) -> None:
    assert aioray.get(aioray.put(value)) == value


@pytest.mark.all_backends
def test_get_list_keeps_order(ray: Any) -> None:
    refs = [aioray.put(i) for i in range(10)]
    assert aioray.get(refs) == list(range(10))
    assert aioray.get(list(reversed(refs))) == list(reversed(range(10)))
    assert aioray.get([]) == []


@pytest.mark.all_backends
def test_put_is_an_immutable_copy(ray: Any) -> None:
    value = {"a": [1, 2]}
    ref = aioray.put(value)
    value["a"].append(3)
    value["b"] = 1
    got = aioray.get(ref)
    assert got == {"a": [1, 2]}
    got["a"].append(4)  # mutating what get returned changes nothing stored either
    assert aioray.get(ref) == {"a": [1, 2]}


@pytest.mark.all_backends
def test_put_custom_object(ray: Any) -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

    p = aioray.get(aioray.put(Point(1, 2)))
    assert (p.x, p.y) == (1, 2)


@pytest.mark.all_backends
def test_put_of_ref_rejected_but_container_of_ref_ok(ray: Any) -> None:
    inner = aioray.put(5)
    with pytest.raises(TypeError, match="put"):
        aioray.put(inner)
    outer = aioray.put([inner])
    del inner
    gc.collect()
    (ref,) = aioray.get(outer)
    assert aioray.get(ref) == 5  # the container keeps the inner object alive


def test_get_timeout_zero_and_ready(ray: Any) -> None:
    gate = threading.Event()

    @aioray.remote(executor="thread")
    def blocked() -> int:
        gate.wait(30)
        return 1

    ref = blocked.remote()
    with pytest.raises(GetTimeoutError):
        aioray.get(ref, timeout=0)
    with pytest.raises(GetTimeoutError):
        aioray.get([aioray.put(1), ref], timeout=0.05)
    gate.set()
    assert aioray.get(ref, timeout=30) == 1
    assert aioray.get(ref, timeout=0) == 1


# -- refs ---------------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_object_ref_identity(ray: Any) -> None:
    a = aioray.put(1)
    b = aioray.put(1)
    assert a != b and hash(a) != hash(b)
    assert len(a.binary()) == 28 and len(a.hex()) == 56
    assert a.hex() == a.binary().hex()
    assert {a: 1}[a] == 1
    assert a in {a, b}
    assert "ObjectRef(" in repr(a)
    refs = identity.options(num_returns=1).remote(1), identity.remote(2)
    assert refs[0].task_id() != refs[1].task_id()


@pytest.mark.all_backends
def test_multiple_returns_share_a_task_id(ray: Any) -> None:
    @aioray.remote(num_returns=2)
    def two() -> tuple[int, int]:
        return 1, 2

    x, y = two.remote()
    assert x.task_id() == y.task_id() and x != y


@pytest.mark.all_backends
def test_ref_survives_pickling_in_driver(ray: Any) -> None:
    import pickle

    ref = aioray.put("kept")
    copy = pickle.loads(pickle.dumps(ref))
    assert copy == ref and aioray.get(copy) == "kept"


@pytest.mark.all_backends
def test_ref_not_iterable(ray: Any) -> None:
    with pytest.raises(TypeError, match="num_returns"):
        _a, _b = identity.remote(1)


# -- wait -----------------------------------------------------------------------------------------
def test_wait_semantics(ray: Any) -> None:
    gate = threading.Event()

    @aioray.remote(executor="thread")
    def slow(i: int) -> int:
        gate.wait(30)
        return i

    done = [aioray.put(i) for i in range(3)]
    pending = [slow.remote(i) for i in range(2)]
    refs = [pending[0], done[0], pending[1], done[1], done[2]]
    ready, rest = aioray.wait(refs, num_returns=2)
    assert ready == [done[0], done[1]]  # input order kept
    assert rest == [pending[0], pending[1], done[2]]
    ready, rest = aioray.wait(refs, num_returns=5, timeout=0)  # polls
    assert ready == done and rest == pending
    ready, rest = aioray.wait(refs, num_returns=4, timeout=0.05)
    assert len(ready) == 3
    ready, rest = aioray.wait(refs, num_returns=5, timeout=0.05, fetch_local=False)
    assert len(ready) == 3 and len(rest) == 2
    gate.set()
    ready, rest = aioray.wait(refs, num_returns=5, timeout=30)
    assert ready == refs and rest == []


def test_wait_default_returns_first_ready(ray: Any) -> None:
    release = threading.Event()

    @aioray.remote(executor="thread")
    def gated(i: int) -> int:
        if i:
            release.wait(30)
        return i

    refs = [gated.remote(1), gated.remote(0)]
    ready, rest = aioray.wait(refs)
    assert ready == [refs[1]] and rest == [refs[0]]
    release.set()


@pytest.mark.all_backends
def test_wait_counts_errors_as_ready(ray: Any) -> None:
    @aioray.remote
    def boom() -> None:
        raise ValueError("x")

    ref = boom.remote()
    ready, _ = aioray.wait([ref], timeout=30)
    assert ready == [ref]
    with pytest.raises(ValueError):
        aioray.get(ref)


# -- numpy and shared memory --------------------------------------------------------------------
@pytest.mark.all_backends
def test_numpy_arrays_from_get_are_read_only(ray: Any) -> None:
    for n in (10, 1 << 18):  # inline buffer and shared-memory buffer
        src = np.arange(n, dtype=np.float64)
        out = aioray.get(aioray.put(src))
        assert np.array_equal(out, src)
        assert not out.flags.writeable
        with pytest.raises(ValueError):
            out[0] = 1.0
        src[0] = 42.0  # the stored object is a copy
        assert aioray.get(aioray.put(np.zeros(1)))[0] == 0.0


@pytest.mark.all_backends
def test_large_array_get_is_not_copied(ray: Any) -> None:
    ref = aioray.put(np.ones(1 << 20))  # 8 MiB
    a = aioray.get(ref)
    b = aioray.get(ref)
    assert np.shares_memory(a, b)


@pytest.mark.all_backends
def test_small_array_put_mutation_isolated(ray: Any) -> None:
    src = np.zeros(4)
    ref = aioray.put(src)
    src += 1
    assert aioray.get(ref).sum() == 0


def test_large_array_uses_shared_memory_freed_with_last_ref(ray: Any) -> None:
    before = set(_segments())
    ref = aioray.put(np.ones(1 << 18))
    new = set(_segments()) - before
    assert len(new) == 1
    arr = aioray.get(ref)
    del ref
    assert _eventually(lambda: not (set(_segments()) & new))
    assert arr.sum() == float(1 << 18)  # mappings handed out stay valid after the unlink


@pytest.mark.all_backends
def test_large_array_in_container_and_result(ray: Any) -> None:
    @aioray.remote
    def pack(a: Any) -> dict[str, Any]:
        return {"a": a, "b": a[:10].copy()}

    big = np.arange(1 << 18, dtype=np.int64)
    out = aioray.get(pack.remote(big))
    assert np.array_equal(out["a"], big) and list(out["b"]) == list(range(10))
    assert not out["a"].flags.writeable


def test_shared_memory_swept_at_shutdown(ray: Any) -> None:
    rt = aioray._engine.runtime.current_runtime()
    keep = aioray.put(np.ones(1 << 18))
    assert _shared_memory.list_segments(rt.driver_pid)
    aioray.shutdown()
    assert _shared_memory.list_segments(rt.driver_pid) == []
    del keep


def test_large_result_stays_readable_after_shutdown() -> None:
    # A worker-made result in shared memory is mapped when it arrives, so shutdown's sweep of
    # /dev/shm does not take a finished task's value away.
    aioray.init(num_cpus=1)

    @aioray.remote
    def make() -> Any:
        return np.ones(1 << 18)

    ref = make.remote()
    aioray.wait([ref], timeout=60)
    aioray.shutdown()
    assert float(aioray.get(ref).sum()) == float(1 << 18)


# -- freeing --------------------------------------------------------------------------------------
def test_put_entry_freed_with_last_ref(ray: Any) -> None:
    ref = aioray.put([1, 2, 3])
    w = weakref.ref(ref._entry)
    copy = ref
    del ref
    gc.collect()
    assert w() is not None  # another ref still holds it
    del copy
    gc.collect()
    assert w() is None


def test_task_result_freed_after_get_and_drop(ray: Any) -> None:
    ref = identity.remote([1] * 100)
    assert aioray.get(ref)[0] == 1
    w = weakref.ref(ref._entry)
    del ref
    assert _eventually(lambda: w() is None)


def test_ref_passed_to_process_task_freed_after(ray: Any) -> None:
    @aioray.remote
    def first(xs: list[Any]) -> int:
        return int(aioray.get(xs[0]).sum())

    ref = aioray.put(np.ones(1 << 18))
    hexid = ref.binary()
    w = weakref.ref(ref._entry)
    assert aioray.get(first.remote([ref])) == 1 << 18  # nested: the worker borrows the ref
    assert STORE.lookup(hexid) is not None
    del ref
    # The idle worker releases its borrow without needing another message from us.
    assert _eventually(lambda: w() is None and STORE.lookup(hexid) is None)


def test_dependency_freed_after_dependent_task(ray: Any) -> None:
    dep = aioray.put(np.ones(1 << 18))
    w = weakref.ref(dep._entry)
    out = identity.remote(dep)
    del dep
    assert aioray.get(out).shape == (1 << 18,)
    del out
    assert _eventually(lambda: w() is None)


def test_put_get_loop_holds_flat_memory(ray: Any) -> None:
    payload = bytearray(10_000)  # mutable: stored as a 10 kB serialized copy
    live: weakref.WeakSet[Any] = weakref.WeakSet()

    def round_trip(n: int) -> None:
        for _ in range(n):
            ref = aioray.put(payload)
            live.add(ref._entry)
            assert len(aioray.get(ref)) == 10_000

    round_trip(50)  # warm up caches
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        round_trip(300)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(live) == 0  # every entry was freed
    # 300 retained copies would be 3 MB; allow small noise only.
    assert after - base < 500_000


def test_large_put_get_loop_leaves_no_segments(ray: Any) -> None:
    before = set(_segments())
    arr = np.ones(1 << 18)
    for _ in range(30):
        assert aioray.get(aioray.put(arr))[0] == 1.0
    assert _eventually(lambda: set(_segments()) <= before)


def test_large_array_ref_shared_by_process_tasks_without_copies(ray: Any) -> None:
    @aioray.remote
    def address(a: Any) -> tuple[float, bool]:
        return float(a[-1]), bool(a.flags.writeable)

    x_id = aioray.put(np.arange(1 << 18, dtype=np.float64))
    before = set(_segments())
    out = aioray.get([address.remote(x_id) for _ in range(5)], timeout=60)
    assert out == [(float((1 << 18) - 1), False)] * 5
    assert set(_segments()) == before  # every task mapped the one stored copy


@aioray.remote
def _fails_after(signal: Any) -> None:
    aioray.get(signal.wait.remote())
    raise KeyError("late")


@pytest.mark.all_backends
def test_on_completed_callback(ray: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Ray's private ``ref._on_completed(cb)`` (its libraries and tests use it): ``cb(value)``
    or ``cb(error)`` once ready, called once, then released; its errors are logged."""
    from aioray.testing import SignalActor, wait_for_condition
    got: list[Any] = []
    aioray.put(7)._on_completed(got.append)
    wait_for_condition(lambda: got == [7], timeout=30)

    signal = SignalActor.remote()
    ref = _fails_after.remote(signal)

    class Callback:
        def __call__(self, result: Any) -> None:
            got.append(result)

    cb = Callback()
    ref._on_completed(cb)
    alive = weakref.ref(cb)
    del cb
    assert len(got) == 1  # not before the task ends
    aioray.get(signal.send.remote())
    wait_for_condition(lambda: len(got) == 2, timeout=30)
    assert isinstance(got[1], aioray.exceptions.RayTaskError) and isinstance(got[1], KeyError)
    wait_for_condition(lambda: alive() is None, timeout=30)  # released once it ran

    def boom(_: Any) -> None:
        got.append("boom")
        raise RuntimeError("callback failed")
    aioray.put(1)._on_completed(boom)
    wait_for_condition(lambda: "callback failed" in caplog.text, timeout=30)
    assert got[-1] == "boom"
