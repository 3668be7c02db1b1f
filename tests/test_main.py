"""``python -m aioray`` prints what the installation runs on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import aioray


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aioray", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_prints_version_loop_resources_and_worker_start() -> None:
    proc = _run(AIORAY_LOOP="asyncio")
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(":", 1) for line in proc.stdout.splitlines())
    assert lines["aioray"].strip() == aioray.__version__
    assert lines["event loop"].strip().startswith("asyncio (")
    assert "CPU" in lines["resources"]
    assert lines["worker start"].strip() == "subprocess (python -m aioray._worker)"
    assert lines["local mode"].strip().startswith("off")
    assert lines["backend"].strip().startswith("embedded")


def test_json_output_and_local_mode_env() -> None:
    proc = _run("--json", AIORAY_LOCAL_MODE="1")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["version"] == aioray.__version__
    assert data["resources"]["CPU"] >= 1
    assert data["local_mode"] is True
    assert data["worker_start_method"].startswith("subprocess")
    assert data["loop"]  # uvloop or asyncio (...)
