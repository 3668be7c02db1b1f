"""``import aioray as ray`` alone gives the submodules Ray code reaches through the package:
``ray.actor.exit_actor()``, ``ray.util.ActorPool``, ``ray.util.queue.Queue``,
``ray.exceptions.RayTaskError`` (checked in a fresh interpreter: in this one other tests have
imported them already)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import aioray as ray
print(ray.actor.exit_actor.__name__, ray.util.ActorPool.__name__, ray.util.queue.Queue.__name__,
      ray.util.placement_group.__name__, ray.exceptions.RayTaskError.__name__)
"""


def test_submodules_are_attributes_after_import_aioray() -> None:
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["exit_actor", "ActorPool", "Queue", "placement_group",
                                   "RayTaskError"]
