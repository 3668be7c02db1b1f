"""``ray.cloudpickle``: the cloudpickle aioray serializes with (``from ray import cloudpickle``).

``dumps`` is aioray's pickler (cloudpickle's, keeping code objects' file names and lines);
everything else is cloudpickle's own.
"""

from cloudpickle import *  # noqa: F403
from cloudpickle import CloudPickler, dump, load, loads

from aioray._objects.pickler import dumps

__all__ = ["CloudPickler", "dump", "dumps", "load", "loads"]
