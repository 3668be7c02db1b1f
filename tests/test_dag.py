"""``aioray.dag``: Ray's DAG API (``.bind`` / ``InputNode`` / ``MultiOutputNode`` /
``execute``) with Ray's semantics — nodes run as ordinary tasks and actor calls, upstream
results travel as refs, a class node creates one actor per ``execute``, calls bound on one
class node keep their bind order — and a clear error for compiled graphs."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

import aioray as ray
from aioray.dag import (
    ClassMethodNode,
    ClassNode,
    DAGNode,
    FunctionNode,
    InputAttributeNode,
    InputNode,
    MultiOutputNode,
)

TIMEOUT = 30


@ray.remote
def func(src: int, inc: int = 1) -> int:
    return src + inc


@ray.remote
def combine(x: int, y: int) -> int:
    return x + y


@ray.remote
def describe(top: Any, nested: list[Any]) -> tuple[str, str]:
    return type(top).__name__, type(nested[0]).__name__


@ray.remote
def pair(x: int) -> tuple[int, int]:
    return x, -x


@ray.remote
def fail(x: int) -> int:
    raise ValueError(f"bad input {x}")


@ray.remote
async def ainc(x: int) -> int:
    return x + 1


@ray.remote
class Actor:
    def __init__(self, init_value: int) -> None:
        self.i = init_value

    def inc(self, x: int) -> None:
        self.i += x

    def get(self) -> int:
        return self.i

    def add(self, x: int) -> int:
        self.i += x
        return self.i

    def actor_id(self) -> str:
        return ray.get_runtime_context().get_actor_id() or ""

    @ray.method(num_returns=2)
    def split(self, x: int) -> tuple[int, int]:
        return x, self.i


def get(refs: Any) -> Any:
    return ray.get(refs, timeout=TIMEOUT)


# -- functions ------------------------------------------------------------------------------
def test_function_nodes_chain_like_the_ray_docs(ray: Any) -> None:
    a_ref = func.bind(1, inc=2)
    assert isinstance(a_ref, FunctionNode) and isinstance(a_ref, DAGNode)
    assert get(a_ref.execute()) == 3
    b_ref = func.bind(a_ref, inc=3)
    assert get(b_ref.execute()) == 6
    c_ref = func.bind(b_ref, inc=a_ref)
    assert get(c_ref.execute()) == 9


def test_execute_returns_an_object_ref_and_waits_for_nothing(ray: Any) -> None:
    ref = func.bind(1).execute()
    assert isinstance(ref, ray.ObjectRef)
    assert get(ref) == 2


def test_upstream_results_are_passed_as_refs(ray: Any) -> None:
    # Top-level: resolved before the task runs; nested in a list: still a ref (Ray's rule).
    up = func.bind(1)
    assert get(describe.bind(up, [up]).execute()) == ("int", "ObjectRef")


def test_a_shared_upstream_node_runs_once_per_execute(ray: Any) -> None:
    counter = Actor.remote(0)
    up = counter.add.bind(1)
    assert get(combine.bind(up, up).execute()) == 2  # add(1) ran once: 1 + 1
    assert get(counter.get.remote()) == 1


# -- InputNode ------------------------------------------------------------------------------
def test_input_node_index_and_attribute_access(ray: Any) -> None:
    with InputNode() as inp:
        first = inp[0]
        x = inp.x
        assert isinstance(first, InputAttributeNode) and isinstance(x, InputAttributeNode)
        dag = combine.bind(first, x)
    assert get(dag.execute(1, x=2)) == 3
    assert get(dag.execute(10, x=20)) == 30


def test_input_node_single_object_is_indexed_or_read(ray: Any) -> None:
    with InputNode() as inp:
        by_index = combine.bind(inp[0], inp[1])
        by_key = combine.bind(inp["a"], inp["b"])
        by_attr = combine.bind(inp.a, inp.b)
        whole = func.bind(inp)
    assert get(by_index.execute([2, 3])) == 5
    assert get(by_key.execute({"a": 4, "b": 5})) == 9
    assert get(by_attr.execute(SimpleNamespace(a=6, b=7))) == 13
    assert get(whole.execute(41)) == 42


def test_input_node_outside_a_with_block_fails_at_execute(ray: Any) -> None:
    inp = InputNode()
    dag = func.bind(inp)
    with pytest.raises(AssertionError, match="context manager"):
        dag.execute(1)


def test_input_node_takes_no_arguments(ray: Any) -> None:
    with pytest.raises(ValueError, match="InputNode"):
        InputNode(1)


def test_two_input_nodes_in_one_dag_are_rejected(ray: Any) -> None:
    with InputNode() as a, InputNode() as b:
        dag = combine.bind(a, b)
    with pytest.raises(AssertionError, match="one unique InputNode"):
        dag.execute(1)


# -- MultiOutputNode ------------------------------------------------------------------------
def test_multi_output_node_returns_a_list_of_refs(ray: Any) -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([func.bind(inp), func.bind(inp, inc=10), combine.bind(inp, inp)])
    out = dag.execute(5)
    assert isinstance(out, list) and len(out) == 3
    assert all(isinstance(r, ray.ObjectRef) for r in out)
    assert get(out) == [6, 15, 10]
    assert get(dag.execute(1)) == [2, 11, 2]


def test_multi_output_node_takes_a_list_or_tuple(ray: Any) -> None:
    assert get(MultiOutputNode((func.bind(1), func.bind(2))).execute()) == [2, 3]
    with pytest.raises(ValueError, match="list"):
        MultiOutputNode(func.bind(1))  # type: ignore[arg-type]


# -- actors -----------------------------------------------------------------------------------
def test_class_and_method_nodes_like_the_ray_docs(ray: Any) -> None:
    a1 = Actor.bind(10)
    assert isinstance(a1, ClassNode)
    val = a1.get.bind()
    assert isinstance(val, ClassMethodNode)
    assert get(val.execute()) == 10

    a2 = Actor.bind(10)
    a1.inc.bind(2)
    a1.inc.bind(4)
    a2.inc.bind(6)
    dag = combine.bind(a1.get.bind(), a2.get.bind())
    # Calls bound on a class node run before the later ones, even unused: (10+2+4) + (10+6).
    assert get(dag.execute()) == 32


def test_class_node_execute_returns_an_actor_handle(ray: Any) -> None:
    handle = Actor.bind(7).execute()
    assert isinstance(handle, ray.ActorHandle)
    assert get(handle.get.remote()) == 7


def test_class_node_makes_one_actor_per_execute(ray: Any) -> None:
    node = Actor.bind(0)
    dag = MultiOutputNode([node.add.bind(1), node.add.bind(2), node.actor_id.bind(),
                           node.actor_id.bind()])
    first = get(dag.execute())
    second = get(dag.execute())
    # One actor shared by the execution's method nodes, calls in bind order ...
    assert first[:2] == [1, 3] and first[2] == first[3]
    # ... and a fresh actor for the next execute (state starts over).
    assert second[:2] == [1, 3] and second[2] == second[3]
    assert first[2] != second[2]


def test_execute_twice_with_different_inputs(ray: Any) -> None:
    with InputNode() as inp:
        m1 = Actor.bind(1)
        m2 = Actor.bind(2)
        dag = combine.bind(m1.add.bind(inp[0]), m2.add.bind(inp.x))
    assert get(dag.execute(1, x=2)) == (1 + 1) + (2 + 2)
    assert get(dag.execute(10, x=20)) == (1 + 10) + (2 + 20)


def test_bind_on_an_existing_actor_handle(ray: Any) -> None:
    handle = Actor.remote(100)
    with InputNode() as inp:
        dag = handle.add.bind(inp)
    assert isinstance(dag, ClassMethodNode)
    assert get(dag.execute(1)) == 101
    assert get(dag.execute(2)) == 103  # the same actor: its state carries over
    assert get(handle.get.remote()) == 103


def test_handle_method_with_num_returns_binds_one_node_per_return(ray: Any) -> None:
    handle = Actor.remote(9)
    with InputNode() as inp:
        x, state = handle.split.bind(inp)
        dag = MultiOutputNode([x, state])
    assert get(dag.execute(4)) == [4, 9]


def test_class_node_refuses_input_node_arguments(ray: Any) -> None:
    with InputNode() as inp, pytest.raises(ValueError, match="InputNode"):
        Actor.bind(inp)


def test_class_node_unknown_method_is_an_attribute_error(ray: Any) -> None:
    with pytest.raises(AttributeError, match="nope"):
        Actor.bind(0).nope.bind()


def test_class_node_method_remote_is_an_attribute_error(ray: Any) -> None:
    with pytest.raises(AttributeError, match="bind"):
        Actor.bind(0).get.remote()


# -- options ----------------------------------------------------------------------------------
def test_options_bind_on_functions(ray: Any) -> None:
    with InputNode() as inp:
        dag = pair.options(num_returns=2).bind(inp)
    refs = dag.execute(3)
    assert isinstance(refs, list) and len(refs) == 2
    assert get(refs) == [3, -3]


def test_options_bind_on_actor_classes_and_methods(ray: Any) -> None:
    node = Actor.options(name="dag-actor").bind(5)
    dag = node.split.options(num_returns=2).bind(1)
    refs = dag.execute()
    assert get(refs) == [1, 5]
    assert get(ray.get_actor("dag-actor").get.remote()) == 5


# -- errors and misuse ------------------------------------------------------------------------
def test_task_errors_surface_on_get(ray: Any) -> None:
    dag = combine.bind(fail.bind(1), func.bind(1))
    with pytest.raises(ValueError, match="bad input 1"):
        get(dag.execute())


def test_nodes_have_no_bind_or_remote(ray: Any) -> None:
    node = func.bind(1)
    with pytest.raises(AttributeError, match="cannot be used again"):
        node.bind(2)
    with pytest.raises(AttributeError, match="execute"):
        node.remote()


def test_experimental_compile_is_not_supported(ray: Any) -> None:
    with InputNode() as inp:
        dag = func.bind(inp)
    with pytest.raises(NotImplementedError, match="experimental_compile"):
        dag.experimental_compile()


# -- scale and async --------------------------------------------------------------------------
def test_a_chain_deeper_than_the_recursion_limit(ray: Any) -> None:
    depth = sys.getrecursionlimit() + 200
    with InputNode() as inp:
        node: Any = inp
        for _ in range(depth):
            node = ainc.bind(node)
    assert get(node.execute(0)) == depth


async def test_await_a_dag_result_in_async_code(aray: Any) -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([ainc.bind(inp), func.bind(ainc.bind(inp))])
    refs = dag.execute(1)
    assert [await r for r in refs] == [2, 3]


def test_ray_dag_is_an_attribute_after_import_aioray() -> None:
    code = "import aioray as ray; print(ray.dag.InputNode.__name__, ray.dag.MultiOutputNode.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["InputNode", "MultiOutputNode"]
