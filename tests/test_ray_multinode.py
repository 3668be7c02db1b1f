"""The same program on a real two-node Ray cluster, started on this machine with Ray's own CLI.

Two nodes, as the README's "From one machine to a cluster" walkthrough starts them::

    ray start --head --num-cpus=1 --resources='{"head": 1}' ...
    ray start --address=<head> --num-cpus=1 --resources='{"node2": 1}' ...

each with its own ``--temp-dir`` and free ports (other Rays may run on this machine), and token
authentication as Ray 2.60 sets it up by default (``ray get-auth-token --generate``, the token
every process here then reads from ``~/.ray/auth_token``). The program connects through
aioray's Ray backend, configured only by the environment (``AIORAY_BACKEND=ray``,
``AIORAY_ADDRESS=<head>``), and checks what needs more than one node: tasks pinned to each
node by custom resources and by ``NodeAffinitySchedulingStrategy``, a ``STRICT_SPREAD``
placement group with an actor per bundle, a large numpy array made on one node and read on
the other, a streaming generator on the far node, ``get_runtime_context().get_node_id()`` and
``aioray.nodes()``.

The cluster is torn down at the end even on failure: the process groups the two ``ray start``
commands created (and their workers) are terminated by id. ``ray stop`` is not used: it stops
every Ray process on the machine, including other users' clusters.

In ``make test-ray`` (marker ``ray_cluster``, which implies ``ray_backend``) these tests run
last: a process connects to one Ray at a time, so the session's local Ray (the ``[ray]``
tests') is stopped first. Skipped where Ray is not installed. About a minute on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("ray", reason="Ray is not installed here: run `make test-ray`")

import aioray
from aioray._backend import registry
from aioray.util import placement_group, remove_placement_group
from aioray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

# Starting two nodes on 2 shared cores can take minutes: the setup counts towards the first
# test's timeout.
pytestmark = [pytest.mark.ray_cluster, pytest.mark.timeout(900)]

TIMEOUT = 180  # seconds, for anything that waits on the cluster: 2 shared cores
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
SOME = 0.01  # a sliver of a node's custom resource: pins a task without using the node up


# -- the cluster -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def node_ports() -> list[str]:
    """Every port a node opens, free ones picked here (Ray's defaults are fixed numbers that
    another Ray on this machine may hold); workers take random ports."""
    return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
            "--min-worker-port=0", "--max-worker-port=0"]


@dataclass
class Cluster:
    """The nodes ``ray start`` started: their process groups, for the teardown."""

    address: str = ""
    temp_root: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="aioray-mn-"))
    groups: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def ray_start(self, *args: str) -> None:
        """``ray start ...`` in a new process group, which the node's processes keep."""
        cmd = [RAY, "start", *args]
        proc = subprocess.Popen(cmd, env=self.env, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.groups.append(proc.pid)
        try:
            out, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise RuntimeError(f"`{' '.join(cmd)}` did not finish in {TIMEOUT}s:\n{out}") from None
        self.log.append(f"$ {' '.join(cmd)}\n{out}")
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{out}")

    def start(self) -> None:
        self.env = {**os.environ, "RAY_AUTH_MODE": "token"}
        self.env.pop("RAY_ADDRESS", None)
        # Token auth (Ray 2.60's default for new clusters): one token for the nodes and the
        # driver, in ~/.ray/auth_token; generated only if there is none.
        subprocess.run([RAY, "get-auth-token", "--generate"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT)
        import ray.util
        port = free_port()
        # This machine's address, as Ray picks it (Ray rewrites 127.0.0.1 to it anyway).
        self.address = f"{ray.util.get_node_ip_address()}:{port}"
        common = ["--num-cpus=1",
                  "--object-store-memory=200000000", "--disable-usage-stats"]
        self.ray_start("--head", f"--port={port}", "--resources={\"head\": 1}",
                       f"--temp-dir={self.temp_root}/head", "--include-dashboard=false",
                       *common, *node_ports())
        self.ray_start(f"--address={self.address}", "--resources={\"node2\": 1}",
                       f"--temp-dir={self.temp_root}/node2", *common, *node_ports())

    def processes(self) -> list[Any]:
        """Every live process of the two nodes: their groups' members and all descendants
        (Ray's workers run in process groups of their own, as children of a raylet)."""
        import psutil
        found: dict[int, Any] = {}
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) in self.groups:
                    found[p.pid] = p
                    for c in p.children(recursive=True):
                        found[c.pid] = c
            except (psutil.Error, ProcessLookupError):
                pass
        return list(found.values())

    def stop(self) -> None:
        """Terminate the nodes' processes (by id), then kill what is left after a grace."""
        import psutil
        procs = self.processes()
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _gone, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=30)
        shutil.rmtree(self.temp_root, ignore_errors=True)


