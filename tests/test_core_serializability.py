"""Serializability: ``aioray.util.inspect_serializability`` (as in Ray) and the ``TypeError``
that ``.remote()`` raises, at submission, for an argument that cannot be pickled."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aioray
from aioray.util import inspect_serializability
from aioray.util.check_serialize import FailureTuple


class Holder:
    """A lock one level down."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.n = 1


class Outer:
    """A lock two levels down: ``Outer().inner.lock``."""

    def __init__(self) -> None:
        self.inner = Holder()
        self.label = "outer"


class Fine:
    def __init__(self) -> None:
        self.items = [1, "two", (3.0, None)]
        self.table = {"k": [b"v"]}


def _closure_over_lock() -> Callable[[], bool]:
    guard = threading.Lock()
    count = 3

    def locked() -> bool:
        return guard.locked() and count > 0

    return locked


def _gen() -> Iterator[int]:
    yield 1


def _inspect(obj: Any, **kw: Any) -> tuple[bool, set[FailureTuple], str]:
    out = io.StringIO()
    ok, failures = inspect_serializability(obj, print_file=out, **kw)
    return ok, failures, out.getvalue()


# -- inspect_serializability -------------------------------------------------------------------
def test_exported_like_ray() -> None:
    import aioray.util.check_serialize as cs
    assert aioray.util.inspect_serializability is cs.inspect_serializability
    assert FailureTuple._fields[:3] == ("obj", "name", "parent")


@pytest.mark.parametrize("obj", [Fine(), [1, {"a": (2, 3)}], _gen, len, Holder, "text"])
def test_picklable_object_passes(obj: Any) -> None:
    ok, failures, printed = _inspect(obj, name="thing")
    assert ok is True and failures == set()
    assert "thing" in printed


def test_closure_capturing_a_lock() -> None:
    fn = _closure_over_lock()
    ok, failures, printed = _inspect(fn, name="my_fn")
    assert ok is False
    (f,) = failures
    assert f.name == "guard"
    assert isinstance(f.obj, type(threading.Lock()))
    assert f.parent is fn
    assert f.path == "my_fn.<closure>.guard"
    assert "my_fn" in printed and "guard" in printed and "FAIL" in printed
    assert "count" not in {x.name for x in failures}  # the picklable nonlocal is not blamed


def test_global_of_a_function_is_walked() -> None:
    ns: dict[str, Any] = {"__name__": "__main__", "LOCK": threading.Lock()}
    exec("def uses_global():\n    return LOCK.locked()\n", ns)
    ok, failures, _ = _inspect(ns["uses_global"])
    assert not ok
    assert {f.name for f in failures} == {"LOCK"}
    assert next(iter(failures)).obj is ns["LOCK"]


def test_lock_two_levels_deep_in_an_object() -> None:
    o = Outer()
    ok, failures, printed = _inspect(o, name="the_outer")
    assert ok is False
    (f,) = failures
    assert f.name == "lock" and f.obj is o.inner.lock and f.parent is o.inner
    assert f.path == "the_outer.inner.lock"
    assert "the_outer" in printed
    # The tree names each level it walked through.
    assert printed.index("'inner'") < printed.index("'lock'")


def test_list_containing_a_generator() -> None:
    g = (i for i in range(3))
    items = [1, "x", g, {"ok": 2}]
    ok, failures, printed = _inspect(items, name="items")
    assert ok is False
    (f,) = failures
    assert f.obj is g and f.parent is items
    assert f.name == "items[2]" and f.path == "items[2]"
    assert "items" in printed


def test_several_innermost_failures_in_containers() -> None:
    lock, g = threading.Lock(), _gen()
    value = {"a": [1, lock], "b": (g,), "c": Fine()}
    ok, failures, _ = _inspect(value, name="v")
    assert not ok
    assert {id(f.obj) for f in failures} == {id(lock), id(g)}
    assert {f.path for f in failures} == {"v['a'][1]", "v['b'][0]"}


def test_depth_limits_the_walk() -> None:
    o = Outer()
    _, deep, _ = _inspect(o)
    assert {f.name for f in deep} == {"lock"}
    _, one, _ = _inspect(o, name="o", depth=1)  # only o's members: reports o.inner
    assert {(f.name, id(f.obj)) for f in one} == {("inner", id(o.inner))}
    _, zero, printed = _inspect(o, name="o", depth=0)  # no walk: o itself
    (f,) = zero
    assert f.obj is o and f.name == "o" and f.parent is None
    assert "depth" in printed


def test_the_base_object_itself_is_innermost() -> None:
    lock = threading.Lock()
    ok, failures, _ = _inspect(lock, name="my_lock")
    assert not ok
    assert failures == {FailureTuple(lock, "my_lock", None, "my_lock")}


def test_cycles_end() -> None:
    o = Holder()
    o.me = o  # type: ignore[attr-defined]
    o.others = [o, {"again": o}]  # type: ignore[attr-defined]
    ok, failures, _ = _inspect(o)
    assert not ok
    assert [f.name for f in failures] == ["lock"]


def test_local_class_with_an_unpicklable_class_attribute() -> None:
    class Local:
        shared = threading.Lock()

    inst = Local()
    ok, failures, _ = _inspect(inst, name="inst")
    assert not ok
    assert {f.name for f in failures} == {"shared"}


def test_bound_method_and_partial() -> None:
    import functools
    h = Holder()

    class WithMethod:
        def __init__(self) -> None:
            self.h = h

        def run(self) -> int:
            return 1

    _, failures, _ = _inspect(WithMethod().run)
    assert {f.name for f in failures} == {"lock"}
    _, failures, _ = _inspect(functools.partial(max, h))
    assert [f.obj for f in failures] == [h.lock]


