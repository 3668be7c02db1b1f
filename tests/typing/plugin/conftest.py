"""These files are for mypy (tests/test_typing.py checks them), not for pytest to import."""

collect_ignore_glob = ["*.py"]
