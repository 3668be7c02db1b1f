"""Errors: task errors (dual class, traceback, chaining), timeouts, unretrieved errors, and
clear errors for bad input."""

from __future__ import annotations

import gc
import pickle
import threading
import time
from typing import Any

import pytest

import aioray
from aioray import exceptions
from aioray.exceptions import (
    GetTimeoutError,
    RayError,
    RaySystemError,
    RayTaskError,
    TaskUnschedulableError,
)


@aioray.remote
def fail(msg: str = "boom") -> None:
    raise ValueError(msg)


@aioray.remote
async def async_fail() -> None:
    raise KeyError("akey")


@aioray.remote
def identity(x: Any) -> Any:
    return x


class CodeError(Exception):
    """An exception whose __init__ signature differs from its args (breaks plain pickle)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}")
        self.code = code
        self.detail = detail


# -- RayTaskError --------------------------------------------------------------------------------
@pytest.mark.all_backends
@pytest.mark.parametrize("executor", ["process", "thread"])
def test_task_error_is_dual_class(ray: Any, executor: str) -> None:
    with pytest.raises(ValueError, match="boom") as ei:
        aioray.get(fail.options(executor=executor).remote())
    err = ei.value
    assert isinstance(err, RayTaskError) and isinstance(err, RayError)
    assert isinstance(err.cause, ValueError) and str(err.cause) == "boom"
    assert err.function_name.endswith("fail")
    assert 'raise ValueError(msg)' in err.traceback_str  # the remote traceback
    assert "boom" in str(err)
    assert type(err).__name__ == "RayTaskError(ValueError)"


def test_process_task_error_carries_worker_pid(ray: Any) -> None:
    import os

    with pytest.raises(RayTaskError) as ei:
        aioray.get(fail.remote())
    assert ei.value.pid is not None and ei.value.pid != os.getpid()
    assert f"pid={ei.value.pid}" in str(ei.value)


@pytest.mark.all_backends
def test_async_task_error(ray: Any) -> None:
    with pytest.raises(KeyError) as ei:
        aioray.get(async_fail.remote())
    assert isinstance(ei.value, RayTaskError)
    assert "akey" in ei.value.traceback_str


@pytest.mark.all_backends
def test_task_error_pickles(ray: Any) -> None:
    with pytest.raises(RayTaskError) as ei:
        aioray.get(fail.remote("again"))
    copy = pickle.loads(pickle.dumps(ei.value))
    assert isinstance(copy, ValueError) and isinstance(copy, RayTaskError)
    assert copy.traceback_str == ei.value.traceback_str


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_exception_with_custom_init_survives(ray: Any, executor: str) -> None:
    # Ray turns these into a system error ("failed to unpickle serialized exception").
    @aioray.remote
    def raise_code() -> None:
        raise CodeError(404, "not found")

    with pytest.raises(CodeError) as ei:
        aioray.get(raise_code.options(executor=executor).remote())
    assert ei.value.code == 404 and ei.value.detail == "not found"
    assert isinstance(ei.value.cause, CodeError)
    copy = pickle.loads(pickle.dumps(ei.value))
    assert isinstance(copy, CodeError) and copy.cause.detail == "not found"


@pytest.mark.all_backends
def test_exception_with_custom_init_through_nested_tasks(ray: Any) -> None:
    @aioray.remote
    def raise_code() -> None:
        raise CodeError(500, "inner")

    @aioray.remote
    def outer() -> None:
        aioray.get(raise_code.remote())

    with pytest.raises(CodeError) as ei:
        aioray.get(outer.remote(), timeout=60)
    assert ei.value.code == 500 and ei.value.cause.cause.detail == "inner"


@pytest.mark.all_backends
def test_locally_defined_exception_class(ray: Any) -> None:
    class LocalError(Exception):
        pass

    @aioray.remote
    def raise_local() -> None:
        raise LocalError("local")

    with pytest.raises(RayTaskError) as ei:
        aioray.get(raise_local.remote())
    assert type(ei.value.cause).__name__ == "LocalError"


@pytest.mark.all_backends
def test_unpicklable_exception_still_reported(ray: Any) -> None:
    @aioray.remote
    def raise_unpicklable() -> None:
        err = ValueError("holds a lock")
        err.lock = threading.Lock()  # type: ignore[attr-defined]
        raise err

    with pytest.raises(RayTaskError) as ei:
        aioray.get(raise_unpicklable.remote())
    assert "holds a lock" in str(ei.value)


def test_error_chains_through_dependent_tasks(ray: Any) -> None:
    ref = identity.remote(identity.remote(fail.remote("root cause")))
    with pytest.raises(ValueError, match="root cause") as ei:
        aioray.get(ref)
    assert ei.value.function_name.endswith("fail")  # the task that really failed


@pytest.mark.all_backends
def test_error_chains_through_async_and_kwargs(ray: Any) -> None:
    @aioray.remote
    async def use(x: Any = None) -> Any:
        return x

    with pytest.raises(KeyError):
        aioray.get(use.remote(x=async_fail.remote()))


@pytest.mark.all_backends
@pytest.mark.parametrize("executor", ["process", "thread", "async"])
def test_nested_get_error_keeps_user_class(ray: Any, executor: str) -> None:
    if executor == "async":
        @aioray.remote
        async def outer() -> Any:
            return await fail.remote("deep")
        ref = outer.remote()
    else:
        @aioray.remote
        def outer_sync() -> Any:
            return aioray.get(fail.remote("deep"))
        ref = outer_sync.options(executor=executor).remote()
    with pytest.raises(ValueError, match="deep") as ei:
        aioray.get(ref)
    assert isinstance(ei.value, RayTaskError)
    assert isinstance(ei.value.cause, RayTaskError)  # the chain is kept


@pytest.mark.all_backends
def test_error_in_one_of_several_refs(ray: Any) -> None:
    with pytest.raises(ValueError):
        aioray.get([identity.remote(1), fail.remote()])


@pytest.mark.all_backends
def test_catching_error_inside_task(ray: Any) -> None:
    @aioray.remote
    def handler() -> str:
        try:
            aioray.get(fail.remote("handled"))
        except ValueError as e:
            return f"caught {e.cause}"
        return "no"

    assert aioray.get(handler.remote()) == "caught handled"


# -- GetTimeoutError ----------------------------------------------------------------------------
def test_get_timeout_error_is_timeout_error(ray: Any) -> None:
    gate = threading.Event()

    @aioray.remote(executor="thread")
    def blocked() -> None:
        gate.wait(30)

    ref = blocked.remote()
    with pytest.raises(TimeoutError) as ei:
        aioray.get(ref, timeout=0.05)
    assert isinstance(ei.value, GetTimeoutError) and isinstance(ei.value, RayError)
    gate.set()
    aioray.get(ref, timeout=30)


@pytest.mark.all_backends
def test_exception_names_exist() -> None:
    for name in ("RayError", "RayTaskError", "GetTimeoutError", "TaskCancelledError",
                 "WorkerCrashedError", "RayActorError", "ActorDiedError", "ObjectLostError",
                 "TaskUnschedulableError", "RaySystemError", "OwnerDiedError"):
        cls = getattr(exceptions, name)
        assert issubclass(cls, RayError), name
    assert issubclass(exceptions.ActorDiedError, exceptions.RayActorError)
    assert issubclass(exceptions.WorkerCrashedError, RaySystemError)


@pytest.mark.all_backends
@pytest.mark.parametrize("err", [
    exceptions.TaskCancelledError("ab12"), exceptions.WorkerCrashedError("died", -9, 2),
    exceptions.ObjectLostError("ff"), exceptions.GetTimeoutError("slow"),
    exceptions.ActorDiedError("gone", ValueError("x"), "id"), TaskUnschedulableError("never"),
])
def test_errors_pickle(err: Exception) -> None:
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err) and str(copy) == str(err)


# -- unretrieved errors -------------------------------------------------------------------------
def _wait_ready(ref: Any) -> None:
    ready, _ = aioray.wait([ref], timeout=30)
    assert ready == [ref]


def test_unretrieved_error_reported_when_ref_dropped(ray: Any, monkeypatch: Any,
                                                     capsys: Any) -> None:
    monkeypatch.delenv("AIORAY_SILENCE_UNRETRIEVED_ERRORS", raising=False)
    ref = fail.remote("nobody looked")
    _wait_ready(ref)
    capsys.readouterr()
    del ref
    # wait() returns once the entry resolves; the loop thread may still be finishing the task
    # (holding its outputs) for a moment, so the report can come a little later.
    err = ""
    deadline = time.monotonic() + 30
    while "nobody looked" not in err and time.monotonic() < deadline:
        gc.collect()
        err += capsys.readouterr().err
        time.sleep(0.02)
    assert "nobody looked" in err
    assert "never retrieved" in err
    assert "raise ValueError(msg)" in err  # with its traceback


def test_retrieved_error_not_reported(ray: Any, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.delenv("AIORAY_SILENCE_UNRETRIEVED_ERRORS", raising=False)
    ref = fail.remote("looked at")
    with pytest.raises(ValueError):
        aioray.get(ref)
    capsys.readouterr()
    del ref
    gc.collect()
    assert "looked at" not in capsys.readouterr().err


def test_chained_error_reported_once(ray: Any, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.delenv("AIORAY_SILENCE_UNRETRIEVED_ERRORS", raising=False)
    ref = identity.remote(identity.remote(fail.remote("chained")))
    _wait_ready(ref)
    del ref
    err = ""
    deadline = time.monotonic() + 10
    while "never retrieved" not in err and time.monotonic() < deadline:
        gc.collect()
        err += capsys.readouterr().err
        time.sleep(0.02)
    # The intermediate refs died too (their tasks are done); they passed the error on, so
    # only the last one, which nobody read, is reported.
    gc.collect()
    err += capsys.readouterr().err
    assert err.count("never retrieved") == 1


def test_silenced_by_env(ray: Any, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setenv("AIORAY_SILENCE_UNRETRIEVED_ERRORS", "1")
    ref = fail.remote("quiet")
    _wait_ready(ref)
    capsys.readouterr()
    del ref
    gc.collect()
    assert "quiet" not in capsys.readouterr().err


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.all_backends
def test_get_non_ref(ray: Any) -> None:
    with pytest.raises(TypeError, match="ObjectRef"):
        aioray.get(1)
    with pytest.raises(TypeError, match="item 1"):
        aioray.get([aioray.put(1), "x"])
    with pytest.raises(TypeError, match="ObjectRef"):
        aioray.get({"a": aioray.put(1)})


@pytest.mark.all_backends
def test_get_python_generator(ray: Any) -> None:
    with pytest.raises(TypeError, match="generator"):
        aioray.get(identity.remote(i) for i in range(2))


@pytest.mark.all_backends
def test_get_object_ref_generator(ray: Any) -> None:
    @aioray.remote
    def gen() -> Any:
        yield 1

    g = gen.remote()
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        aioray.get(g)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        aioray.get([g])
    assert [aioray.get(r) for r in g] == [1]


def test_unpicklable_argument_names_it(ray: Any) -> None:
    lock = threading.Lock()

    @aioray.remote
    def two(a: Any, b: Any) -> None:
        return None

    with pytest.raises(TypeError, match=r"argument 1 \(lock\) of .*two"):
        two.remote(1, lock)
    with pytest.raises(TypeError, match="keyword argument 'b'"):
        two.remote(1, b=lock)
    @aioray.remote
    async def one(a: Any) -> None:
        return None

    with pytest.raises(TypeError, match="argument 0"):  # async tasks copy arguments too
        one.remote(lock)


def test_unpicklable_argument_of_named_function(ray: Any) -> None:
    with pytest.raises(TypeError, match=r"argument 0 \(lock\) of identity"):
        identity.remote(threading.Lock())


@pytest.mark.all_backends
def test_wrong_option_name_lists_valid_options(ray: Any) -> None:
    with pytest.raises(ValueError, match="num_cpu") as ei:
        aioray.remote(num_cpu=1)(lambda: None)
    assert "num_cpus" in str(ei.value) and "max_retries" in str(ei.value)
    with pytest.raises(ValueError, match="Valid options"):
        identity.options(retries=2)


@pytest.mark.all_backends
@pytest.mark.parametrize("opts, exc", [
    ({"num_cpus": "two"}, ValueError), ({"num_cpus": -1}, ValueError),
    ({"num_gpus": True}, ValueError), ({"resources": ["a"]}, TypeError),
    ({"resources": {"CPU": 1}}, ValueError), ({"max_retries": 1.5}, ValueError),
    ({"retry_exceptions": "yes"}, TypeError), ({"num_returns": -1}, ValueError),
    ({"num_returns": 1.0}, ValueError), ({"executor": "gpu"}, ValueError),
    ({"name": 3}, TypeError),
])
def test_wrong_option_types(opts: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        identity.options(**opts)


@pytest.mark.all_backends
def test_remote_with_positional_and_options() -> None:
    with pytest.raises(TypeError):
        aioray.remote(lambda: None, num_cpus=1)


def test_num_returns_mismatch(ray: Any) -> None:
    @aioray.remote(num_returns=2)
    def three() -> tuple[int, int, int]:
        return 1, 2, 3

    @aioray.remote(num_returns=2)
    def scalar() -> int:
        return 1

    @aioray.remote(num_returns=0)
    def something() -> int:
        return 1

    for fn in (three, scalar):
        for executor in ("process", "thread"):
            a, b = fn.options(executor=executor).remote()
            with pytest.raises(ValueError, match="num_returns=2"):
                aioray.get(b)
            with pytest.raises(ValueError, match="num_returns=2"):
                aioray.get(a)
    assert something.remote() is None


@pytest.mark.all_backends
def test_num_returns_streaming_on_plain_function(ray: Any) -> None:
    with pytest.raises(ValueError, match="identity is not a generator function"):
        identity.options(num_returns="streaming")


@pytest.mark.all_backends
def test_negative_timeout(ray: Any) -> None:
    ref = aioray.put(1)
    with pytest.raises(ValueError, match="timeout"):
        aioray.get(ref, timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        aioray.wait([ref], timeout=-0.5)


@pytest.mark.all_backends
def test_wait_duplicates_rejected(ray: Any) -> None:
    ref = aioray.put(1)
    with pytest.raises(ValueError, match="more than once"):
        aioray.wait([ref, ref])


@pytest.mark.all_backends
def test_wait_num_returns_too_large(ray: Any) -> None:
    refs = [aioray.put(1), aioray.put(2)]
    with pytest.raises(ValueError, match="num_returns"):
        aioray.wait(refs, num_returns=3)


@pytest.mark.all_backends
def test_wait_bad_arguments(ray: Any) -> None:
    ref = aioray.put(1)
    with pytest.raises(TypeError, match="list"):
        aioray.wait(ref)
    with pytest.raises(TypeError, match="item 1"):
        aioray.wait([ref, 2])
    with pytest.raises(ValueError, match="num_returns"):
        aioray.wait([ref], num_returns=-1)


@pytest.mark.all_backends
def test_wait_empty_list_and_num_returns_zero(ray: Any) -> None:
    assert aioray.wait([]) == ([], [])  # as in Ray
    assert aioray.wait([], num_returns=3, timeout=0) == ([], [])
    with pytest.raises(ValueError, match="num_returns"):
        aioray.wait([aioray.put(1)], num_returns=0)


@pytest.mark.all_backends
async def test_wait_async_empty_list(aray: Any) -> None:
    assert await aioray.wait_async([]) == ([], [])


@aioray.remote
def _bad_calls_in_worker() -> dict[str, str]:
    """Each bad call made from inside a worker process: the error it raised (none may hang)."""
    r = aioray.put(1)
    calls = {
        "dup": lambda: aioray.wait([r, r]),
        "too_many": lambda: aioray.wait([r], num_returns=2),
        "zero": lambda: aioray.wait([r], num_returns=0),
        "single": lambda: aioray.wait(r),
        "neg_get": lambda: aioray.get(r, timeout=-1),
        "neg_wait": lambda: aioray.wait([r], timeout=-1),
        "non_ref": lambda: aioray.get(5),
        "non_ref_item": lambda: aioray.get([r, 5]),
        "empty": lambda: aioray.wait([]),
    }
    out = {}
    for name, call in calls.items():
        try:
            out[name] = f"ok {call()!r}"
        except Exception as e:
            out[name] = f"{type(e).__name__}: {e}"
    return out


@pytest.mark.all_backends
def test_bad_input_from_inside_worker_process(ray: Any) -> None:
    out = aioray.get(_bad_calls_in_worker.remote(), timeout=60)
    assert out["dup"].startswith("ValueError") and "more than once" in out["dup"]
    assert out["too_many"].startswith("ValueError") and "num_returns" in out["too_many"]
    assert out["zero"].startswith("ValueError")
    assert out["single"].startswith("TypeError")
    assert out["neg_get"].startswith("ValueError") and "timeout" in out["neg_get"]
    assert out["neg_wait"].startswith("ValueError")
    assert out["non_ref"].startswith("TypeError") and "ObjectRef" in out["non_ref"]
    assert out["non_ref_item"].startswith("TypeError") and "item 1" in out["non_ref_item"]
    assert out["empty"] == "ok ([], [])"


@pytest.mark.all_backends
def test_calling_remote_function_directly(ray: Any) -> None:
    with pytest.raises(TypeError, match=r"identity\.remote\(\)"):
        identity(1)
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        identity.options(num_cpus=1)(1)


def test_init_address_auto_is_a_clear_error() -> None:
    # address="auto" / "ray://..." select the Ray backend; without Ray installed that is a
    # clear ImportError naming the fix, never a silently wrong local runtime.
    try:
        import ray  # noqa: F401
        pytest.skip("Ray is installed: address='auto' would really try to connect")
    except ImportError:
        pass
    for address in ("auto", "ray://1.2.3.4:10001"):
        with pytest.raises(ImportError, match="pip install") as ei:
            aioray.init(address=address)
        assert "Ray" in str(ei.value)
    with pytest.raises(ValueError, match="cluster"):
        aioray.init(address="12.345.67.89:6379")
    assert not aioray.is_initialized()


def test_init_unknown_argument() -> None:
    with pytest.raises(TypeError, match="num_cpu") as ei:
        aioray.init(num_cpu=2)
    assert "num_cpus" in str(ei.value)


def test_init_bad_values() -> None:
    with pytest.raises(ValueError):
        aioray.init(num_cpus=-1)
    with pytest.raises(ValueError):
        aioray.init(resources={"GPU": 1})


def test_init_twice() -> None:
    aioray.init(num_cpus=1)
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        aioray.init(num_cpus=1)
    aioray.init(num_cpus=1, ignore_reinit_error=True)


def test_infeasible_task_fails_fast(ray: Any) -> None:
    with pytest.warns(UserWarning, match="never run"):
        ref = identity.options(num_cpus=64).remote(1)
        with pytest.raises(TaskUnschedulableError, match="CPU"):
            aioray.get(ref, timeout=10)


@pytest.mark.all_backends
def test_put_generator_rejected(ray: Any) -> None:
    @aioray.remote
    def gen() -> Any:
        yield 1

    with pytest.raises(TypeError):
        aioray.put(gen.remote())


@pytest.mark.all_backends
def test_generator_as_argument_rejected(ray: Any) -> None:
    @aioray.remote
    def gen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        identity.remote(gen.remote())


# Ray 2.60's ray.exceptions classes and their bases (read from Ray's module): every name is in
# aioray.exceptions with the same standard bases, so `except ray.exceptions.X` runs unchanged.
RAY_EXCEPTIONS: dict[str, tuple[str, ...]] = {
    "RayError": ("Exception",), "CrossLanguageError": ("RayError",),
    "TaskCancelledError": ("RayError",), "RayTaskError": ("RayError",),
    "LocalRayletDiedError": ("RayError",), "WorkerCrashedError": ("RayError",),
    "RayActorError": ("RayError",), "ActorDiedError": ("RayActorError",),
    "ActorUnavailableError": ("RayActorError",), "RaySystemError": ("RayError",),
    "AuthenticationError": ("RayError",), "UserCodeException": ("RayError",),
    "ObjectStoreFullError": ("RayError",), "OutOfDiskError": ("RayError",),
    "OutOfMemoryError": ("RayError",), "NodeDiedError": ("RayError",),
    "ObjectLostError": ("RayError",), "ObjectFetchTimedOutError": ("ObjectLostError",),
    "RpcError": ("RayError",),
    "ReferenceCountingAssertionError": ("ObjectLostError", "AssertionError"),
    "ObjectFreedError": ("ObjectLostError",), "OwnerDiedError": ("ObjectLostError",),
    "ObjectReconstructionFailedError": ("ObjectLostError",),
    "GetTimeoutError": ("RayError", "TimeoutError"), "PlasmaObjectNotAvailable": ("RayError",),
    "AsyncioActorExit": ("RayError",), "RuntimeEnvSetupError": ("RayError",),
    "TaskPlacementGroupRemoved": ("RayError",), "ActorPlacementGroupRemoved": ("RayError",),
    "PendingCallsLimitExceeded": ("RayError",), "TaskUnschedulableError": ("RayError",),
    "ActorUnschedulableError": ("RayError",), "ObjectRefStreamEndOfStreamError": ("RayError",),
    "StreamingGeneratorReplayInconsistentError": ("RaySystemError",),
    "OufOfBandObjectRefSerializationException": ("RayError",),
    "RayChannelError": ("RaySystemError",),
    "RayChannelTimeoutError": ("RayChannelError", "TimeoutError"),
    "RayCgraphCapacityExceeded": ("RaySystemError",),
    "RayDirectTransportError": ("RaySystemError",), "UnserializableException": ("RayError",),
    "ActorAlreadyExistsError": ("ValueError", "RayError"),
    "ActorHandleNotFoundError": ("ValueError", "RayError"),
}


def test_every_ray_exception_name_exists_with_its_bases() -> None:
    import builtins
    exc = aioray.exceptions
    for name, bases in RAY_EXCEPTIONS.items():
        cls = getattr(exc, name)
        assert name in exc.__all__
        for base in bases:
            expected = getattr(exc, base, None) or getattr(builtins, base)
            assert issubclass(cls, expected), (name, base)
        if name in ("RayTaskError", "UnserializableException", "TaskCancelledError"):
            continue  # other constructors; their pickling has tests of its own
        # Each pickles across processes like every other aioray error.
        assert type(pickle.loads(pickle.dumps(cls("m")))) is cls
