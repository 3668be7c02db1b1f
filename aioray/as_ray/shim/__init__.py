"""This directory goes on ``sys.path`` while ray-import mode is on (see :mod:`aioray.as_ray`);
its ``ray.py`` is what aioray's worker processes import as ``ray``. (This ``__init__`` only
keeps tools such as mypy from taking ``ray.py`` for a top-level ``ray`` module.)"""
