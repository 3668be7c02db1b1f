"""``aioray.util.multiprocessing``: Ray's ``ray.util.multiprocessing`` — a drop-in for
``multiprocessing.Pool`` whose work runs as aioray tasks in worker processes::

    from aioray.util.multiprocessing import Pool

    with Pool(processes=4) as pool:
        print(pool.map(square, range(10)))
"""

from multiprocessing import TimeoutError

from aioray.util.multiprocessing.pool import AsyncResult, IMapIterator, Pool

__all__ = ["AsyncResult", "IMapIterator", "Pool", "TimeoutError"]
