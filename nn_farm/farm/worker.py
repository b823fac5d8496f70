"""Crash isolation: each device measures in its own long-lived worker process.

    agent thread --job--> DeviceWorker --pipe--> worker process: load (cached) + measure_session
                 <-result-             <-------- ("ok", Measurement proto bytes) | ("error", kind, message)

A native library that segfaults, aborts or hangs takes only its worker down.
The agent waits for each job at most the policy's ``timeout_s``; a worker that
died is reported as :class:`~nn_farm.errors.DeviceCrashed` with the signal name,
one that overran is killed and reported as :class:`~nn_farm.errors.DeviceTimeout`.
Either way a fresh worker is started and the device keeps serving.

Workers use the "spawn" start method: forking a process that runs gRPC threads
can deadlock the child. A worker is kept warm between jobs (runtime imported,
speed probe calibrated, sessions loaded), so a measurement costs one pipe round
trip on top of the runtime's own work. The worker labels the measurement
(digest, device, identity) and sends it as the wire message the agent replies
with, so the agent only parses it: no pickled records, no second conversion.
"""

from __future__ import annotations

import logging
import multiprocessing
import select
import signal
import threading
from typing import Any

from nn_farm import errors
from nn_farm.errors import DeviceCrashed, DeviceTimeout, DeviceUnavailable

log = logging.getLogger(__name__)

START_TIMEOUT_S = 180.0  # importing torch on a loaded 2-core host takes a while


def _worker_main(conn, runtime_name: str, options: dict, label: dict) -> None:
    """The worker process: answer measurement jobs until told to stop (``None``).

    ``label`` holds ``device_id``, ``device_class`` and ``identity`` (the device's
    identity as the agent knows it), stamped on every measurement.
    """
    import os

    # A worker's job is to be measured, not to be interrupted by the agent's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from nn_farm.farm.runtimes import get_runtime
        from nn_farm.farm.speed import SpeedProbe

        runtime = get_runtime(runtime_name)
        status = _status_dict(runtime.status(options))
        probe = SpeedProbe()  # one per device: its best time persists across jobs
    except Exception as exc:  # reported to the agent, which marks the device unavailable
        status = {"available": False, "version": "", "reason": f"{type(exc).__name__}: {exc}"}
    conn.send(("ready", os.getpid(), status))
    sessions = _Sessions(runtime_name, options, status["version"], label) if status["available"] else None
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            if sessions is not None:
                sessions.close()
            return
        try:
            if sessions is None:
                raise DeviceUnavailable(f"runtime {runtime_name} is unavailable: {status['reason']}")
            reply = ("ok", sessions.measure(job, probe))
        except Exception as exc:  # failures are data: the agent maps the kind to a status
            reply = ("error", type(exc).__name__, str(exc))
        try:
            conn.send(reply)
        except OSError:  # the agent is gone (killed): nobody to answer, so leave quietly
            return


class _Sessions:
    """Loaded models kept warm in a worker, by file and input shapes (LRU).

    Loading (compiling) a model can cost more than measuring it; a model is
    measured many times (repeats, policies, clients), so a worker keeps the
    last few sessions. The cache path holds the digest, so a key never goes stale.
    """

    def __init__(self, runtime: str, options: dict, version: str, label: dict, keep: int = 4):
        from nn_farm.farm.runtimes import get_runtime

        self.runtime, self.options, self.version, self.keep = runtime, options, version, keep
        self.label = label
        self._rt = get_runtime(runtime)
        self._open: dict = {}

    def measure(self, job: dict, probe) -> bytes:
        """Measure ``job``; returns the labelled ``Measurement`` as wire bytes."""
        from nn_farm.farm.measure import host_identity, measure_session, pinned_to

        policy, inputs = job["policy"], job.get("inputs")
        with pinned_to(policy.cpu_affinity):
            key = (job["path"], tuple(inputs or ()))
            session = self._open.pop(key, None) or self._rt.load(job["path"], inputs, self.options)
            self._open[key] = session  # most recently used last
            while len(self._open) > self.keep:
                self._open.pop(next(iter(self._open))).close()
            try:
                m = measure_session(session, policy, probe)
            except Exception:
                self._open.pop(key).close()  # a session that failed mid-run is not reused
                raise
            ran = {**host_identity(), **m.device}
        # What actually ran (threads, delegate, affinity) wins; the device's identity fills the rest.
        m.device = {**self.label["identity"], **{k: v for k, v in ran.items() if v not in ("", None)}}
        m.model_digest, m.device_id, m.device_class = job["digest"], self.label["device_id"], self.label["device_class"]
        m.runtime, m.runtime_version = self.runtime, self.version
        return m.to_proto().SerializeToString()

    def close(self) -> None:
        for session in self._open.values():
            session.close()
        self._open.clear()


def _status_dict(status: Any) -> dict:
    return {"available": bool(getattr(status, "available", False)),
            "version": str(getattr(status, "version", "") or ""),
            "reason": str(getattr(status, "reason", "") or "")}


