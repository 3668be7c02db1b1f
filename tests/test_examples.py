"""Every script in examples/ runs to completion (exit code 0) with short sleeps, prints the lines
that show its examples worked, and exits without asyncio's leftover-task noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# script -> lines (substrings) its output must contain
EXPECTED: dict[str, list[str]] = {
    "observe.py": ["total: 20540", "Sink.add     ACTOR_TASK   {'FINISHED': 4}",
                   "transform    NORMAL_TASK  {'FINISHED': 4}", "('Sink', 'ALIVE'",
                   "('items_processed', {'stage': 'transform'}, 40.0)", "trace events"],
    "quickstart.py": ["squares: [0, 1, 4, 9, 16, 25, 36, 49]", "caught the task's ValueError",
                      "done"],
    "seed_000_generators.py": [
        "Exception is raised when i == 1 as expected",
        "ref1 is still usable after del gen: 0",
        "completed; refs left to take: [0, 1, 2, 3, 4]",
        "timeout 0, nothing is ready.",
        "result: [0, 1, 2, 3, 4, None]",
        "seed_000_generators: all examples ran",
    ],
    "seed_001_streaming_generators.py": [
        "completed: [0, 1, 2, 3, 4]", "seed_001_streaming_generators: all examples ran"],
    "seed_002_dynamic_generators.py": [
        "list version: [(2000000, 1), (2000000, 1), (2000000, 1)]",
        "yielded return value 2",
        "generator version: [(2000000, 1), (2000000, 1), (2000000, 1)]",
        "blocks of size 1000 each.",
        "get_size saw every element",
        "both values arrived",
        "seed_002_dynamic_generators: all examples ran",
    ],
    "seed_003_ray_core_blog.py": [
        "ValueError", "final: 30", "orange2 is not in colors", "g1 killed, g2 exited",
        "finished", "both ways waited", "hello 1", "f3 ran in the compute group",
        "[2, 4, 6, 8]", "got work 9", "seed_003_ray_core_blog: all examples ran",
    ],
    "seed_004_ray_api.py": [
        "{'CPU': 20.0, 'GPU': 2.0}", "aioray: init(address='12.345.67.89:6379')",
        "{'key1': ['value']}", "a returned array is read-only: True", "2 ready, 1 remaining",
        "ray.get raised: Exception in f", "seed_004_ray_api: all examples ran",
    ],
}

# What asyncio prints when a runtime leaves tasks behind at exit.
NOISE = ["Task was destroyed but it is pending", "exception was never retrieved"]


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str) -> None:
    env = {**os.environ, "AIORAY_EXAMPLE_SLEEP_SCALE": "0.01",
           "AIORAY_EXAMPLE_SIZE_SCALE": "0.02", "PYTHONUNBUFFERED": "1"}
    env.pop("AIORAY_SILENCE_UNRETRIEVED_ERRORS", None)
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=EXAMPLES, env=env,
                          capture_output=True, text=True, timeout=180)
    tail = f"\n--- stdout (end) ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{script} exited with {proc.returncode}{tail}"
    missing = [line for line in EXPECTED[script] if line not in proc.stdout]
    assert not missing, f"{script} did not print {missing}{tail}"
    noise = [n for n in NOISE if n in proc.stderr]
    assert not noise, f"{script} left asyncio noise {noise}{tail}"
