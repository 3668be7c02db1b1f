"""aioray.testing (Ray's test helpers with Ray's names) and the pytest plugin's fixtures with
Ray's names (ray_start_regular & co.). Nothing here waits on a tuned sleep: tests wait for a
state, with a deadline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import aioray
from aioray import as_ray
from aioray.testing import (
    Semaphore,
    SignalActor,
    async_wait_for_condition,
    client_test_enabled,
    generate_system_config_map,
    kill_actor_and_wait_for_failure,
    placement_group_assert_no_leak,
    run_string_as_driver,
    run_string_as_driver_nonblocking,
    wait_for_condition,
    wait_for_pid_to_exit,
)

pytest_plugins = ["pytester"]


def _not_ready(ref: aioray.ObjectRef[object]) -> bool:
    ready, _ = aioray.wait([ref], timeout=0)
    return not ready


def _waiters(signal: aioray.ActorHandle[SignalActor]) -> int:
    return aioray.get(signal.cur_num_waiters.remote())  # type: ignore[no-any-return]


# -- wait_for_condition -----------------------------------------------------------------------
def test_wait_for_condition_returns_once_the_predicate_holds() -> None:
    calls: list[int] = []

    def third_time(step: int) -> bool:
        calls.append(step)
        return len(calls) >= 3

    assert wait_for_condition(third_time, timeout=30, retry_interval_ms=1, step=7) is None
    assert calls == [7, 7, 7]


def test_wait_for_condition_times_out_with_the_last_exception() -> None:
    calls = 0

    def broken() -> bool:
        nonlocal calls
        calls += 1
        raise KeyError(f"missing-{calls}")

    start = time.monotonic()
    with pytest.raises(RuntimeError) as info:
        wait_for_condition(broken, timeout=0.3, retry_interval_ms=100)
    assert time.monotonic() - start >= 0.3
    message = str(info.value)
    assert message.startswith("The condition wasn't met before the timeout expired. "
                              "Last exception: Traceback")
    assert f"KeyError: 'missing-{calls}'" in message  # the last one, with its traceback
    assert 1 <= calls <= 5  # one try per 100 ms in 0.3 s, plus the first


def test_wait_for_condition_false_without_exception_and_raise_exceptions() -> None:
    with pytest.raises(RuntimeError) as info:
        wait_for_condition(lambda: False, timeout=0.05, retry_interval_ms=10)
    assert str(info.value) == "The condition wasn't met before the timeout expired."

    def broken() -> bool:
        raise ZeroDivisionError("now")

    with pytest.raises(ZeroDivisionError, match="now"):
        wait_for_condition(broken, timeout=30, raise_exceptions=True)


async def test_async_wait_for_condition_takes_sync_and_async_predicates() -> None:
    event = asyncio.Event()
    state = {"n": 0}

    async def set_later() -> None:
        await asyncio.sleep(0)
        event.set()

    task = asyncio.create_task(set_later())  # needs the loop to keep running while we poll

    async def is_set() -> bool:
        return event.is_set()

    await async_wait_for_condition(is_set, timeout=30, retry_interval_ms=1)
    await task

    def counted(inc: int) -> bool:
        state["n"] += inc
        return state["n"] >= 4

    await async_wait_for_condition(counted, timeout=30, retry_interval_ms=1, inc=2)
    assert state["n"] == 4

    async def broken() -> bool:
        raise ValueError("nope")

    with pytest.raises(RuntimeError, match=r"timeout expired\. Last exception: nope$"):
        await async_wait_for_condition(broken, timeout=0.05, retry_interval_ms=10)


# -- SignalActor ------------------------------------------------------------------------------
def test_signal_actor_wait_blocks_until_send(ray_start_regular: object) -> None:
    signal = SignalActor.remote()
    refs = [signal.wait.remote() for _ in range(3)]
    wait_for_condition(lambda: _waiters(signal) == 3, timeout=30)
    assert all(_not_ready(r) for r in refs)
    aioray.get(signal.send.remote())
    assert aioray.get(refs, timeout=30) == [None, None, None]
    assert _waiters(signal) == 0
    assert aioray.get(signal.wait.remote(), timeout=30) is None  # stays set


def test_signal_actor_send_clear_wakes_only_current_waiters(ray_start_regular: object) -> None:
    signal = SignalActor.remote()
    first = signal.wait.remote()
    wait_for_condition(lambda: _waiters(signal) == 1, timeout=30)
    aioray.get(signal.send.remote(clear=True))
    assert aioray.get(first, timeout=30) is None
    later = signal.wait.remote()
    wait_for_condition(lambda: _waiters(signal) == 1, timeout=30)
    assert _not_ready(later)
    assert aioray.get(signal.wait.remote(should_wait=False), timeout=30) is None
    aioray.get(signal.send.remote())
    assert aioray.get(later, timeout=30) is None
    aioray.get(signal.clear.remote())
    again = signal.wait.remote()
    wait_for_condition(lambda: _waiters(signal) == 1, timeout=30)
    assert _not_ready(again)
    aioray.get(signal.send.remote())
    assert aioray.get(again, timeout=30) is None


@aioray.remote
def _blocked_task(signal: aioray.ActorHandle[SignalActor]) -> int:
    aioray.get(signal.wait.remote())
    return os.getpid()


def test_signal_actor_and_semaphore_need_no_cpu(ray_start_no_cpu: object) -> None:
    signal = SignalActor.remote()
    sema = Semaphore.remote()
    ref = signal.wait.remote()
    aioray.get(sema.acquire.remote(), timeout=30)
    aioray.get(signal.send.remote(), timeout=30)
    assert aioray.get(ref, timeout=30) is None


def test_signal_actor_works_from_worker_processes(ray_start_regular: object) -> None:
    signal = SignalActor.remote()
    ref = _blocked_task.remote(signal)
    wait_for_condition(lambda: _waiters(signal) == 1, timeout=60)
    aioray.get(signal.send.remote())
    assert aioray.get(ref, timeout=60) != os.getpid()


# -- Semaphore --------------------------------------------------------------------------------
def test_semaphore_acquire_release_locked(ray_start_regular: object) -> None:
    sema = Semaphore.remote(value=2)
    assert aioray.get(sema.locked.remote()) is False
    aioray.get([sema.acquire.remote(), sema.acquire.remote()], timeout=30)
    assert aioray.get(sema.locked.remote()) is True
    third = sema.acquire.remote()
    assert aioray.get(sema.locked.remote()) is True
    assert _not_ready(third)  # no slot: it waits (the locked() after it has already run)
    aioray.get(sema.release.remote())
    assert aioray.get(third, timeout=30) is None
    aioray.get(sema.release.remote())
    assert aioray.get(sema.locked.remote()) is False
    default = Semaphore.remote()
    aioray.get(default.acquire.remote())
    assert aioray.get(default.locked.remote()) is True


# -- the rest of Ray's helpers ----------------------------------------------------------------
@aioray.remote
class _Pinger:
    def ping(self) -> str:
        return "pong"


def test_kill_actor_and_wait_for_failure(ray_start_regular: object) -> None:
    actor = _Pinger.options(max_restarts=1).remote()
    assert aioray.get(actor.ping.remote()) == "pong"
    kill_actor_and_wait_for_failure(actor)
    with pytest.raises(aioray.exceptions.ActorDiedError):  # dead, not restarted
        aioray.get(actor.ping.remote(), timeout=30)


@pytest.mark.parametrize("ray_start_regular", [{"num_cpus": 2, "resources": {"R": 2}}],
                         indirect=True)
def test_placement_group_assert_no_leak(ray_start_regular: object) -> None:
    from aioray.util import placement_group
    pgs = [placement_group([{"CPU": 1}, {"R": 1}]), placement_group([{"R": 1}])]
    aioray.get([pg.ready() for pg in pgs], timeout=30)
    assert aioray.available_resources().get("R", 0) == 0
    placement_group_assert_no_leak(pgs)
    assert aioray.available_resources() == {"CPU": 2.0, "R": 2.0}
    assert all(e["state"] == "REMOVED" for e in aioray.util.placement_group_table().values())


def test_generate_system_config_map_feeds_init(shutdown_only: None) -> None:
    kwargs = generate_system_config_map(num_heartbeats_timeout=10)
    assert kwargs == {"_system_config": {"num_heartbeats_timeout": 10}}
    aioray.init(num_cpus=1, **kwargs)  # accepted (aioray has none of those settings)
    assert aioray.is_initialized()


def test_client_test_enabled_is_false() -> None:
    assert client_test_enabled() is False


def test_run_string_as_driver_returns_the_output_and_raises_on_failure() -> None:
    out = run_string_as_driver("import sys\nprint('hello')\nprint('err', file=sys.stderr)\n")
    assert sorted(out.splitlines()) == ["err", "hello"]  # stdout and stderr together
    with pytest.raises(subprocess.CalledProcessError) as info:
        run_string_as_driver("import sys\nprint('bye')\nsys.exit(3)\n")
    assert info.value.returncode == 3
    assert info.value.output == b"bye\n"
    env = {**os.environ, "GREETING": "hi"}
    assert run_string_as_driver("import os\nprint(os.environ['GREETING'])", env=env) == "hi\n"


@pytest.fixture
def hook() -> Iterator[None]:
    real = sys.modules.get("ray")
    if real is not None and real is not aioray:
        pytest.skip("a real Ray is imported in this session")
    as_ray.install(shadow=True)
    try:
        yield
    finally:
        as_ray.uninstall()


DRIVER = """
import ray
from ray._private.test_utils import wait_for_condition
ray.init(num_cpus=1)