def wait_for(what: str, check: Any, timeout: float = TIMEOUT) -> Any:
    """Poll ``check()`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    import ray
    if ray.is_initialized():
        ray.shutdown()  # the session's local Ray: a process connects to one Ray at a time
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def connected(cluster: Cluster) -> Iterator[Any]:
    """The unchanged program's configuration: only the environment names the backend and the
    cluster. Yields the Ray backend, detached between tests (as conftest's ``ray_session``)."""
    env = {"AIORAY_BACKEND": "ray", "AIORAY_ADDRESS": cluster.address}
    saved = {k: os.environ.get(k) for k in (*env, "RAY_AUTH_MODE")}
    os.environ.update(env)
    # Ray turns token mode on by itself only for a cluster it finds on its own (no address,
    # or "auto"); given an address, the program must run with RAY_AUTH_MODE=token (the
    # README's walkthrough sets it in the shell). This process started without it and Ray has
    # read its config already: set it the way Ray does for its own process.
    from ray._private.authentication.authentication_token_setup import _enable_token_auth
    _enable_token_auth()
    aioray.shutdown()
    try:
        # The workers import this module's functions by name.
        info = aioray.init(log_to_driver=False,
                           runtime_env={"env_vars": {"PYTHONPATH": TESTS_DIR}})
        assert info["backend"] == "ray"
        rb = registry._ray
        registry._ray = None
        # Both nodes have joined (the second registers a moment after `ray start` returns).
        wait_for("two alive nodes", lambda: len(alive_nodes(rb)) == 2)
        yield rb
        registry._ray = rb
        aioray.shutdown()
    finally:
        registry._ray = None
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def on_cluster(connected: Any) -> Iterator[Any]:
    registry._ray = connected
    try:
        yield connected
    finally:
        registry._ray = None


def alive_nodes(rb: Any) -> list[dict[str, Any]]:
    return [n for n in rb.nodes() if n["Alive"]]


def node_with(resource: str) -> str:
    ids = [n["NodeID"] for n in aioray.nodes() if n["Alive"] and resource in n["Resources"]]
    assert len(ids) == 1, aioray.nodes()
    return str(ids[0])


# -- what runs there -----------------------------------------------------------------------------
@aioray.remote(num_cpus=0)
def where() -> str:
    return str(aioray.get_runtime_context().get_node_id())


@aioray.remote(num_cpus=0)
def make_array(mb: int) -> Any:
    import numpy as np
    return np.arange(mb * 1024 * 1024 // 8, dtype=np.int64)


@aioray.remote(num_cpus=0)
def read_array(arr: Any) -> tuple[str, int, int]:
    return str(aioray.get_runtime_context().get_node_id()), int(arr.size), int(arr.sum())


@aioray.remote(num_cpus=0)
def stream(n: int) -> Iterator[tuple[str, int]]:
    node = str(aioray.get_runtime_context().get_node_id())
    for i in range(n):
        yield node, i


@aioray.remote(num_cpus=0.5)
class Member:
    def node(self) -> str:
        return str(aioray.get_runtime_context().get_node_id())


# -- the checks ----------------------------------------------------------------------------------
def test_nodes_lists_both(on_cluster: Any) -> None:
    nodes = [n for n in aioray.nodes() if n["Alive"]]
    assert len(nodes) == 2
    assert sorted(r for n in nodes for r in ("head", "node2") if r in n["Resources"]) == [
        "head", "node2"]
    assert aioray.cluster_resources()["CPU"] == 2


def test_tasks_pinned_by_custom_resources(on_cluster: Any) -> None:
    head, node2 = node_with("head"), node_with("node2")
    assert head != node2
    on_head = where.options(resources={"head": SOME}).remote()
    on_node2 = where.options(resources={"node2": SOME}).remote()
    assert aioray.get([on_head, on_node2], timeout=TIMEOUT) == [head, node2]


def test_tasks_pinned_by_node_affinity(on_cluster: Any) -> None:
    for node_id in (node_with("head"), node_with("node2")):
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        refs = [where.options(scheduling_strategy=strategy).remote() for _ in range(3)]
        assert aioray.get(refs, timeout=TIMEOUT) == [node_id] * 3


def test_node_id_differs_per_node(on_cluster: Any) -> None:
    ids = aioray.get([where.options(resources={r: SOME}).remote() for r in ("head", "node2")],
                     timeout=TIMEOUT)
    assert len(set(ids)) == 2
    assert set(ids) == {n["NodeID"] for n in aioray.nodes() if n["Alive"]}


def test_strict_spread_placement_group_one_actor_per_bundle(on_cluster: Any) -> None:
    pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="STRICT_SPREAD")
    try:
        assert pg.wait(TIMEOUT), "the STRICT_SPREAD group was not placed on the two nodes"
        members = [Member.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=i)).remote() for i in range(2)]
        nodes = aioray.get([m.node.remote() for m in members], timeout=TIMEOUT)
        assert len(set(nodes)) == 2
        assert set(nodes) == {node_with("head"), node_with("node2")}
        for m in members:
            aioray.kill(m)
    finally:
        remove_placement_group(pg)


def test_large_array_made_on_one_node_read_on_the_other(on_cluster: Any) -> None:
    np = pytest.importorskip("numpy")
    mb = 64
    n = mb * 1024 * 1024 // 8
    ref = make_array.options(resources={"node2": SOME}).remote(mb)
    node, size, total = aioray.get(read_array.options(resources={"head": SOME}).remote(ref),
                                   timeout=TIMEOUT)
    assert node == node_with("head")
    assert (size, total) == (n, n * (n - 1) // 2)
    local = aioray.get(ref, timeout=TIMEOUT)  # and in the driver
    assert isinstance(local, np.ndarray) and local.size == n and int(local[-1]) == n - 1


async def test_streaming_generator_from_the_far_node(on_cluster: Any) -> None:
    far = node_with("node2")
    gen = stream.options(resources={"node2": SOME}).remote(5)
    assert isinstance(gen, aioray.ObjectRefGenerator)
    items = [await ref async for ref in gen]
    assert items == [(far, i) for i in range(5)]
    gen2 = stream.options(resources={"node2": SOME}).remote(3)
    assert [aioray.get(r, timeout=TIMEOUT) for r in gen2] == [(far, i) for i in range(3)]