def _signal_name(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class DeviceWorker:
    """The worker process of one device.

    Args:
        device_id: for error messages, and stamped on each measurement.
        runtime: runtime name the worker loads.
        options: runtime options (threads, device string, ...).
        device_class: stamped on each measurement.
        identity: the device's identity (host, threads, affinity, ...); what the
            worker sees at run time overrides it field by field.
        start_timeout_s: how long a fresh worker may take to import its runtime.

    Not thread-safe: the agent runs one job per device at a time.
    """

    def __init__(self, device_id: str, runtime: str, options: dict | None = None, *,
                 device_class: str = "", identity: dict | None = None,
                 start_timeout_s: float = START_TIMEOUT_S):
        self.device_id = device_id
        self.runtime = runtime
        self.options = dict(options or {})
        self._label = {"device_id": device_id, "device_class": device_class, "identity": dict(identity or {})}
        self.start_timeout_s = start_timeout_s
        self.status: dict | None = None   # from the worker's "ready" message
        self.state = "stopped"            # stopped | starting | idle | busy
        self._ctx = multiprocessing.get_context("spawn")
        self._proc = None
        self._conn = None
        self._poll = None  # watches the pipe and the process sentinel
        self._start_lock = threading.Lock()

    @property
    def pid(self) -> int:
        proc = self._proc
        return proc.pid if proc is not None and proc.is_alive() else 0

    def start(self) -> None:
        """Spawn the process (returns at once; :meth:`ready` waits for it)."""
        with self._start_lock:
            if self._proc is not None and self._proc.is_alive():
                return
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=_worker_main, args=(child, self.runtime, self.options, self._label),
                                     name=f"nn-farm-worker[{self.device_id}]", daemon=True)
            proc.start()
            child.close()
            # One poll set per process, kept: building one per job (as
            # multiprocessing.connection.wait does) cost more than the poll itself.
            watch = select.poll()
            watch.register(parent.fileno(), select.POLLIN)
            watch.register(proc.sentinel, select.POLLIN)
            self._proc, self._conn, self._poll = proc, parent, watch
            self.state = "starting"
            self.status = None

    def ready(self) -> dict:
        """Start if needed and wait until the worker has loaded its runtime.

        Returns:
            The runtime status the worker reported: available, version, reason.

        Raises:
            DeviceUnavailable: the worker died or did not come up in time.
        """
        self.start()
        if self.status is not None:
            return self.status
        if self._wait(self.start_timeout_s) == "answered":
            try:
                _, _, status = self._conn.recv()
                self.status = status
                self.state = "idle"
                return status
            except EOFError:
                pass
        code = self._proc.exitcode
        self._kill()
        raise DeviceUnavailable(f"device {self.device_id}: worker for {self.runtime} did not start "
                                f"({_signal_name(code) if code is not None else 'start timed out'})",
                                device_id=self.device_id)

    def run(self, job: dict, timeout_s: float) -> bytes:
        """Run one measurement job in the worker.

        Args:
            job: ``path`` (the cached model), ``digest``, ``policy`` (a MeasurePolicy)
                and ``inputs`` (TensorSpecs or None).
            timeout_s: how long to wait for the result.

        Returns:
            The measurement as serialized ``Measurement`` proto bytes, labelled
            with the job's digest and this device.

        Raises:
            DeviceCrashed: the worker died (the signal is named).
            DeviceTimeout: no result within ``timeout_s``; the worker is killed.
            FarmError: whatever the measurement itself raised (InvalidModel, ...).
        """
        if self._proc is not None and not self._proc.is_alive():
            self._kill()  # died while idle (OOM killer, an operator): no job lost, start afresh
        self.ready()
        digest = job.get("digest")
        self.state = "busy"
        try:
            try:
                self._conn.send(job)
            except OSError:
                pass  # the worker died just now; its sentinel below says how
            outcome = self._wait(timeout_s)
            if outcome == "answered":
                try:
                    reply = self._conn.recv()
                except (EOFError, OSError):
                    reply = None
                if reply is not None:
                    return _unpack(reply, self.device_id, digest)
            if outcome == "timeout":
                self._kill()
                raise DeviceTimeout(f"device {self.device_id}: measurement of model {digest} ran past "
                                    f"its timeout of {timeout_s:g} s; worker killed and restarted",
                                    device_id=self.device_id, digest=digest)
            self._proc.join(5)
            cause = _signal_name(self._proc.exitcode)
            self._kill()
            raise DeviceCrashed(f"device {self.device_id}: the {self.runtime} worker died ({cause}) while "
                                f"measuring model {digest}; worker restarted",
                                device_id=self.device_id, digest=digest)
        finally:
            if self._proc is None:
                self.start()  # fresh worker for the next job; it warms up meanwhile
            else:
                self.state = "idle"

    def _wait(self, timeout_s: float) -> str:
        """Block until the worker answers, exits, or ``timeout_s`` passes.

        Returns:
            "answered" (the pipe is readable; a dead worker's EOF counts, and
            its recv then fails), "exited" or "timeout".
        """
        ready = {fd for fd, _ in self._poll.poll(max(timeout_s, 0.0) * 1000.0)}
        if self._conn.fileno() in ready:
            return "answered"
        return "exited" if ready else "timeout"

    def _kill(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = self._poll = None
        self.status = None
        self.state = "stopped"
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(10)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        """Ask the worker to exit, kill it if it does not."""
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        try:
            conn.send(None)
            proc.join(5)
        except (OSError, BrokenPipeError):
            pass
        self._kill()


def _unpack(reply: tuple, device_id: str, digest: str | None) -> Any:
    if reply[0] == "ok":
        return reply[1]
    _, kind, message = reply
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.FarmError):
        raise cls(message, device_id=device_id, digest=digest)
    if isinstance(cls, type) and issubclass(cls, errors.NNFarmError):
        raise cls(message)
    raise DeviceCrashed(f"device {device_id}: runtime raised {kind}: {message}",
                        device_id=device_id, digest=digest)