@ray.remote
def f(x):
    return x * 2

print(ray.__name__, ray.get(f.remote(21)))
"""


def test_run_string_as_driver_keeps_ray_import_mode(hook: None) -> None:
    assert run_string_as_driver(DRIVER).split() == ["aioray", "42"]
    proc = run_string_as_driver_nonblocking(DRIVER)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.split() == [b"aioray", b"42"]


def test_run_string_as_driver_nonblocking_returns_the_process() -> None:
    proc = run_string_as_driver_nonblocking(
        "import sys\nprint(sys.stdin.read() == '')\nprint('e', file=sys.stderr)\nsys.exit(4)\n")
    out, err = proc.communicate(timeout=120)
    assert (proc.returncode, out, err) == (4, b"True\n", b"e\n")


def test_wait_for_pid_to_exit() -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for_pid_to_exit(done.pid, timeout=60)  # an exited (zombie) child counts as gone
    done.wait()
    blocked = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE)
    try:
        with pytest.raises(TimeoutError, match=f"process {blocked.pid} to exit"):
            wait_for_pid_to_exit(blocked.pid, timeout=0.2)
    finally:
        blocked.kill()
        blocked.wait()
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="is this process"):
        wait_for_pid_to_exit(os.getpid(), timeout=60)
    assert time.monotonic() - start < 30  # said at once, not after the timeout


# -- fixtures with Ray's names (run as a user's suite would run them) -------------------------
FIXTURE_SUITE = '''
import os

import pytest

import aioray

SEEN = {}


@aioray.remote
class Box:
    def get(self):
        return 1


@aioray.remote
def pid():
    return os.getpid()


def test_regular_yields_init_info(ray_start_regular):
    assert isinstance(ray_start_regular, dict)
    assert ray_start_regular["resources"] == {"CPU": 1.0}
    assert aioray.cluster_resources() == {"CPU": 1.0}
    Box.options(name="left", lifetime="detached").remote()
    SEEN["node"] = ray_start_regular["node_id"]


def test_regular_is_fresh(ray_start_regular):
    with pytest.raises(ValueError):
        aioray.get_actor("left")
    assert ray_start_regular["node_id"] != SEEN["node"]


@pytest.mark.parametrize("ray_start_regular",
                         [{"num_cpus": 3, "resources": {"X": 2}, "_system_config": {}}],
                         indirect=True)
def test_regular_param(ray_start_regular):
    assert aioray.cluster_resources() == {"CPU": 3.0, "X": 2.0}


@pytest.mark.parametrize("ray_start_regular", ["num_cpus=2"], indirect=True)
def test_regular_bad_param(ray_start_regular):
    pass  # an error in setup


def test_2_cpus(ray_start_2_cpus):
    assert aioray.cluster_resources()["CPU"] == 2.0


def test_10_cpus(ray_start_10_cpus):
    assert aioray.cluster_resources()["CPU"] == 10.0


def test_no_cpu(ray_start_no_cpu):
    assert aioray.cluster_resources().get("CPU", 0.0) == 0.0


def test_leaves_a_runtime_running():
    aioray.init(num_cpus=2)  # no shutdown: the next fixture must cope


def test_shutdown_only_starts_clean(shutdown_only):
    assert shutdown_only is None
    assert not aioray.is_initialized()
    aioray.init(num_cpus=3)
    assert aioray.cluster_resources() == {"CPU": 3.0}


def test_after_shutdown_only():
    assert not aioray.is_initialized()  # shut down after the test, too
'''

SHARED_SUITE = '''
import os

import pytest

import aioray

SEEN = []


@aioray.remote
class Box:
    def get(self):
        return 1


@aioray.remote
def pid():
    return os.getpid()


def test_first(ray_start_regular_shared):
    SEEN.append(ray_start_regular_shared["node_id"])
    Box.options(name="kept").remote()


def test_second(ray_start_regular_shared):
    SEEN.append(ray_start_regular_shared["node_id"])
    assert aioray.get(aioray.get_actor("kept").get.remote()) == 1
    assert SEEN[0] == SEEN[1]


def test_local_modes(ray_start_shared_local_modes):
    local = aioray.get(pid.remote()) == os.getpid()
    SEEN.append(local)


def test_local_modes_again(ray_start_shared_local_modes):
    assert aioray.is_initialized()


def test_shared_2_cpus(ray_start_regular_shared_2_cpus):
    assert aioray.cluster_resources() == {"CPU": 2.0}
    assert SEEN[2:] == [True, False]  # local_mode=True, then False, one runtime each
'''

OTHER_MODULE = '''
import aioray
import pytest


def test_next_module_gets_its_own(ray_start_regular_shared):
    with pytest.raises(ValueError):
        aioray.get_actor("kept")
'''


def test_ray_named_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_fixtures=FIXTURE_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=300)
    result.assert_outcomes(passed=9, errors=1)
    result.stdout.fnmatch_lines(["*TypeError: ray_start_regular: request.param must be a dict of "
                                 "init() options (as in Ray's fixtures), got 'num_cpus=2'.*"])


def test_module_scoped_ray_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_a_shared=SHARED_SUITE, test_b_other=OTHER_MODULE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=300)
    result.assert_outcomes(passed=8)


def test_fixtures_refuse_a_session_that_imported_the_real_ray(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest('''
import sys, types
sys.modules["ray"] = types.ModuleType("ray")  # stands for a real Ray imported by the suite
''')
    pytester.makepyfile(test_real='''
def test_uses_fixture(ray_start_regular):
    pass
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=180)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ray_start_regular is aioray's fixture, but this session "
                                 "imported the real Ray*--aioray-as-ray*"])