def test_prints_to_stdout_by_default(capsys: Any) -> None:
    ok, _ = inspect_serializability(Outer(), name="printed_name")
    assert not ok
    out = capsys.readouterr().out
    assert "printed_name" in out and "lock" in out


def test_unhashable_failures_go_in_the_set() -> None:
    bad = [_gen()]
    ok, failures, _ = _inspect({"k": bad}, depth=1)  # the walk stops at the list
    assert not ok
    assert [f.obj for f in failures] == [bad]


# -- .remote() with an unpicklable argument -----------------------------------------------------
@aioray.remote
def identity(x: Any) -> Any:
    return x


@aioray.remote
def two(a: Any, b: Any = None) -> Any:
    return a


@aioray.remote
class Store:
    def __init__(self, item: Any = None) -> None:
        self.item = item

    def put(self, item: Any, *, tag: Any = None) -> int:
        self.item = item
        return 1


@aioray.remote
def submit_from_worker(kind: str, handle: Any = None) -> str:
    """Runs in a worker process: submits a call with an unpicklable argument there."""
    try:
        if kind == "task":
            identity.remote(Outer())
        else:
            handle.put.remote(1, tag=_gen())
    except TypeError as e:
        return str(e)
    return "no error"


def _check_message(msg: str, arg: str, path: str, func: str) -> None:
    assert f"Could not serialize {arg}" in msg, msg
    assert re.search(rf"\) of (\S+\.)?{re.escape(func)}[: ]", msg), msg
    assert "innermost object that cannot be serialized" in msg, msg
    assert f"at {path}" in msg, msg
    assert "inspect_serializability" in msg  # what to do


def test_process_task_argument_error_at_submission(ray: Any) -> None:
    with pytest.raises(TypeError) as ei:
        identity.remote(Outer())  # the call itself raises: nothing to get
    _check_message(str(ei.value), "argument 0 (Outer)", "x.inner.lock", "identity")
    assert "(parameter 'x')" in str(ei.value)
    assert "`lock` (<unlocked _thread.lock" in str(ei.value)
    assert "cannot pickle '_thread.lock' object" in str(ei.value)


def test_keyword_argument_names_the_keyword(ray: Any) -> None:
    with pytest.raises(TypeError) as ei:
        two.remote(1, b=[0, _closure_over_lock()])
    _check_message(str(ei.value), "keyword argument 'b' (list)",
                   "b[1].<closure>.guard", "two")


def test_second_positional_argument(ray: Any) -> None:
    with pytest.raises(TypeError) as ei:
        two.remote(1, [0, 1, _gen()])
    _check_message(str(ei.value), "argument 1 (list)", "b[2]", "two")
    assert "(parameter 'b')" in str(ei.value)
    assert "<generator object" in str(ei.value)


def test_the_argument_itself_unpicklable(ray: Any) -> None:
    with pytest.raises(TypeError, match=r"argument 0 \(generator\) of identity \(parameter 'x'\): cannot pickle"):
        identity.remote(_gen())


def test_thread_and_async_tasks_copy_arguments_too(ray: Any) -> None:
    # aioray serializes every task's arguments at submission (as Ray does), whatever runs it.
    with pytest.raises(TypeError) as ei:
        identity.options(executor="thread").remote(Outer())
    _check_message(str(ei.value), "argument 0 (Outer)", "x.inner.lock", "identity")

    @aioray.remote
    async def async_identity(x: Any) -> Any:
        return x

    with pytest.raises(TypeError) as ei:
        async_identity.remote(x=Outer())
    _check_message(str(ei.value), "keyword argument 'x' (Outer)", "x.inner.lock",
                   "async_identity")


def test_sync_actor_method_and_constructor(ray: Any) -> None:
    s = Store.remote()
    with pytest.raises(TypeError) as ei:
        s.put.remote(Outer())
    _check_message(str(ei.value), "argument 0 (Outer)", "Outer.inner.lock", "put")
    with pytest.raises(TypeError) as ei:
        s.put.remote(1, tag={"g": _gen()})
    _check_message(str(ei.value), "keyword argument 'tag' (dict)", "tag['g']", "put")
    with pytest.raises(TypeError) as ei:
        Store.remote(Outer())
    _check_message(str(ei.value), "argument 0 (Outer)", "Outer.inner.lock", "Store.__init__")
    assert aioray.get(s.put.remote(2)) == 1  # the actor is unharmed


def test_submission_from_inside_a_worker_process(ray: Any) -> None:
    msg = aioray.get(submit_from_worker.remote("task"), timeout=60)
    _check_message(msg, "argument 0 (Outer)", "x.inner.lock", "identity")
    s = Store.remote()
    msg = aioray.get(submit_from_worker.remote("actor", s), timeout=60)
    assert "Could not serialize keyword argument 'tag' (generator) of put" in msg, msg


def test_parameter_named_when_the_function_is_known() -> None:
    from aioray._handles.args import pack_args

    def f(first: Any, second: Any, *rest: Any) -> None:
        pass

    with pytest.raises(TypeError) as ei:
        pack_args((1, Outer()), {}, "f", 0, func=f)
    assert "argument 1 (Outer) of f (parameter 'second')" in str(ei.value)
    assert "at second.inner.lock" in str(ei.value)
    with pytest.raises(TypeError, match=r"argument 3 \(generator\) of f \(parameter 'rest\[1\]'\)"):
        pack_args((1, 2, 3, _gen()), {}, "f", 0, func=f)
