"""Ray-import mode (aioray.as_ray): code and test suites written for Ray (``import ray``) run on
aioray unchanged — through ``pytest --aioray-as-ray``, ``python -m aioray.as_ray`` or
``install()`` — and nothing changes without it. Suites and scripts run in subprocesses, as a user
would run them; in-process checks install the hook and uninstall it afterwards."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import aioray
import aioray.testing
from aioray import as_ray

pytest_plugins = ["pytester"]


def _real_ray_imported() -> bool:
    mod = sys.modules.get("ray")
    return mod is not None and mod is not aioray


@pytest.fixture
def hook() -> Iterator[None]:
    """ray-import mode in this process for one test."""
    if _real_ray_imported():
        pytest.skip("a real Ray is imported in this session")
    as_ray.install(shadow=True)
    try:
        yield
    finally:
        as_ray.uninstall()


def _python(*args: str, cwd: Path | None = None, stdin: str | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "AIORAY_AS_RAY"}
    full_env.update(env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, input=stdin, env=full_env)


@pytest.fixture
def fake_ray(tmp_path: Path) -> Path:
    """A directory holding a stand-in for an installed Ray (``ray.FAKE``), for PYTHONPATH."""
    site = tmp_path / "fake_site"
    (site / "ray").mkdir(parents=True)
    (site / "ray" / "__init__.py").write_text("FAKE = True\n")
    return site


# -- pytest --aioray-as-ray -------------------------------------------------------------------
RAY_CONFTEST = '''
import ray  # a Ray project's conftest imports ray before any test module

collected_ray = ray
'''

RAY_SUITE = '''
import os
import sys

import pytest

import ray
import ray.actor
import ray.exceptions
import ray.util.placement_group
import ray.util.queue
import ray.util.scheduling_strategies
from ray._common.test_utils import Semaphore
from ray._private.test_utils import SignalActor, wait_for_condition
from ray.exceptions import RayTaskError
from ray.util import ActorPool
from ray.util.placement_group import PlacementGroup
from ray.util.queue import Queue
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


def plus_one(x):
    # Module level: a worker process imports this module (and so `ray`) to run it.
    return x + 1, sys.modules["ray"] is sys.modules["aioray"], __name__ in sys.modules


@ray.remote
def in_worker(x):
    return plus_one(x), os.getpid()


@ray.remote
def fail():
    raise ValueError("boom")


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


def test_ray_is_aioray(ray_start_regular):
    import aioray
    assert ray is aioray and ray.get is aioray.get
    assert ray.util.queue is sys.modules["aioray.util.queue"]
    assert callable(ray.util.placement_group)  # still the function, as in Ray
    assert PlacementGroup is aioray.util.PlacementGroup
    assert ray.actor.exit_actor is aioray.actor.exit_actor
    assert ray_start_regular["resources"] == {"CPU": 1.0}


def test_tasks_in_worker_processes_import_this_module(ray_start_regular):
    (value, worker_sees_aioray, module_imported), pid = ray.get(in_worker.remote(1))
    assert (value, worker_sees_aioray, module_imported) == (2, True, True)
    assert pid != os.getpid()


def test_exceptions_and_actors(ray_start_regular):
    with pytest.raises(RayTaskError) as info:
        ray.get(fail.remote())
    assert isinstance(info.value, ValueError)
    c = Counter.remote()
    assert ray.get([c.incr.remote() for _ in range(3)]) == [1, 2, 3]


@pytest.mark.parametrize("ray_start_regular", [{"num_cpus": 2, "resources": {"X": 1}}],
                         indirect=True)
def test_util_and_test_utils(ray_start_regular):
    pool = ActorPool([Counter.remote(), Counter.remote()])
    assert sorted(pool.map(lambda a, _: a.incr.remote(), range(2))) == [1, 1]
    q = Queue()
    q.put(5)
    assert q.get() == 5
    pg = ray.util.placement_group([{"CPU": 1}])
    ray.get(pg.ready())
    ref = fail.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote()
    with pytest.raises(ValueError):
        ray.get(ref)
    signal = SignalActor.remote()
    waiter = signal.wait.remote()
    wait_for_condition(lambda: ray.get(signal.cur_num_waiters.remote()) == 1)
    ray.get(signal.send.remote())
    assert ray.get(waiter) is None
    sema = Semaphore.remote(value=1)
    ray.get(sema.acquire.remote())
    assert ray.get(sema.locked.remote()) is True


def test_internals_are_refused(shutdown_only):
    with pytest.raises(ImportError, match="ray._private.worker is Ray-internal"):
        from ray._private import worker  # noqa: F401
    ray.init(num_cpus=1)
    assert ray.is_initialized()
'''


def _ray_suite(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(RAY_CONFTEST)
    pytester.makepyfile(test_ray_suite=RAY_SUITE)


def test_pytest_option_runs_an_unmodified_ray_suite(pytester: pytest.Pytester) -> None:
    _ray_suite(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--aioray-as-ray",
                                           timeout=180)
    result.assert_outcomes(passed=5)


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="pytest-xdist not installed")
def test_pytest_option_under_xdist(pytester: pytest.Pytester) -> None:
    _ray_suite(pytester)  # every xdist worker installs the hook for itself
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--aioray-as-ray", "-n", "2",
                                           timeout=180)
    result.assert_outcomes(passed=5)


def test_env_var_switches_pytest_too(pytester: pytest.Pytester,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _ray_suite(pytester)
    monkeypatch.setenv("AIORAY_AS_RAY", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=180)
    result.assert_outcomes(passed=5)


def test_without_the_option_nothing_changes(pytester: pytest.Pytester,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("ray") is not None:
        pytest.skip("Ray is installed here: `import ray` works without aioray")
    monkeypatch.delenv("AIORAY_AS_RAY", raising=False)
    _ray_suite(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=180)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*ModuleNotFoundError: No module named 'ray'*"])


def test_bad_env_value_is_a_usage_error(pytester: pytest.Pytester,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _ray_suite(pytester)
    monkeypatch.setenv("AIORAY_AS_RAY", "maybe")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=180)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*AIORAY_AS_RAY='maybe'*"])


def test_pytest_option_does_not_shadow_an_installed_ray_unless_asked(
        pytester: pytest.Pytester, fake_ray: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(fake_ray), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.delenv("AIORAY_AS_RAY", raising=False)
    pytester.makepyfile(test_which='''
import ray

def test_which():
    print("RAY IS", "aioray" if ray.__name__ == "aioray" else "fake")
''')
    refused = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--aioray-as-ray",
                                            timeout=180)
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines([f"*a real Ray is installed ({fake_ray}*--aioray-as-ray-shadow*"])
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", timeout=180)
    plain.stdout.fnmatch_lines(["*RAY IS fake*"])
    shadowed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s",
                                             "--aioray-as-ray-shadow", timeout=180)
    shadowed.assert_outcomes(passed=1)
    shadowed.stdout.fnmatch_lines(["*RAY IS aioray*"])


# -- python -m aioray.as_ray ------------------------------------------------------------------
SCRIPT = '''
import os
import sys

import ray
from helpers import double  # a sibling module that imports ray itself

@ray.remote
def task(x):
    return double(x), os.getpid()

if __name__ == "__main__":
    ray.init(num_cpus=1)
    value, pid = ray.get(task.remote(21))
    print("value", value, "worker", pid != os.getpid())
    print("argv", sys.argv)
    print("script dir first", os.path.dirname(os.path.abspath(__file__)) in sys.path[:2])
    print("ray is aioray", ray.__name__)
    ray.shutdown()
    sys.exit(int(os.environ.get("EXIT_CODE", "0")))
'''

HELPERS = '''
import ray

def double(x):
    assert ray.__name__ == "aioray"
    return 2 * x
'''


@pytest.fixture
def script_dir(tmp_path: Path) -> Path:
    d = tmp_path / "app"
    d.mkdir()
    (d / "script.py").write_text(SCRIPT)
    (d / "helpers.py").write_text(HELPERS)
    return d


def test_script_switch_runs_a_ray_script(script_dir: Path, tmp_path: Path) -> None:
    proc = _python("-m", "aioray.as_ray", str(script_dir / "script.py"), "a", "--b", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "value 42 worker True" in proc.stdout  # helpers imported in the worker process too
    assert f"argv [{str(script_dir / 'script.py')!r}, 'a', '--b']" in proc.stdout
    assert "script dir first True" in proc.stdout
    assert "ray is aioray aioray" in proc.stdout


def test_script_switch_exit_code_module_code_and_stdin(script_dir: Path) -> None:
    assert _python("-m", "aioray.as_ray", "script.py", cwd=script_dir,
                   EXIT_CODE="3").returncode == 3
    as_module = _python("-m", "aioray.as_ray", "-m", "script", "x", cwd=script_dir)
    assert as_module.returncode == 0, as_module.stderr
    assert "value 42 worker True" in as_module.stdout
    code = _python("-m", "aioray.as_ray", "-c",
                   "import sys, ray; print(ray.__name__, sys.argv)", "arg", cwd=script_dir)
    assert code.stdout.strip() == "aioray ['-c', 'arg']", code.stderr
    stdin = _python("-m", "aioray.as_ray", "-", cwd=script_dir,
                    stdin="import ray.util.queue as q\nprint(q.__name__, __name__)\n")
    assert stdin.stdout.strip() == "aioray.util.queue __main__", stdin.stderr


def test_script_switch_usage_errors() -> None:
    assert _python("-m", "aioray.as_ray").returncode == 2
    assert _python("-m", "aioray.as_ray", "-m").returncode == 2
    assert "usage" in _python("-m", "aioray.as_ray", "--help").stdout


def test_script_switch_and_shadowing(script_dir: Path, fake_ray: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(fake_ray),
                                          *filter(None, [os.environ.get("PYTHONPATH")])])}
    code = "import ray; print(ray.__name__)"
    refused = _python("-m", "aioray.as_ray", "-c", code, **env)
    assert refused.returncode == 2
    assert f"a real Ray is installed ({fake_ray}" in refused.stderr
    assert _python("-c", code, **env).stdout.strip() == "ray"  # the fake one, untouched
    assert _python("-m", "aioray.as_ray", "--shadow", "-c", code,
                   **env).stdout.strip() == "aioray"
    assert _python("-m", "aioray.as_ray", "-c", code, AIORAY_AS_RAY="shadow",
                   **env).stdout.strip() == "aioray"


def test_a_ray_directory_without_init_is_not_a_real_ray(tmp_path: Path) -> None:
    # Ray's session directory /tmp/ray: a program started in /tmp sees it as a namespace package.
    (tmp_path / "ray" / "session_latest").mkdir(parents=True)
    proc = _python("-m", "aioray.as_ray", "-c", "import ray; print(ray.__name__)", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "aioray"


def test_install_refuses_an_imported_ray_and_the_ray_backend(fake_ray: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(fake_ray),
                                          *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = _python("-c", textwrap.dedent('''
        import ray, aioray.as_ray
        try:
            aioray.as_ray.install(shadow=True)
        except RuntimeError as e:
            print("refused:", e)
        print(ray.FAKE, aioray.as_ray.is_installed())
    '''), **env)
    assert "refused: aioray.as_ray.install(): a real `ray` is already imported" in proc.stdout
    assert proc.stdout.strip().endswith("True False"), proc.stderr
    backend = _python("-c", "import aioray.as_ray; aioray.as_ray.install()",
                      AIORAY_BACKEND="ray")
    assert backend.returncode != 0
    assert "AIORAY_BACKEND=ray selects aioray's Ray backend" in backend.stderr


def test_nothing_changes_without_install() -> None:
    proc = _python("-c", textwrap.dedent('''
        import sys
        import aioray, aioray.as_ray, aioray.testing, aioray.pytest_plugin
        assert not aioray.as_ray.is_installed()
        assert not any(type(f).__name__ == "_RayFinder" for f in sys.meta_path)
        assert not any(p.endswith("shim") for p in sys.path)
        try:
            import ray
        except ModuleNotFoundError as e:
            print("plain:", e)
        else:
            print("real ray:", ray.__file__)
    '''))
    assert proc.returncode == 0, proc.stderr
    if importlib.util.find_spec("ray") is None:
        assert proc.stdout.strip() == "plain: No module named 'ray'"
    else:
        assert "real ray:" in proc.stdout


def test_install_from_env(fake_ray: Path) -> None:
    code = ("import aioray.as_ray as h; on = h.install_from_env(); "
            "import ray; print(on, ray.__name__)")
    env = {"PYTHONPATH": os.pathsep.join([str(fake_ray),
                                          *filter(None, [os.environ.get("PYTHONPATH")])])}
    assert _python("-c", code, AIORAY_AS_RAY="0", **env).stdout.strip() == "False ray"
    assert _python("-c", code, AIORAY_AS_RAY="shadow", **env).stdout.strip() == "True aioray"
    assert "a real Ray is installed" in _python("-c", code, AIORAY_AS_RAY="1", **env).stderr


# -- the mapping, in this process -------------------------------------------------------------
def test_ray_is_the_aioray_module_and_submodules_map(hook: None) -> None:
    import ray
    import ray.exceptions
    import ray.util.placement_group
    import ray.util.scheduling_strategies
    from ray.util import ActorPool
    from ray.util.queue import Queue

    assert ray is aioray
    assert ray.get is aioray.get and ray.remote is aioray.remote
    assert ray.exceptions is aioray.exceptions
    assert ActorPool is aioray.util.ActorPool
    assert Queue is aioray.util.queue.Queue
    assert ray.util.scheduling_strategies is sys.modules["aioray.util.scheduling_strategies"]
    # The module is importable and the package attribute is still Ray's function.
    assert sys.modules["ray.util.placement_group"] is sys.modules["aioray.util.placement_group"]
    assert ray.util.placement_group is aioray.util.placement_group
    assert callable(ray.util.placement_group)
    assert importlib.import_module("ray.actor") is aioray.actor
    assert aioray.__spec__ is not None and aioray.__spec__.name == "aioray"  # untouched


def test_ray_internals_fail_with_a_clear_error(hook: None) -> None:
    for name in ("ray._private.worker", "ray._raylet", "ray._x", "ray._common.utils",
                 "ray.util._internal"):
        with pytest.raises(ImportError) as info:
            importlib.import_module(name)
        assert str(info.value).startswith(f"{name} is Ray-internal and not provided by aioray")
        assert info.value.name == name
    with pytest.raises(ImportError, match=r"^ray\._private\.worker is Ray-internal"):
        from ray._private import worker  # noqa: F401
    import ray
    with pytest.raises(AttributeError, match=r"^ray\._private\.worker is Ray-internal"):
        ray._private.worker  # noqa: B018


def test_public_ray_modules_aioray_lacks_fail_naming_them(hook: None) -> None:
    for name in ("ray.serve", "ray.no_such_module", "ray.util.no_such_module"):
        with pytest.raises(ImportError) as info:
            importlib.import_module(name)
        assert str(info.value).startswith(f"{name} is not provided by aioray")
    with pytest.raises(ImportError, match=r"ray\.testing is not a Ray module"):
        importlib.import_module("ray.testing")


def test_ray_test_utils_are_aioray_testing(hook: None) -> None:
    import ray
    import ray._private.test_utils
    from ray._common.test_utils import SignalActor, wait_for_condition

    assert ray._private.test_utils is aioray.testing
    assert SignalActor is aioray.testing.SignalActor
    assert wait_for_condition is aioray.testing.wait_for_condition
    assert ray._common.test_utils is aioray.testing


@pytest.fixture
def hook_on_use() -> Iterator[None]:
    """ray-import mode with internals failing on use, in this process for one test."""
    if _real_ray_imported():
        pytest.skip("a real Ray is imported in this session")
    as_ray.install(shadow=True, internals="on-use")
    try:
        yield
    finally:
        as_ray.uninstall()


def test_internals_on_use_import_and_fail_where_used(hook_on_use: None) -> None:
    import ray
    import ray.cluster_utils
    from ray import ray_constants
    from ray._private.client_mode_hook import client_mode_should_convert
    from ray._private.test_utils import BatchQueue, wait_for_condition
    from ray._private.utils import DeferSigint
    from ray._raylet import GcsClient, ObjectRefGenerator

    assert os.environ[as_ray.INTERNALS_ENV_VAR] == "on-use"  # worker processes follow
    uses = {
        "ray._private.utils.DeferSigint cannot be used: ray._private.utils is Ray-internal":
            lambda: DeferSigint(),
        "ray.ray_constants cannot be used": lambda: ray_constants.KV_NAMESPACE_FUNCTION_TABLE,
        "ray._raylet.GcsClient cannot be used": lambda: GcsClient("addr"),
        "ray.cluster_utils.Cluster cannot be used: ray.cluster_utils is not provided":
            lambda: ray.cluster_utils.Cluster(),
        "ray._private.test_utils.BatchQueue cannot be used: aioray.testing": lambda: BatchQueue(),
        "ray._private.utils.DeferSigint cannot be used": lambda: bool(DeferSigint),
        "ray._private.worker cannot be used: ray._private is Ray-internal":
            lambda: ray._private.worker.global_worker,
    }
    for message, use in uses.items():
        with pytest.raises(ImportError, match=re.escape(message)):
            use()
    with pytest.raises(ImportError, match="DeferSigint cannot be used"):
        class Sub(DeferSigint):  # type: ignore[misc, valid-type]
            pass
    with pytest.raises(ImportError, match="DeferSigint cannot be used"):
        with DeferSigint:
            pass
    # What aioray can answer truthfully, it does.
    assert ObjectRefGenerator is aioray.ObjectRefGenerator
    assert wait_for_condition is aioray.testing.wait_for_condition
    assert client_mode_should_convert() is False
    # ...also reached as attributes, without an import of their own (Ray's skipif does so).
    assert ray._private.client_mode_hook.is_client_mode_enabled is False
    assert ray._raylet.ObjectRefGenerator is aioray.ObjectRefGenerator
    as_ray.uninstall()  # leaves no stand-in behind on aioray's modules
    from aioray.as_ray.standins import StandInModule
    assert not [(m, a) for m, mod in list(sys.modules.items()) if m.startswith("aioray")
                for a, v in vars(mod).items() if isinstance(v, StandInModule)]
    assert not hasattr(aioray, "ray_constants")
    assert "fails on use" in repr(DeferSigint)


def test_ray_experimental_state_is_util_state(hook: None) -> None:
    from ray.experimental.state.api import list_actors  # Ray's deprecated spelling
    assert list_actors is aioray.util.state.list_actors


def test_internals_mode_checks(hook: None) -> None:
    with pytest.raises(RuntimeError, match="already installed with internals='import-error'"):
        as_ray.install(shadow=True, internals="on-use")
    as_ray.uninstall()
    with pytest.raises(ValueError, match="internals='later'"):
        as_ray.install(shadow=True, internals="later")
    assert not as_ray.is_installed()
    as_ray.install(shadow=True)


RAY_MODULE_WITH_INTERNALS = '''
import os

import ray
from ray._private.utils import DeferSigint  # only one test uses it


def double(x):
    return 2 * x


@ray.remote
def in_worker(x):  # the worker imports this module, and so the internal, too
    return double(x), os.getpid()


def test_needs_no_internal(ray_start_regular):
    value, pid = ray.get(in_worker.remote(21))
    assert value == 42 and pid != os.getpid()


def test_uses_the_internal(ray_start_regular):
    with DeferSigint():
        pass
'''


def test_pytest_internals_on_use(pytester: pytest.Pytester,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIORAY_AS_RAY", raising=False)
    monkeypatch.delenv(as_ray.INTERNALS_ENV_VAR, raising=False)
    pytester.makepyfile(test_internal=RAY_MODULE_WITH_INTERNALS)
    strict = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--aioray-as-ray",
                                           timeout=180)
    strict.assert_outcomes(errors=1)  # the module is not collected
    strict.stdout.fnmatch_lines(["*ray._private.utils is Ray-internal*"])
    on_use = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                           "--aioray-as-ray-internals=on-use", timeout=180)
    on_use.assert_outcomes(passed=1, failed=1)
    on_use.stdout.fnmatch_lines(["*ImportError: ray._private.utils.DeferSigint cannot be used*"])
    monkeypatch.setenv(as_ray.INTERNALS_ENV_VAR, "on-use")
    by_env = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--aioray-as-ray",
                                           timeout=180)
    by_env.assert_outcomes(passed=1, failed=1)
    monkeypatch.setenv(as_ray.INTERNALS_ENV_VAR, "sometimes")
    bad = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--aioray-as-ray", timeout=180)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*AIORAY_AS_RAY_INTERNALS='sometimes'*"])


def test_script_switch_internals_on_use(tmp_path: Path) -> None:
    code = ("from ray._private.utils import DeferSigint\n"
            "import ray\n"
            "print(ray.get(ray.put(1)))\n"
            "DeferSigint()\n")
    strict = _python("-m", "aioray.as_ray", "-c", code, cwd=tmp_path)
    assert strict.returncode == 1 and "ray._private.utils is Ray-internal" in strict.stderr
    on_use = _python("-m", "aioray.as_ray", "--internals=on-use", "-c", code, cwd=tmp_path)
    assert on_use.stdout.strip() == "1"
    assert "DeferSigint cannot be used" in on_use.stderr
    assert _python("-m", "aioray.as_ray", "--internals=maybe", "-c", code).returncode == 2


def test_uninstall_restores_everything(hook: None) -> None:
    import ray
    import ray._private.test_utils
    import ray.util.queue

    assert ray is aioray
    as_ray.uninstall()
    assert not as_ray.is_installed()
    assert not [n for n in sys.modules if n == "ray" or n.startswith("ray.")]
    assert not hasattr(aioray, "_private") and not hasattr(aioray, "_common")
    assert "__getattr__" not in vars(aioray) and as_ray.INTERNALS_ENV_VAR not in os.environ
    assert not any(isinstance(f, as_ray._RayFinder) for f in sys.meta_path)
    assert as_ray._SHIM_DIR not in sys.path
    if importlib.util.find_spec("ray") is None:
        with pytest.raises(ModuleNotFoundError, match="No module named 'ray'"):
            importlib.import_module("ray")
    as_ray.install(shadow=True)  # and back on, as often as needed
    assert importlib.import_module("ray") is aioray


def test_object_id_is_rays_deprecated_alias() -> None:
    assert aioray.ObjectID is aioray.ObjectRef


# -- actor.__ray_ready__ ---------------------------------------------------------------------
@aioray.remote
class _SlowInit:
    def __init__(self, signal: object) -> None:
        aioray.get(signal.wait.remote())  # type: ignore[attr-defined]

    def ping(self) -> str:
        return "pong"


@aioray.remote
class _BadInit:
    def __init__(self) -> None:
        raise ValueError("init failed: boom")


@aioray.remote
class _AsyncActor:
    async def ping(self) -> str:
        return "pong"


def test_ray_ready_resolves_once_init_finished(ray_start_regular: object) -> None:
    signal = aioray.testing.SignalActor.remote()
    actor = _SlowInit.remote(signal)
    ready = actor.__ray_ready__.remote()
    ready_now, _ = aioray.wait([ready], timeout=0.2)
    assert ready_now == []  # __init__ is still blocked on the signal
    aioray.get(signal.send.remote())
    assert aioray.get(ready, timeout=30) is True
    assert aioray.get(actor.ping.remote()) == "pong"


def test_ray_ready_raises_the_init_error(ray_start_regular: object) -> None:
    actor = _BadInit.remote()
    with pytest.raises(aioray.exceptions.ActorDiedError, match="init failed: boom"):
        aioray.get(actor.__ray_ready__.remote(), timeout=30)


def test_ray_ready_on_async_actors(ray_start_regular: object) -> None:
    actor = _AsyncActor.remote()
    assert aioray.get(actor.__ray_ready__.remote(), timeout=30) is True
