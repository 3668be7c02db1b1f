"""``aioray.experimental.tqdm_ray``: bars updated in tasks and actor processes, drawn by the
driver in one place (run as a script: the driver's stderr is what the user sees)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bars_from_four_tasks_and_an_actor_are_drawn_by_the_driver(tmp_path: Path) -> None:
    script = tmp_path / "bars.py"
    script.write_text(textwrap.dedent("""
        import aioray
        from aioray.experimental import tqdm_ray
        from aioray.experimental.tqdm_ray import tqdm

        aioray.init(num_cpus=2)

        @aioray.remote
        def work(i):
            for _ in tqdm(range(5), desc=f"task {i}", flush_interval_s=0):
                pass
            return i

        @aioray.remote
        class Worker:
            def run(self):
                bar = tqdm(total=3, desc="actor", unit="steps", flush_interval_s=0)
                for _ in range(3):
                    bar.update(1)
                bar.close()
                tqdm_ray.safe_print("printed between bars")

        print(aioray.get([work.remote(i) for i in range(4)]))
        aioray.get(Worker.remote().run.remote())
        with tqdm(total=2, desc="driver", flush_interval_s=0) as bar:
            bar.update(2)
        aioray.shutdown()
    """))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[0, 1, 2, 3]"]
    lines = proc.stderr.splitlines()
    for i in range(4):  # every task's bar reached the driver, to its end
        assert any(ln.startswith(f"task {i}: 5/5 it 100% (pid=") and ln.endswith("[done]")
                   for ln in lines), lines
        assert not any(ln.startswith("(work pid=") for ln in lines), lines  # not worker prints
    assert any(ln.startswith("actor: 3/3 steps 100%") and ln.endswith("[done]") for ln in lines)
    assert "printed between bars" in lines
    assert any(ln.startswith("driver: 2/2 it 100%") for ln in lines)
