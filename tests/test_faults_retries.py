"""Retries: ``max_retries`` re-runs tasks whose worker died; ``retry_exceptions`` re-runs
tasks whose code raised. Every attempt appends a line to a file, so counts are exact."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

import cloudpickle
import pytest

import aioray
from aioray.exceptions import RayTaskError, WorkerCrashedError

# Ship this module's helpers by value: workers then need not import pytest (faster respawns).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _attempt(path: str) -> int:
    """Record one attempt; returns its number (1-based). O_APPEND keeps lines whole."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"x\n")
    finally:
        os.close(fd)
    with open(path) as f:
        return f.read().count("x")


def _attempts(path: Path) -> int:
    return path.read_text().count("x") if path.exists() else 0


def _die(how: str) -> None:
    if how == "exit":
        os._exit(7)
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segfault":
        ctypes.string_at(0)
    elif how == "oom":  # the kernel OOM killer sends SIGKILL
        os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError(how)


@aioray.remote
def crash_until(path: str, crashes: int, how: str = "sigkill", value: int = 0) -> int:
    """Dies on its first ``crashes`` attempts, then returns ``value``."""
    if _attempt(path) <= crashes:
        _die(how)
    return value


@aioray.remote
def raise_until(path: str, failures: int, exc: type[BaseException] = ValueError) -> str:
    if _attempt(path) <= failures:
        raise exc("boom")
    return "ok"


@aioray.remote
async def async_raise_until(path: str, failures: int) -> str:
    if _attempt(path) <= failures:
        raise ValueError("async boom")
    return "ok"


# -- worker deaths -------------------------------------------------------------------------
@pytest.mark.parametrize(("how", "code"), [
    ("exit", 7),
    ("sigkill", -signal.SIGKILL),
    ("segfault", -signal.SIGSEGV),
    ("oom", -signal.SIGKILL),
])
def test_crash_exhausts_retries_with_exit_status(ray: object, tmp_path: Path, how: str,
                                                 code: int) -> None:
    path = tmp_path / "n"
    ref = crash_until.options(max_retries=1).remote(str(path), 99, how)
    with pytest.raises(WorkerCrashedError) as info:
        aioray.get(ref, timeout=60)
    err = info.value
    assert err.exit_code == code
    assert err.attempts == 2
    assert "2 times" in str(err)
    if code < 0:
        assert signal.Signals(-code).name in str(err)
    else:
        assert f"exit code {code}" in str(err)
    assert _attempts(path) == 2


