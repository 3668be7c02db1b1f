"""Every exception crosses the process boundary intact.

The error ``get`` raises is a ``RayTaskError`` *and* an instance of the task's exception class,
with its ``args``, its attributes (C-level fields such as ``errno``, ``__slots__``,
``__dict__``) and the remote traceback — for every builtin exception class and for user classes
with their own ``__init__``/``__new__``/``__reduce__``. One that truly cannot be rebuilt still
arrives as a ``RayTaskError`` naming the class, with the message and traceback text.
"""

from __future__ import annotations

import builtins
import errno
import os
import pickle
import threading
from typing import Any

import pytest

import aioray
from aioray.exceptions import RayTaskError, UnserializableException

THIS_FILE = os.path.basename(__file__)
# Python 3.11+ (aioray supports 3.10, which has no exception groups).
ExceptionGroup_: Any = getattr(builtins, "ExceptionGroup", None)
BaseExceptionGroup_: Any = getattr(builtins, "BaseExceptionGroup", None)
needs_groups = pytest.mark.skipif(ExceptionGroup_ is None, reason="Python 3.11+")

# Control flow, not errors, when a task body raises them (so not in the generic loop):
# ``SystemExit`` would end a worker, ``KeyboardInterrupt`` is how cancellation reaches a
# running task, ``GeneratorExit`` is how a generator is closed. aioray reports them as a plain
# RayTaskError (``cause`` is the original) and never as a dual instance: caught by an
# ``except KeyboardInterrupt``/``SystemExit`` or by asyncio, a remote one would look like a
# local interrupt or exit. See test_control_flow_exceptions_stay_plain_task_errors.
CONTROL_FLOW = (SystemExit, KeyboardInterrupt, GeneratorExit)

# Fields (C-level or conventional) compared when the original exception has them set.
FIELDS = ("errno", "strerror", "filename", "filename2", "encoding", "object", "start", "end",
          "reason", "msg", "lineno", "offset", "text", "end_lineno", "end_offset", "value",
          "name", "path", "message", "exceptions", "print_file_and_line")


def _make(cls: type[BaseException]) -> BaseException:
    """An instance of a builtin exception class, built with arguments it really takes."""
    if issubclass(cls, OSError):  # errno, strerror, filename (exact OSError: also filename2)
        if cls is OSError:
            return OSError(errno.EIO, "I/O trouble", "/tmp/in.dat", None, "/tmp/out.dat")
        return cls(errno.EIO, f"{cls.__name__} strerror", f"/tmp/{cls.__name__}.txt")
    if cls is UnicodeDecodeError:
        return UnicodeDecodeError("utf-8", b"ab\xff", 2, 3, "invalid start byte")
    if cls is UnicodeEncodeError:
        return UnicodeEncodeError("ascii", "caf\xe9", 3, 4, "ordinal not in range(128)")
    if cls is UnicodeTranslateError:
        return UnicodeTranslateError("caf\xe9", 3, 4, "no mapping")
    if cls is ExceptionGroup_:
        return ExceptionGroup_("two failed", [ValueError("a"), KeyError("b")])
    if cls is BaseExceptionGroup_:
        # With only Exceptions inside, this is an ExceptionGroup (a BaseExceptionGroup too);
        # one nesting a BaseException: test_base_exception_group_nesting_base_exceptions.
        return BaseExceptionGroup_("grouped", [OSError(errno.EPERM, "no"), TypeError("t")])
    if issubclass(cls, SyntaxError):
        return cls("bad syntax", ("script.py", 3, 5, "x = = 1\n", 3, 7))
    if issubclass(cls, ImportError):
        return cls("no module named nope", name="nope", path="/tmp/nope.py")
    if cls is StopIteration:
        return StopIteration(42)
    return cls(f"{cls.__name__} raised in a task", 7)  # two args: the tuple must survive


