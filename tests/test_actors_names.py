"""Named actors and namespaces: get_actor, get_if_exists, duplicate names, name release."""

from __future__ import annotations

import time
from typing import Any

import pytest

import aioray
from aioray.exceptions import ActorDiedError

TIMEOUT = 30


@aioray.remote
class Named:
    def __init__(self, tag: str = "") -> None:
        self.tag = tag

    def get_tag(self) -> str:
        return self.tag

    def namespace(self) -> str:
        return aioray.get_runtime_context().get_namespace()

    def name(self) -> str | None:
        return aioray.get_runtime_context().get_actor_name()


@pytest.mark.all_backends
def test_get_actor_by_name(ray: Any) -> None:
    a = Named.options(name="alice").remote("a")
    b = aioray.get_actor("alice")
    assert b == a
    assert aioray.get(b.get_tag.remote(), timeout=TIMEOUT) == "a"
    assert aioray.get(b.name.remote()) == "alice"


def test_duplicate_name_is_a_clear_error(ray: Any) -> None:
    Named.options(name="dup").remote()
    with pytest.raises(ValueError, match=r"'dup' already exists.*get_if_exists") as info:
        Named.options(name="dup").remote()
    assert isinstance(info.value, aioray.exceptions.ActorAlreadyExistsError)  # Ray's class


@pytest.mark.all_backends
def test_get_if_exists_returns_the_existing_actor(ray: Any) -> None:
    a = Named.options(name="g1", get_if_exists=True).remote("first")
    b = Named.options(name="g1", get_if_exists=True).remote("second")
    assert a == b
    assert aioray.get(b.get_tag.remote(), timeout=TIMEOUT) == "first"


def test_get_actor_unknown_name_lists_the_namespace(ray: Any) -> None:
    Named.options(name="orange").remote()
    Named.options(name="apple").remote()
    with pytest.raises(ValueError, match=r"'orange2'.*\['apple', 'orange'\]"):
        aioray.get_actor("orange2")
    with pytest.raises(ValueError, match="none"):
        aioray.get_actor("orange", namespace="empty-space")


@pytest.mark.all_backends
@pytest.mark.parametrize("bad", ["", None, 3])
def test_get_actor_bad_name(ray: Any, bad: Any) -> None:
    with pytest.raises(ValueError):
        aioray.get_actor(bad)


@pytest.mark.all_backends
def test_name_must_be_a_string(ray: Any) -> None:
    with pytest.raises(TypeError, match="name"):
        Named.options(name=5)


def test_default_namespace_is_anonymous_per_driver(ray: Any) -> None:
    ns = aioray.get_runtime_context().namespace
    assert ns.startswith("anonymous")
    a = Named.options(name="x").remote()
    assert aioray.get(a.namespace.remote(), timeout=TIMEOUT) == ns
    aioray.shutdown()
    aioray.init(num_cpus=2)
    assert aioray.get_runtime_context().namespace != ns


def test_namespaces_separate_names(ray: Any) -> None:
    aioray.shutdown()
    aioray.init(num_cpus=2, namespace="colors")
    assert aioray.get_runtime_context().namespace == "colors"
    orange = Named.options(name="orange", lifetime="detached").remote("color")
    fruit = Named.options(name="orange", namespace="fruit").remote("fruit")  # same name, ok
    assert aioray.get(aioray.get_actor("orange").get_tag.remote(), timeout=TIMEOUT) == "color"
    other = aioray.get_actor("orange", namespace="fruit")
    assert other == fruit and other != orange
    assert aioray.get(other.get_tag.remote(), timeout=TIMEOUT) == "fruit"
    with pytest.raises(ValueError, match="'fruit'"):
        aioray.get_actor("banana", namespace="fruit")


@pytest.mark.all_backends
def test_get_if_exists_respects_namespace(ray: Any) -> None:
    a = Named.options(name="n", namespace="one", get_if_exists=True).remote("1")
    b = Named.options(name="n", namespace="two", get_if_exists=True).remote("2")
    assert a != b
    assert aioray.get([a.get_tag.remote(), b.get_tag.remote()], timeout=TIMEOUT) == ["1", "2"]


@pytest.mark.all_backends
def test_name_is_released_when_the_actor_dies(ray: Any) -> None:
    a = Named.options(name="reused").remote("old")
    aioray.get(a.get_tag.remote())
    aioray.kill(a)
    deadline = time.monotonic() + TIMEOUT
    while True:  # kill is asynchronous: wait for the name to be free
        try:
            aioray.get_actor("reused")
        except ValueError:
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    b = Named.options(name="reused").remote("new")
    assert aioray.get(b.get_tag.remote(), timeout=TIMEOUT) == "new"
    with pytest.raises(ActorDiedError):
        aioray.get(a.get_tag.remote(), timeout=TIMEOUT)


