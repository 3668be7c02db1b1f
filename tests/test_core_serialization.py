"""What crosses to a worker process and back arrives intact: functions and actor classes that
refer to themselves, real tracebacks (file, line, source) with any cloudpickle version, buffers of
any type and size, 64-bit frames."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aioray
from aioray._objects import pickler as _pickle
from aioray._objects.serialization import SerializedObject
from aioray._objects.shm import SharedBuffer
from aioray._wire import framing as _protocol
from aioray._wire.messages import Ready

REPO = Path(__file__).resolve().parent.parent


@aioray.remote
def level(depth: int) -> int:
    """Ray's nested-parallelism pattern: a task that submits itself."""
    if depth == 0:
        return 0
    return 1 + aioray.get(level.remote(depth - 1))


@aioray.remote
def is_even(n: int) -> bool:
    return True if n == 0 else aioray.get(is_odd.remote(n - 1))


@aioray.remote
def is_odd(n: int) -> bool:
    return False if n == 0 else aioray.get(is_even.remote(n - 1))


@aioray.remote
class SelfRef:
    def hello(self) -> str:
        return "hi"

    def clone(self) -> Any:
        return SelfRef.remote()


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_self_recursive_module_function(ray: Any, executor: str) -> None:
    assert aioray.get(level.options(executor=executor).remote(3)) == 3


def test_mutually_recursive_functions(ray: Any) -> None:
    assert aioray.get(is_even.remote(4)) is True
    assert aioray.get(is_odd.remote(3)) is True


def test_recursive_function_defined_in_a_test(ray: Any) -> None:
    @aioray.remote
    def fib(n: int) -> int:
        if n < 2:
            return n
        a, b = fib.remote(n - 1), fib.remote(n - 2)
        return sum(aioray.get([a, b]))

    assert aioray.get(fib.remote(5)) == 5


def test_recursive_function_pickles_without_recursion() -> None:
    @aioray.remote
    def me(n: int) -> int:
        return n if n == 0 else aioray.get(me.remote(n - 1))

    again = pickle.loads(_pickle.dumps(me))
    assert again is me  # one RemoteFunction per id in a process
    blob = me._pickled_function()
    assert me._pickled is blob
    assert pickle.loads(_pickle.dumps(me)) is me  # now shipped as the cached bytes


