"""``aioray.experimental``: Ray's ``ray.experimental`` names that aioray provides
(``tqdm_ray``)."""

from aioray.experimental import tqdm_ray

__all__ = ["tqdm_ray"]
