"""What worker processes print reaches the driver's streams prefixed like Ray's.

Run as real scripts: the workers inherit the driver's stdout/stderr, so only a separate process
shows exactly what a user sees.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

import aioray

REPO = Path(__file__).resolve().parent.parent

_HEAD = """
import logging, os, sys
import aioray

@aioray.remote
def shout(i):
    print("stdout from task", i)
    print("stderr from task", i, file=sys.stderr)
    return os.getpid()

@aioray.remote
class MyActor:
    def __init__(self, index):
        self.index = index

    def __repr__(self):
        return f"MyActor(index={self.index})"

    def hi(self):
        print("hi from actor")
        return os.getpid()

@aioray.remote
class Plain:
    def hi(self):
        print("partial", end="")
        print(" line")
        return os.getpid()
"""


def _run(body: str, tmp_path: Path) -> tuple[str, str]:
    script = tmp_path / "s.py"
    script.write_text(_HEAD + textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, proc.stderr


def test_task_and_actor_lines_carry_rays_prefixes(tmp_path: Path) -> None:
    out, err = _run("""
        aioray.init(num_cpus=2)
        t = aioray.get(shout.remote(0))
        a = aioray.get(MyActor.remote(1).hi.remote())
        p = aioray.get(Plain.remote().hi.remote())
        print("PIDS", t, a, p)
        aioray.shutdown()
    """, tmp_path)
    t, a, p = (int(x) for x in re.search(r"PIDS (\d+) (\d+) (\d+)", out).groups())
    lines = out.splitlines()
    assert f"(shout pid={t}) stdout from task 0" in lines
    assert f"(MyActor(index=1) pid={a}) hi from actor" in lines  # its __repr__, as Ray
    assert f"(Plain pid={p}) partial line" in lines  # whole lines only
    assert err.splitlines() == [f"(shout pid={t}) stderr from task 0"]  # stderr stays stderr


def test_log_to_driver_false_silences_workers(tmp_path: Path) -> None:
    out, err = _run("""
        aioray.init(num_cpus=2, log_to_driver=False)
        aioray.get([shout.remote(0), MyActor.remote(1).hi.remote()])
        print("driver still prints")
        aioray.shutdown()
    """, tmp_path)
    assert out.splitlines() == ["driver still prints"]
    assert err == ""


def test_worker_logging_follows_the_drivers_root_set_up(tmp_path: Path) -> None:
    out, err = _run("""
        logging.basicConfig(level=logging.INFO, format="%(levelname)s|%(name)s|%(message)s")
        aioray.init(num_cpus=2)

        @aioray.remote
        def log():
            logging.getLogger("app").info("info from a task")
            logging.getLogger("app").debug("hidden: below the driver's level")
            return os.getpid()

        pid = aioray.get(log.remote())
        print("PID", pid)
        aioray.shutdown()
    """, tmp_path)
    pid = int(re.search(r"PID (\d+)", out).group(1))
    assert err.splitlines() == [f"(log pid={pid}) INFO|app|info from a task"]


def test_worker_process_titles_say_what_runs(ray: object) -> None:
    pytest.importorskip("setproctitle")

    @aioray.remote
    class Titled:
        def title(self) -> str:
            return " ".join(psutil.Process().cmdline())

    @aioray.remote
    def task_title() -> str:
        return " ".join(psutil.Process().cmdline())

    assert aioray.get(Titled.remote().title.remote()).startswith("aioray::Titled")
    assert aioray.get(task_title.remote()).startswith("aioray::task_title")