def test_recursive_function_in_an_importable_module(ray: Any, tmp_path: Path,
                                                    monkeypatch: Any) -> None:
    (tmp_path / "recmod_for_aioray.py").write_text(textwrap.dedent("""
        import aioray

        @aioray.remote
        def down(n):
            return n if n == 0 else 1 + aioray.get(down.remote(n - 1))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    aioray.shutdown()
    aioray.init(num_cpus=2)  # workers take the driver's sys.path at start
    import recmod_for_aioray
    try:
        assert aioray.get(recmod_for_aioray.down.remote(3)) == 3
    finally:
        sys.modules.pop("recmod_for_aioray", None)


def test_recursive_function_in_main_script(tmp_path: Path) -> None:
    script = tmp_path / "rec_main.py"
    script.write_text(textwrap.dedent("""
        import aioray as ray

        @ray.remote
        def level(depth):
            return 0 if depth == 0 else 1 + ray.get(level.remote(depth - 1))

        @ray.remote
        def is_even(n):
            return True if n == 0 else ray.get(is_odd.remote(n - 1))

        @ray.remote
        def is_odd(n):
            return False if n == 0 else ray.get(is_even.remote(n - 1))

        if __name__ == "__main__":
            ray.init(num_cpus=2)
            print("RESULT", ray.get(level.remote(3)), ray.get(is_even.remote(3)))
    """))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert "RESULT 3 False" in out.stdout, out.stdout + out.stderr


def test_actor_class_naming_itself_created_in_a_process_task(ray: Any) -> None:
    @aioray.remote
    def make_and_call() -> tuple[str, str]:
        a = SelfRef.remote()
        b = aioray.get(a.clone.remote())
        return aioray.get(a.hello.remote()), aioray.get(b.hello.remote())

    assert aioray.get(make_and_call.remote()) == ("hi", "hi")


def test_local_actor_class_naming_itself_created_in_a_process_task(ray: Any) -> None:
    @aioray.remote
    class Node:
        def __init__(self, depth: int) -> None:
            self.child = Node.remote(depth - 1) if depth else None

        def depth(self) -> int:
            return 0 if self.child is None else 1 + aioray.get(self.child.depth.remote())

    @aioray.remote
    def build() -> int:
        return aioray.get(Node.remote(2).depth.remote())

    assert aioray.get(build.remote()) == 2


def test_traceback_names_the_users_file_line_and_source(ray: Any) -> None:
    def make() -> Any:  # defined in a test function: pickled by value
        @aioray.remote
        def broken(x: int) -> int:
            raise ValueError(f"bad {x}")  # the line the traceback must show
        return broken

    with pytest.raises(ValueError) as ei:
        aioray.get(make().remote(7))
    tb = ei.value.traceback_str  # type: ignore[attr-defined]
    assert f'File "{__file__}"' in tb
    assert 'raise ValueError(f"bad {x}")  # the line the traceback must show' in tb
    assert "<dynamic-code>" not in tb


def test_pickled_code_keeps_file_and_line() -> None:
    def inner() -> None:
        pass

    code = pickle.loads(_pickle.dumps(inner)).__code__
    assert code.co_filename == __file__
    assert code.co_firstlineno == inner.__code__.co_firstlineno


# -- buffers -------------------------------------------------------------------------------------
BIG = 3 << 20


@aioray.remote
def make_buffer(kind: str) -> Any:
    data = bytes(range(256)) * (BIG // 256)
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    return memoryview(data).cast("I")


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_large_buffer_results_use_shared_memory(ray: Any, kind: str) -> None:
    ref = make_buffer.remote(kind)
    value = aioray.get(ref)
    expected = bytes(range(256)) * (BIG // 256)
    assert type(value).__name__ == kind
    if kind == "memoryview":
        assert value.format == "I" and value.nbytes == BIG and value.tobytes() == expected
    else:
        assert value == expected
    stored = ref._entry.value  # type: ignore[attr-defined]
    assert type(stored) is SerializedObject
    assert any(isinstance(b, SharedBuffer) for b in stored.buffers)
    assert len(stored.data) < 4096  # the bytes did not travel in-band


def test_large_bytes_put_round_trips_to_a_process_task(ray: Any) -> None:
    @aioray.remote
    def length(b: bytes) -> int:
        return len(b)

    data = os.urandom(BIG)
    ref = aioray.put(data)
    assert aioray.get(ref) == data
    assert aioray.get(length.remote(ref)) == BIG


def test_memoryview_round_trip_keeps_format_and_shape() -> None:
    np = pytest.importorskip("numpy")
    arr = np.arange(12, dtype="d").reshape(3, 4)
    for mv in (memoryview(arr), memoryview(arr)[::2], memoryview(b"abc")):
        bufs: list[pickle.PickleBuffer] = []
        back = pickle.loads(_pickle.dumps(mv, buffer_callback=bufs.append), buffers=bufs)
        assert isinstance(back, memoryview)
        assert back.format == mv.format and back.shape == mv.shape
        assert back.tolist() == mv.tolist()


def test_frames_carry_64_bit_lengths() -> None:
    frame = _protocol.encode(Ready(1))
    assert _protocol.HEADER.size == 8
    assert _protocol.HEADER.unpack_from(frame)[0] == len(frame) - 8
    # A length past 4 GiB fits the header (the old '!I' raised struct.error) and the reader
    # waits for that many bytes instead of misparsing.
    huge = _protocol.HEADER.pack(5 << 30)
    assert _protocol.HEADER.unpack(huge)[0] == 5 << 30
    got: list[Any] = []
    proto = _protocol.FrameProtocol(got.append, lambda exc: None)
    proto.data_received(huge + b"x" * 100)
    proto.data_received(frame)
    assert got == []  # still inside the 5 GiB frame
    proto2 = _protocol.FrameProtocol(got.append, lambda exc: None)
    proto2.data_received(frame[:5])
    proto2.data_received(frame[5:] + frame)
    assert got == [Ready(1), Ready(1)] and type(got[0]) is Ready