def _builtin_classes() -> list[type[BaseException]]:
    seen: dict[type[BaseException], None] = {}
    for obj in vars(builtins).values():  # EnvironmentError/IOError are OSError: listed once
        if (isinstance(obj, type) and issubclass(obj, BaseException)
                and not issubclass(obj, CONTROL_FLOW)):
            seen[obj] = None
    return list(seen)


@aioray.remote(max_retries=0)
def raise_it(exc: BaseException) -> None:
    raise exc


@aioray.remote(max_retries=0)
def raise_made(kind: str, key: Any) -> None:
    """Build the exception in the task: some of them don't pickle as a task argument."""
    exc = _make(key) if kind == "builtin" else _user_cases()[key][0]
    raise exc


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) or repr(a) == repr(b)  # exceptions inside a group compare by repr


def _assert_intact(err: BaseException, exc: BaseException) -> None:
    cls = type(exc)
    assert isinstance(err, RayTaskError), type(err)
    assert isinstance(err, cls), (type(err), cls)
    assert type(err).__name__ == f"RayTaskError({cls.__name__})"
    assert type(err.cause) is cls
    assert _same(err.args, exc.args) and _same(err.cause.args, exc.args), (err.args, exc.args)
    for name in FIELDS:
        want = getattr(exc, name, None)
        if want is not None:
            assert _same(getattr(err, name), want), (cls, name, getattr(err, name), want)
            assert _same(getattr(err.cause, name), want), (cls, name)
    assert THIS_FILE in str(err) and "raise exc" in str(err)  # the remote traceback
    assert cls.__name__ in str(err)
    # It pickles again (a task may re-raise it to its parent) and stays both classes.
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, RayTaskError) and isinstance(copy, cls)
    assert _same(copy.args, exc.args) and copy.traceback_str == err.traceback_str


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_every_builtin_exception_crosses_intact(ray: Any, executor: str) -> None:
    classes = _builtin_classes()
    assert MemoryError in classes and UnicodeDecodeError in classes and len(classes) > 50
    excs = [_make(c) for c in classes]
    f = raise_made.options(executor=executor)
    refs = [f.remote("builtin", c) for c in classes]
    aioray.wait(refs, num_returns=len(refs), timeout=60)
    failures = []
    for exc, ref in zip(excs, refs, strict=True):
        try:
            aioray.get(ref, timeout=30)
        except BaseException as err:
            try:
                _assert_intact(err, exc)
            except AssertionError as a:
                failures.append(f"{type(exc).__name__}: {type(err).__name__}: {a}")
        else:
            failures.append(f"{type(exc).__name__}: nothing raised")
    assert not failures, "\n".join(failures)


def test_memory_error_is_dual_without_a_runtime() -> None:
    # The reported bug: building the dual class with cls.__new__(cls) raised "TypeError:
    # MemoryError.__new__(RayTaskError(MemoryError)) is not safe".
    err = RayTaskError("f", "Traceback...\nMemoryError: big\n", MemoryError("big")).as_instanceof_cause()
    assert isinstance(err, MemoryError) and isinstance(err, RayTaskError)
    assert err.args == ("big",)


@needs_groups
def test_base_exception_group_nesting_base_exceptions(ray: Any) -> None:
    # A BaseExceptionGroup holding a KeyboardInterrupt can't also be an Exception (Python
    # refuses to build it), so it can't be a RayTaskError subclass: a plain RayTaskError
    # naming it, with the whole group as ``cause``.
    exc = BaseExceptionGroup_("mixed", [KeyboardInterrupt(), ValueError("v")])
    with pytest.raises(RayTaskError) as ei:
        aioray.get(raise_it.remote(exc), timeout=30)
    err = ei.value
    assert type(err) is RayTaskError
    assert type(err.cause) is BaseExceptionGroup_ and err.cause.message == "mixed"
    assert [type(e) for e in err.cause.exceptions] == [KeyboardInterrupt, ValueError]
    assert "BaseExceptionGroup" in str(err) and "mixed" in str(err) and THIS_FILE in str(err)


