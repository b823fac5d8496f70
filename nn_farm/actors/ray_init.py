"""Starting or joining Ray with this project's quirks handled in one place.

- ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: nodes bind loopback; without it a
  multi-node cluster on 127.0.0.1 hangs on these machines. Only for a Ray that
  lives on one machine: a node started with it advertises 127.0.0.1, so real
  multi-host clusters must not set it (cluster.yaml does not).
- ``RAY_AUTH_MODE``: set explicitly ("disabled" for a cluster we start
  ourselves) so an inherited setting does not lock us out of our own cluster.
- ``RAY_TMPDIR``: a private directory per session when we start Ray, so two
  users' clusters never share sockets or logs.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile


def ray_environment(tmpdir: str | None = None) -> dict[str, str]:
    """Set (if unset) and return the environment variables a local Ray needs here."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if tmpdir is not None:
        os.environ["RAY_TMPDIR"] = tmpdir
    elif "RAY_TMPDIR" not in os.environ:
        os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="nnfarm-ray-")
        # Runs after Ray's own exit hook (registered later, so called earlier).
        atexit.register(shutil.rmtree, os.environ["RAY_TMPDIR"], True)
    # Ray's own usage-stats prompt and upload are not wanted on farm hosts.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return {k: os.environ[k] for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_TMPDIR")}


_STARTUP_TIMEOUTS = ("Timed out waiting for file", "timed out during startup")


def init_ray(address: str | None = None, **kwargs) -> None:
    """Join the Ray cluster at ``address`` (or ``RAY_ADDRESS``), or start a local one.

    Does nothing if Ray is already initialised in this process.

    Args:
        address: ``host:port`` of a running cluster's GCS, "auto", or None.
        kwargs: passed to ``ray.init`` (``num_cpus``, ``resources``, ...).
    """
    import ray

    if ray.is_initialized():
        return
    local = address is None and not os.environ.get("RAY_ADDRESS")
    if local:
        # One machine: loopback everything. Joining a real cluster leaves the
        # variable alone, because 0 makes a node advertise 127.0.0.1.
        ray_environment()
        kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("log_to_driver", False)
    if not local:
        ray.init(address=address, **kwargs)
        return
    before = _children()
    try:
        ray.init(address=address, **kwargs)
    except Exception as exc:  # Ray raises a bare Exception for the second timeout
        # Ray waits a fixed time for its own GCS server to publish its port, and for
        # the new node to register; a loaded host can miss either (each seen once in
        # a test run here). A local start is tried once more.
        if not any(timeout in str(exc) for timeout in _STARTUP_TIMEOUTS):
            raise
        logging.getLogger(__name__).warning("starting a local Ray timed out (%s); trying once more", exc)
        ray.shutdown()
        # The failed start's GCS server and monitor outlive it (Ray never got a node
        # object to stop them with): stop what it started, by PID.
        _stop_children_but(before)
        ray.init(address=address, **kwargs)


def _children() -> set[int]:
    import psutil  # a dependency of Ray's

    return {child.pid for child in psutil.Process().children(recursive=True)}


def _stop_children_but(before: set[int]) -> None:
    import psutil

    started = [child for child in psutil.Process().children(recursive=True) if child.pid not in before]
    for child in started:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(started, timeout=10)


def placement(resource: str) -> dict:
    """Actor options that pin an actor to the node declaring ``resource``, if any node does.

    A tiny fraction of the resource is asked for so every device of that host fits.
    """
    import ray

    if resource and ray.cluster_resources().get(resource, 0) > 0:
        return {"resources": {resource: 0.001}}
    return {}