def test_default_max_retries_is_three(ray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    with pytest.raises(WorkerCrashedError) as info:
        aioray.get(crash_until.remote(str(path), 99), timeout=60)
    assert info.value.attempts == 4
    assert _attempts(path) == 4


def test_crash_then_success_within_budget(ray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    assert aioray.get(crash_until.remote(str(path), 2, "exit", 42), timeout=60) == 42
    assert _attempts(path) == 3


def test_max_retries_zero_disables(ray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    with pytest.raises(WorkerCrashedError) as info:
        aioray.get(crash_until.options(max_retries=0).remote(str(path), 1), timeout=60)
    assert info.value.attempts == 1
    assert "max_retries" not in str(info.value)  # no retries were asked for
    assert _attempts(path) == 1


def test_max_retries_infinite(ray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    ref = crash_until.options(max_retries=-1).remote(str(path), 4, "exit", 5)
    assert aioray.get(ref, timeout=60) == 5
    assert _attempts(path) == 5


def test_counts_are_per_task(ray: object, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ra = crash_until.options(max_retries=2).remote(str(a), 2, "sigkill", 1)
    rb = crash_until.options(max_retries=2).remote(str(b), 2, "sigkill", 2)
    assert aioray.get([ra, rb], timeout=60) == [1, 2]
    assert (_attempts(a), _attempts(b)) == (3, 3)


def test_multiple_returns_all_get_the_crash(ray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    r1, r2 = crash_until.options(max_retries=0, num_returns=2).remote(str(path), 1)
    for r in (r1, r2):
        with pytest.raises(WorkerCrashedError):
            aioray.get(r, timeout=60)


def test_error_pickles_with_its_fields(ray: object, tmp_path: Path) -> None:
    import pickle
    err = WorkerCrashedError("died", exit_code=-9, attempts=3)
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.exit_code, back.attempts) == ("died", -9, 3)


# -- application errors --------------------------------------------------------------------
def test_app_error_not_retried_by_default(ray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    with pytest.raises(ValueError):
        aioray.get(raise_until.options(max_retries=5).remote(str(path), 1), timeout=60)
    assert _attempts(path) == 1


def test_retry_exceptions_true(ray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    ref = raise_until.options(max_retries=2, retry_exceptions=True).remote(str(path), 2)
    assert aioray.get(ref, timeout=60) == "ok"
    assert _attempts(path) == 3


def test_retry_exceptions_exhausted_raises_last_error(ray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    ref = raise_until.options(max_retries=2, retry_exceptions=True).remote(str(path), 99)
    with pytest.raises(ValueError) as info:
        aioray.get(ref, timeout=60)
    assert isinstance(info.value, RayTaskError)
    assert _attempts(path) == 3


def test_retry_exceptions_list_matches_class(ray: object, tmp_path: Path) -> None:
    hit, miss = tmp_path / "hit", tmp_path / "miss"
    opts = {"max_retries": 3, "retry_exceptions": [KeyError, ValueError]}
    assert aioray.get(raise_until.options(**opts).remote(str(hit), 2, ValueError)) == "ok"
    assert _attempts(hit) == 3
    with pytest.raises(TypeError):
        aioray.get(raise_until.options(**opts).remote(str(miss), 2, TypeError), timeout=60)
    assert _attempts(miss) == 1


def test_retry_exceptions_list_matches_subclass(ray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    ref = raise_until.options(max_retries=1, retry_exceptions=[LookupError]).remote(
        str(path), 1, KeyError)
    assert aioray.get(ref, timeout=60) == "ok"
    assert _attempts(path) == 2


def test_retry_exceptions_on_async_and_thread_tasks(ray: object, tmp_path: Path) -> None:
    a, t = tmp_path / "a", tmp_path / "t"
    ref = async_raise_until.options(max_retries=2, retry_exceptions=True).remote(str(a), 2)
    assert aioray.get(ref, timeout=60) == "ok"
    assert _attempts(a) == 3
    ref = raise_until.options(max_retries=1, retry_exceptions=True, executor="thread").remote(
        str(t), 1)
    assert aioray.get(ref, timeout=60) == "ok"
    assert _attempts(t) == 2


def test_retry_exceptions_infinite(ray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    ref = raise_until.options(max_retries=-1, retry_exceptions=True).remote(str(path), 5)
    assert aioray.get(ref, timeout=60) == "ok"
    assert _attempts(path) == 6


def test_crash_and_app_errors_share_one_budget(ray: object, tmp_path: Path) -> None:
    @aioray.remote(max_retries=2, retry_exceptions=True)
    def mixed(path: str) -> str:
        n = _attempt(path)
        if n == 1:
            os._exit(3)
        raise ValueError(f"attempt {n}")

    path = tmp_path / "n"
    with pytest.raises(ValueError, match="attempt 3"):
        aioray.get(mixed.remote(str(path)), timeout=60)
    assert _attempts(path) == 3


# -- generators ----------------------------------------------------------------------------
@aioray.remote(max_retries=2)
def gen_crash_once(path: str, n: int):  # type: ignore[no-untyped-def]
    attempt = _attempt(path)
    for i in range(n):
        yield i
        if attempt == 1 and i == 1:
            os._exit(1)


def test_streaming_generator_retry_does_not_duplicate_items(ray: object,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "n"
    gen = gen_crash_once.remote(str(path), 4)
    assert [aioray.get(r, timeout=60) for r in gen] == [0, 1, 2, 3]
    assert _attempts(path) == 2


def test_generator_crash_after_budget_ends_stream_with_error(ray: object,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "n"
    gen = gen_crash_once.options(max_retries=0).remote(str(path), 4)
    refs = list(gen)
    assert [aioray.get(r) for r in refs[:2]] == [0, 1]
    assert len(refs) == 3
    with pytest.raises(WorkerCrashedError):
        aioray.get(refs[2], timeout=60)


# -- async model ---------------------------------------------------------------------------
async def test_retries_from_async_code(aray: object, tmp_path: Path) -> None:
    path = tmp_path / "n"
    assert await crash_until.options(max_retries=1).remote(str(path), 1, "exit", 9) == 9
    with pytest.raises(WorkerCrashedError):
        await crash_until.options(max_retries=0).remote(str(tmp_path / "m"), 1)
