"""Shared helpers for tests on a real local Ray cluster with real agents.

    from ray_cluster import local_cluster, onnx_agent, tiny_onnx_models  # tests/ is on sys.path under pytest

- :func:`local_cluster`: a ``ray.cluster_utils.Cluster`` (head + worker nodes,
  each worker declaring its own custom resource), with a private RAY_TMPDIR,
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` and ``RAY_AUTH_MODE=disabled``. On exit
  it shuts down only the node processes it started (``Cluster.shutdown`` kills
  its own nodes by handle; never ``ray stop``).
- :func:`onnx_agent`: an in-process gRPC agent serving ONE onnxruntime device
  pinned to one host core.
- :func:`tiny_onnx_models`: n distinct tiny ONNX models (distinct digests), fast.

Use them from a module- or session-scoped fixture: a cluster takes tens of
seconds to start on a loaded machine.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class ClusterHandle:
    """A running test cluster: ``address`` for ``ray.init``, ``workers`` by resource name."""

    cluster: object
    address: str
    tmpdir: str
    workers: dict = field(default_factory=dict)  # resource name -> ray node handle

    def add_worker(self, resource: str, num_cpus: int = 1):
        node = self.cluster.add_node(num_cpus=num_cpus, resources={resource: 1})
        self.cluster.wait_for_nodes()
        self.workers[resource] = node
        return node

    def kill_worker(self, resource: str) -> None:
        """Kill a worker node's processes (as a crashed host would die)."""
        node = self.workers.pop(resource)
        self.cluster.remove_node(node, allow_graceful=False)


@contextlib.contextmanager
def local_cluster(worker_resources=("nnfarm_node_a", "nnfarm_node_b"), *, head_cpus: int = 1,
                  worker_cpus: int = 1, connect: bool = True) -> Iterator[ClusterHandle]:
    """Start a head and one worker node per resource name; connect this process.

    Args:
        worker_resources: one worker node per name, declaring ``{name: 1}``.
        head_cpus, worker_cpus: logical CPUs per node (for Ray tasks).
        connect: ``ray.init`` this process to the cluster.

    Yields:
        A :class:`ClusterHandle`.
    """
    import ray

    from nn_farm.actors.ray_init import ray_environment

    if connect and ray.is_initialized():
        ray.shutdown()  # a local Ray left by an earlier test (a build, say) would refuse the connect
    # Short path: Ray's unix sockets live under it (108-byte limit).
    tmpdir = tempfile.mkdtemp(prefix="nnfr-", dir="/tmp")
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_environment(tmpdir)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": head_cpus, "include_dashboard": False})
    handle = ClusterHandle(cluster=cluster, address=cluster.address, tmpdir=tmpdir)
    try:
        for name in worker_resources:
            handle.add_worker(name, worker_cpus)
        if connect:
            ray.init(address=cluster.address, log_to_driver=False)
        yield handle
    finally:
        if connect and ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmpdir, ignore_errors=True)


def onnx_agent(cache_dir: str | os.PathLike, core: int, *, token: str | None = None, device_id: str | None = None,
               device_class: str = "test-cpu-onnxruntime", runtime: str = "onnxruntime"):
    """Start an in-process agent serving one device pinned to host core ``core``.

    Returns:
        The :class:`~nn_farm.farm.agent.RunningAgent` (``.address``, ``.stop()``).
    """
    from nn_farm.farm.agent import start_agent
    from nn_farm.farm.devices import AgentConfig, DeviceConfig

    device = DeviceConfig(id=device_id or f"core{core}/{runtime}", device_class=device_class, runtime=runtime,
                          options={"intra_op_threads": 1}, cpu_affinity=(core,))
    config = AgentConfig(host="127.0.0.1", port=0, token=token, cache_dir=str(cache_dir), devices=(device,))
    return start_agent(config, warm=True)


def tiny_onnx_models(directory: str | os.PathLike, n: int, *, prefix: str = "m") -> list[pathlib.Path]:
    """Write ``n`` tiny distinct ONNX models (a MatMul + Relu of varying width).

    Returns:
        The file paths, ``<prefix>0000.onnx`` ...; each has a distinct sha256.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [_write_model(directory / f"{prefix}{i:04d}.onnx", i) for i in range(n)]


def tiny_onnx_bytes(i: int) -> bytes:
    """The bytes of the ``i``-th tiny model (picklable generator helper)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k, width = 8 + i % 24, 4 + i // 24 % 16
    w = numpy_helper.from_array(np.full((k, width), 0.01 * (1 + i % 7), dtype=np.float32), name="w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
        f"tiny{i}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, width])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name=f"nnfarm-test-{i}")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _write_model(path: pathlib.Path, i: int) -> pathlib.Path:
    path.write_bytes(tiny_onnx_bytes(i))
    return path
