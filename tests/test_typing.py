"""The public types, proven with mypy: tests/typing/test_types.py must type-check cleanly under
``--strict`` (its ``assert_type`` calls hold), and every ``# E: text`` line of
tests/typing/fail_types.py must get exactly the error it names (and no other line any). The
same for typed actors with aioray's mypy plugin, in tests/typing/plugin/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPING = ROOT / "tests" / "typing"
_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<msg>.*)$")

pytest.importorskip("mypy")


def _mypy(*args: str) -> dict[str, dict[int, list[str]]]:
    """relative path -> line -> error messages."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--show-absolute-path",
         "--no-pretty", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2 = mypy itself failed
    errors: dict[str, dict[int, list[str]]] = {}
    for raw in proc.stdout.splitlines():
        m = _LINE.match(raw)
        if m is None or m["kind"] != "error":
            continue
        rel = Path(m["path"]).resolve().relative_to(ROOT).as_posix()
        errors.setdefault(rel, {}).setdefault(int(m["line"]), []).append(m["msg"])
    return errors


@pytest.fixture(scope="module")
def mypy_errors() -> dict[str, dict[int, list[str]]]:
    """mypy (config from pyproject: strict) over the package and the typing files, and (config
    tests/typing/plugin/mypy.ini: strict + aioray.mypy_plugin) over the plugin's files."""
    errors = _mypy("aioray", str(TYPING / "test_types.py"), str(TYPING / "fail_types.py"))
    plugin = TYPING / "plugin"
    with_plugin = _mypy("--config-file", str(plugin / "mypy.ini"),
                        str(plugin / "test_plugin_types.py"), str(plugin / "fail_plugin_types.py"))
    errors.update({k: v for k, v in with_plugin.items() if k.startswith("tests/")})
    return errors


def _format(errs: dict[int, list[str]]) -> str:
    return "\n".join(f"  {line}: {msg}" for line, msgs in sorted(errs.items()) for msg in msgs)


@pytest.mark.parametrize("path", ["test_types.py", "plugin/test_plugin_types.py"])
def test_correct_code_type_checks(mypy_errors: dict[str, dict[int, list[str]]],
                                  path: str) -> None:
    errs = mypy_errors.get(f"tests/typing/{path}", {})
    assert not errs, "mypy rejected correct code:\n" + _format(errs)


@pytest.mark.parametrize(("path", "at_least"), [("fail_types.py", 15),
                                                ("plugin/fail_plugin_types.py", 7)])
def test_wrong_code_is_reported(mypy_errors: dict[str, dict[int, list[str]]], path: str,
                                at_least: int) -> None:
    source = (TYPING / path).read_text().splitlines()
    expected = {i: line.split("# E: ", 1)[1].strip()
                for i, line in enumerate(source, start=1) if "# E: " in line}
    assert len(expected) >= at_least
    got = mypy_errors.get(f"tests/typing/{path}", {})
    missing = {line: text for line, text in expected.items()
               if not any(text in msg for msg in got.get(line, []))}
    unexpected = {line: msgs for line, msgs in got.items() if line not in expected}
    assert not missing, "mypy did not report:\n" + "\n".join(
        f"  {line}: {text}\n    got: {got.get(line)}" for line, text in sorted(missing.items()))
    assert not unexpected, "mypy reported errors on lines without '# E:':\n" + _format(
        unexpected)


def test_package_passes_mypy_strict(mypy_errors: dict[str, dict[int, list[str]]]) -> None:
    pkg = {path: errs for path, errs in mypy_errors.items() if path.startswith("aioray/")}
    assert not pkg, "mypy --strict errors in the package:\n" + "\n".join(
        f"{path}\n{_format(errs)}" for path, errs in sorted(pkg.items()))