@aioray.remote(max_retries=0)
async def araise_it(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize("executor", ["process", "thread", "async"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt("ki"), SystemExit(3), GeneratorExit("ge")],
                         ids=lambda e: type(e).__name__)
def test_control_flow_exceptions_stay_plain_task_errors(ray: Any, exc: BaseException,
                                                        executor: str) -> None:
    # In an async or thread task these once killed the loop thread (every later get hung) or
    # left the ref pending forever.
    f = araise_it if executor == "async" else raise_it.options(executor=executor)
    with pytest.raises(RayTaskError) as ei:
        aioray.get(f.remote(exc), timeout=30)
    assert aioray.get(aioray.put(1), timeout=30) == 1  # the runtime still works
    err = ei.value
    assert type(err) is RayTaskError and not isinstance(err, type(exc))
    assert type(err.cause) is type(exc) and err.cause.args == exc.args
    assert type(exc).__name__ in str(err) and THIS_FILE in str(err)


# -- user classes --------------------------------------------------------------------------------
class CodeError(Exception):
    """``__init__`` takes other arguments than it passes to ``super().__init__`` (none)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__()
        self.code = code
        self.msg = msg


class NewError(Exception):
    """Its own ``__new__`` with a required argument."""

    def __new__(cls, code: int, *rest: Any) -> NewError:
        self = super().__new__(cls, code, *rest)
        self.code = code
        return self

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ReduceError(Exception):
    """Its own ``__reduce__``."""

    def __init__(self, a: int, b: str) -> None:
        super().__init__(f"{a}/{b}")
        self.a = a
        self.b = b

    def __reduce__(self) -> Any:
        return (type(self), (self.a, self.b))


class SlotsError(Exception):
    """State in ``__slots__`` (the builtin pickling keeps only args and ``__dict__``)."""

    __slots__ = ("weight",)

    def __init__(self, msg: str, weight: int) -> None:
        super().__init__(msg)
        self.weight = weight


class MissingFile(FileNotFoundError):
    """An OSError subclass whose ``__init__`` takes only the path."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ENOENT, "missing", path)
        self.kind = "config"


class Halt(BaseException):
    """A user BaseException (not an Exception)."""


def _user_cases() -> list[tuple[BaseException, dict[str, Any]]]:
    return [
        (CodeError(404, "not found"), {"code": 404, "msg": "not found"}),
        (NewError(7, "seven"), {"code": 7, "detail": "seven"}),
        (ReduceError(1, "b"), {"a": 1, "b": "b"}),
        (SlotsError("heavy", 99), {"weight": 99}),
        (MissingFile("/etc/app.toml"), {"errno": errno.ENOENT, "strerror": "missing",
                                        "filename": "/etc/app.toml", "kind": "config"}),
        (Halt("stop here"), {}),
    ]


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_user_exception_classes_cross_intact(ray: Any, executor: str) -> None:
    cases = list(enumerate(_user_cases()))
    if executor == "thread":  # see test_every_builtin_exception_crosses_intact
        cases = [c for c in cases if isinstance(c[1][0], Exception)]
    f = raise_made.options(executor=executor)
    refs = [f.remote("user", i) for i, _ in cases]
    for (_, (exc, attrs)), ref in zip(cases, refs, strict=True):
        with pytest.raises(type(exc)) as ei:
            aioray.get(ref, timeout=30)
        err = ei.value
        assert isinstance(err, RayTaskError) and type(err.cause) is type(exc)
        assert err.args == exc.args, (type(exc), err.args, exc.args)
        for name, want in attrs.items():
            assert getattr(err, name) == want, (type(exc), name)
            assert getattr(err.cause, name) == want, (type(exc), name)
        assert THIS_FILE in str(err) and "raise exc" in str(err)
        copy = pickle.loads(pickle.dumps(err))
        assert isinstance(copy, type(exc)) and isinstance(copy, RayTaskError)
        assert all(getattr(copy, n) == w for n, w in attrs.items())


class LockedError(Exception):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.lock = threading.Lock()


@aioray.remote(max_retries=0)
def _raise_locked() -> None:
    raise LockedError("held")


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_unpicklable_exception_is_a_task_error_naming_it(ray: Any, executor: str) -> None:
    with pytest.raises(RayTaskError) as ei:
        aioray.get(_raise_locked.options(executor=executor).remote(), timeout=30)
    err = ei.value
    assert type(err) is RayTaskError  # not a LockedError, and not some other class either
    assert not isinstance(err, (LockedError, RuntimeError, TypeError))
    assert isinstance(err.cause, UnserializableException)
    assert err.cause.class_name == "LockedError" and err.cause.message == "held"
    assert "lock" in err.cause.reason
    text = str(err)
    assert text.startswith("LockedError in ")
    assert "LockedError: held" in text and THIS_FILE in text and "raise LockedError" in text
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is RayTaskError and str(copy) == text


def test_class_that_cannot_be_subclassed_still_arrives(ray: Any) -> None:
    # The dual class can't be made (this class refuses subclasses): a plain RayTaskError whose
    # cause is the intact exception.
    @aioray.remote(max_retries=0)
    def raise_sealed() -> None:
        class Sealed(Exception):
            def __init_subclass__(cls, **kwargs: Any) -> None:
                raise TypeError("Sealed is final")

        err = Sealed("sealed one")
        err.extra = 5  # type: ignore[attr-defined]
        raise err

    with pytest.raises(RayTaskError) as ei:
        aioray.get(raise_sealed.remote(), timeout=30)
    err = ei.value
    assert type(err) is RayTaskError and type(err.cause).__name__ == "Sealed"
    assert err.cause.args == ("sealed one",) and err.cause.extra == 5
    assert str(err).startswith("Sealed in ") and "sealed one" in str(err)


# -- nested tasks --------------------------------------------------------------------------------
@aioray.remote(max_retries=0)
def reraise_from_child(kind: str, key: Any) -> None:
    aioray.get(raise_made.remote(kind, key))  # the child's error propagates out of this task


@pytest.mark.parametrize("kind, key", [
    ("user", 0), ("user", 4), ("builtin", MemoryError), ("builtin", UnicodeDecodeError),
    pytest.param("builtin", ExceptionGroup_, marks=needs_groups), ("builtin", FileNotFoundError),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_nested_task_error_reraised_by_parent(ray: Any, kind: str, key: Any) -> None:
    exc = _make(key) if kind == "builtin" else _user_cases()[key][0]
    with pytest.raises(type(exc)) as ei:
        aioray.get(reraise_from_child.remote(kind, key), timeout=60)
    err = ei.value
    assert isinstance(err, RayTaskError) and err.function_name.endswith("reraise_from_child")
    assert _same(err.args, exc.args)
    assert isinstance(err.cause, RayTaskError) and isinstance(err.cause, type(exc))
    assert type(err.cause.cause) is type(exc)  # the chain is kept
    for name in (*FIELDS, "code", "msg", "kind"):
        want = getattr(exc, name, None)
        if want is not None:
            assert _same(getattr(err, name), want), name
    assert THIS_FILE in str(err) and "reraise_from_child" in str(err)


def test_nested_unpicklable_error_reraised_by_parent(ray: Any) -> None:
    @aioray.remote(max_retries=0)
    def outer() -> None:
        aioray.get(_raise_locked.remote())

    with pytest.raises(RayTaskError) as ei:
        aioray.get(outer.remote(), timeout=60)
    err = ei.value
    assert type(err) is RayTaskError and not isinstance(err, LockedError)
    assert isinstance(err.cause, RayTaskError)
    assert isinstance(err.cause.cause, UnserializableException)
    assert "LockedError: held" in str(err)
