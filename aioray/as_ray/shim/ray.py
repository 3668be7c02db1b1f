"""Imported as ``ray`` only in processes whose ``sys.path`` came from a driver in ray-import mode:
aioray's worker processes, which import the test modules (and so ``ray``) of the functions they
run. It installs the hook there and hands out aioray itself (see :mod:`aioray.as_ray`)."""

if __name__ == "ray":
    from aioray.as_ray import _adopt_in_worker

    _adopt_in_worker()  # sys.modules["ray"] is aioray now: the import of ray returns it