def test_name_kept_while_restarting(ray: Any) -> None:
    a = Named.options(name="phoenix", max_restarts=1).remote("p")
    aioray.get(a.get_tag.remote())
    aioray.kill(a, no_restart=False)
    b = aioray.get_actor("phoenix")
    assert aioray.get(b.get_tag.remote(), timeout=TIMEOUT) == "p"
    with pytest.raises(ValueError):
        Named.options(name="phoenix").remote()


@pytest.mark.all_backends
def test_get_if_exists_after_death_creates_a_new_actor(ray: Any) -> None:
    a = Named.options(name="g", get_if_exists=True).remote("1")
    aioray.get(a.get_tag.remote())
    aioray.kill(a)
    deadline = time.monotonic() + TIMEOUT
    while True:
        b = Named.options(name="g", get_if_exists=True).remote("2")
        if b != a:
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert aioray.get(b.get_tag.remote(), timeout=TIMEOUT) == "2"


def test_name_taken_by_failed_actor_is_released(ray: Any) -> None:
    @aioray.remote
    class Fails:
        def __init__(self) -> None:
            raise RuntimeError("no")

        def f(self) -> None:
            pass

    a = Fails.options(name="broken").remote()
    with pytest.raises(ActorDiedError):
        aioray.get(a.f.remote(), timeout=TIMEOUT)
    with pytest.raises(ValueError):
        aioray.get_actor("broken")
    Named.options(name="broken").remote()  # the name is free


@aioray.remote
def lookup_in_worker(name: str, namespace: str | None) -> str:
    h = aioray.get_actor(name, namespace=namespace)
    return str(aioray.get(h.get_tag.remote()))


@aioray.remote
def create_named_in_worker(name: str) -> str:
    h = Named.options(name=name).remote("from worker")
    return str(aioray.get(h.get_tag.remote()))


def test_get_actor_from_a_worker_process(ray: Any) -> None:
    Named.options(name="shared").remote("hello")
    Named.options(name="shared", namespace="elsewhere").remote("there")
    assert aioray.get(lookup_in_worker.remote("shared", None), timeout=TIMEOUT) == "hello"
    assert aioray.get(lookup_in_worker.remote("shared", "elsewhere"),
                      timeout=TIMEOUT) == "there"
    with pytest.raises(ValueError, match="missing"):
        aioray.get(lookup_in_worker.remote("missing", None), timeout=TIMEOUT)


def test_named_actor_created_in_a_worker_process(ray: Any) -> None:
    assert aioray.get(create_named_in_worker.remote("made"), timeout=TIMEOUT) == "from worker"
    h = aioray.get_actor("made")  # named: it outlives the task that made it
    assert aioray.get(h.get_tag.remote(), timeout=TIMEOUT) == "from worker"
    with pytest.raises(ValueError, match="already exists"):
        aioray.get(create_named_in_worker.remote("made"), timeout=TIMEOUT)


async def test_names_from_async_code(aray: Any) -> None:
    Named.options(name="async-named").remote("z")
    h = aioray.get_actor("async-named")
    assert await h.get_tag.remote() == "z"


@aioray.remote
def get_or_create_in_worker(name: str, tag: str) -> str:
    h = Named.options(name=name, get_if_exists=True).remote(tag)
    return str(aioray.get(h.get_tag.remote()))


def test_get_if_exists_from_a_worker_process(ray: Any) -> None:
    Named.options(name="existing").remote("driver's")
    assert aioray.get(get_or_create_in_worker.remote("existing", "worker's"),
                      timeout=TIMEOUT) == "driver's"
    assert aioray.get(get_or_create_in_worker.remote("fresh", "worker's"),
                      timeout=TIMEOUT) == "worker's"
    assert aioray.get(aioray.get_actor("fresh").get_tag.remote(), timeout=TIMEOUT) == "worker's"


@pytest.mark.all_backends
def test_list_named_actors(ray: Any) -> None:
    @aioray.remote
    class Named:
        def ping(self) -> int:
            return 1

    a = Named.options(name="lna-a").remote()
    b = Named.options(name="lna-b", namespace="lna-other").remote()
    aioray.get([a.ping.remote(), b.ping.remote()])
    assert {"lna-a"} <= set(aioray.util.list_named_actors())
    assert "lna-b" not in aioray.util.list_named_actors()
    everywhere = aioray.util.list_named_actors(all_namespaces=True)
    assert {"name": "lna-b", "namespace": "lna-other"} in everywhere
    aioray.kill(a)
    aioray.kill(b)

    @aioray.remote
    def from_a_task() -> list[Any]:
        return aioray.util.list_named_actors(all_namespaces=True)

    c = Named.options(name="lna-c").remote()
    aioray.get(c.ping.remote())
    assert any(d["name"] == "lna-c" for d in aioray.get(from_a_task.remote()))
