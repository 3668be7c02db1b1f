"""The pytest plugin (aioray.pytest_plugin, loaded through its pytest11 entry point), run on
small test suites with pytester in a subprocess, as a user's project would run it."""

from __future__ import annotations

import importlib.util

import pytest

pytest_plugins = ["pytester"]

SUITE = '''
import asyncio
import gc
import os
import weakref

import pytest

import aioray
from aioray._objects.store import STORE

LEFT = {}


@aioray.remote
def add(a, b):
    return a + b


@aioray.remote
def pid():
    return os.getpid()


@aioray.remote
class Box:
    def __init__(self, v):
        self.v = v

    def get(self):
        return self.v


def test_sync_fixture_defaults(aioray_runtime):
    assert aioray_runtime is aioray
    assert aioray.get(add.remote(1, 2)) == 3
    assert aioray.cluster_resources() == {"CPU": 2.0}


@pytest.mark.aioray(num_cpus=3, resources={"X": 1})
def test_marker_options(aioray_runtime):
    assert aioray.cluster_resources() == {"CPU": 3.0, "X": 1.0}
    assert aioray.get(add.options(resources={"X": 1}).remote(2, 2)) == 4


@pytest.mark.aioray(local_mode=True, num_cpus=1)
def test_marker_local_mode(aioray_runtime):
    assert aioray.get(pid.remote()) == os.getpid()


ASYNC_MARK

async def test_async_fixture_adopts_the_test_loop(aioray_async_runtime):
    from aioray._engine.runtime import current_runtime
    assert current_runtime().loop is asyncio.get_running_loop()
    assert await add.remote(3, 4) == 7
    box = Box.remote(5)
    assert await box.get.remote() == 5


ASYNC_MARK
@pytest.mark.aioray(num_cpus=1, resources={"Y": 2})
async def test_async_fixture_with_marker(aioray_async_runtime):
    assert aioray.cluster_resources() == {"CPU": 1.0, "Y": 2.0}


def test_leave_state_behind(aioray_runtime):
    Box.options(name="named", lifetime="detached").remote(1)
    Box.options(name="ns-named", namespace="other").remote(2)
    assert aioray.get(aioray.get_actor("named").get.remote()) == 1
    ref = aioray.put([1, 2, 3])
    result = add.remote([1], [2])
    assert aioray.get(result) == [1, 2]
    LEFT["entries"] = [weakref.ref(ref._entry), weakref.ref(result._entry)]
    LEFT["pids"] = aioray.get([pid.remote() for _ in range(2)])


def test_next_test_starts_clean(aioray_runtime):
    for name, ns in (("named", None), ("ns-named", "other")):
        with pytest.raises(ValueError):
            aioray.get_actor(name, namespace=ns)
    gc.collect()
    assert [e() for e in LEFT["entries"]] == [None, None]  # the objects were freed
    assert len(STORE) == 0
    Box.options(name="named").remote(3)  # the name is free again
    assert aioray.get(aioray.get_actor("named").get.remote()) == 3
    for p in LEFT["pids"]:  # the previous test's worker processes are gone
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            continue
        assert open(f"/proc/{p}/stat").read().split(")")[1].split()[0] == "Z"


def test_bad_marker_option_fails_clearly(pytester_marker_probe):
    pass
'''

PROBE = '''
import pytest

@pytest.fixture
def pytester_marker_probe(request):
    request.applymarker(pytest.mark.aioray(num_cpu=2))
    with pytest.raises(TypeError, match="num_cpu"):
        request.getfixturevalue("aioray_runtime")
'''


def _suite(strict: bool) -> str:
    return SUITE.replace("ASYNC_MARK", "@pytest.mark.asyncio" if strict else "")


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_fixtures_marker_and_clean_state(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeini(f"[pytest]\nasyncio_mode = {mode}\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(PROBE)
    pytester.makepyfile(test_suite=_suite(strict=mode == "strict"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=180)
    result.assert_outcomes(passed=8)


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None,
                    reason="pytest-xdist not installed (each xdist worker would have its own "
                           "runtime; see the plugin's docstring)")
def test_pytest_xdist_workers_each_have_their_own_runtime(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_parallel='''
import os

import psutil
import pytest

import aioray


@aioray.remote
class Named:
    def where(self):
        return os.getppid()


@aioray.remote
def square(x):
    return x * x


@pytest.mark.parametrize("i", range(4))
def test_same_actor_name_in_every_worker(aioray_runtime, i):
    a = Named.options(name="same").remote()
    # a sync actor: a process forked from the zygote, which this xdist worker started
    zygote = aioray.get(aioray.get_actor("same").where.remote())
    assert psutil.Process(zygote).ppid() == os.getpid()
    assert aioray.get([square.remote(j) for j in range(4)]) == [0, 1, 4, 9]
    print("xdist worker", os.environ.get("PYTEST_XDIST_WORKER"))
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", timeout=180)
    result.assert_outcomes(passed=4)
