"""The farm: thousands of jobs sharded over every device of a class, nothing lost.

    jobs --(path/bytes: hash here | generator: Ray task ahead of the devices)-->
    ready queue --(batches, pulled by whichever device has room)--> device actors
    --> outcomes --> result store (one commit per result) --> results stream

Design:
- Pull-based: each device keeps at most ``depth`` batches in flight and gets the
  next one only when one comes back, so faster devices take more work. A batch
  holds about ``batch_s`` seconds of work for that device (sized from its own
  recent job times), so a tiny job costs one Ray round trip per batch rather
  than per job, and the tail is split finely so no device idles at the end.
- Generator jobs (model generation and conversion) run as Ray tasks on any CPU,
  started ahead of need and bounded, so no device waits on a converter.
- A device-side failure (device or agent down, crash, time-out, the actor's node
  dying) puts the job back for another device of the class, at most
  ``max_attempts`` tries in all, and every failed attempt is recorded. A model
  error (corrupt file, unsupported op, too large, generator raised) ends the
  job at once. A device that keeps failing is retired for the rest of the run.
- Before anything runs, finished jobs are looked up in the store and skipped,
  so a rerun after a crash (or SIGKILL) measures only what is missing.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

from nn_farm import errors
from nn_farm.actors.calibration import REFERENCE_POLICY, Calibrator, reference_format, reference_model
from nn_farm.actors.config import AgentEntry, FarmConfig, load_farm_config
from nn_farm.actors.jobs import ErrorKind, Job, JobResult, digest_of, policy_hash
from nn_farm.actors.store import ResultStore
from nn_farm.farm.policy import MeasurePolicy

log = logging.getLogger(__name__)

_CALIBRATION = -1  # the index of a calibration item inside a batch
_INLINE_BYTES = 64 * 1024


@dataclass
class FarmDevice:
    """A device as the driver tracks it: where it is, its actor, and how it is doing."""

    agent: AgentEntry
    info: Any  # nn_farm.farm.client.DeviceInfo
    actor: Any = None
    alive: bool = True
    retired_reason: str = ""
    inflight: list = field(default_factory=list)  # [(ObjectRef, [job indices])]
    job_s: float = 0.0  # moving average of seconds per job on this device
    done: int = 0
    consecutive_failures: int = 0
    device_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    first_done: float = 0.0

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def device_class(self) -> str:
        return self.info.device_class


@dataclass
class _JobState:
    job: Job
    digest: str = ""
    format: str | None = None
    data_ref: Any = None
    attempts: int = 0
    tried: set = field(default_factory=set)


def _generate(fn) -> tuple[tuple[str, str | None], bytes]:
    """Ray task body: run a generator job; returns ((digest, format), model bytes)."""
    import pathlib

    out = fn()
    fmt = None
    if isinstance(out, tuple):
        out, fmt = out
    if isinstance(out, (str, os.PathLike)):
        path = pathlib.Path(out)
        data = path.read_bytes()
        if fmt is None:
            from nn_farm.actors.jobs import guess_format

            fmt = guess_format(path)
    else:
        data = bytes(out)
    return (digest_of(data), fmt), data


class Farm:
    """A farm of devices behind gRPC agents, driven from Ray.

    Args:
        config: a :class:`FarmConfig` or the path of a ``farm.yaml``.
        store: the result store (a path or a :class:`ResultStore`); default the
            config's ``store``.
        ray_address: the Ray cluster to join; None starts or reuses a local Ray.
        max_attempts: devices tried per job before it fails for good.
        batch_s: seconds of work sent to a device in one batch.
        depth: batches in flight per device.
        progress: show a tqdm bar with ETA and per-device throughput.
        calibrate: run the reference model on each device (default: the config's).

    Example:
        >>> farm = Farm("farm.yaml")                                   # doctest: +SKIP
        >>> for r in farm.profile(jobs, device_class="pixel4-cpu", stream=True):  # doctest: +SKIP
        ...     print(r.job_name, r.latency_ms if r.ok else r.error)
    """

    def __init__(self, config: FarmConfig | str | os.PathLike, *, store: ResultStore | str | None = None,
                 ray_address: str | None = None, max_attempts: int = 3, batch_s: float = 0.5,
                 depth: int = 2, progress: bool = True, calibrate: bool | None = None):
        self.config = config if isinstance(config, FarmConfig) else load_farm_config(config)
        if max_attempts < 1:
            raise errors.ConfigError(f"must be at least 1, got {max_attempts}", key="max_attempts")
        if depth < 1 or batch_s <= 0:
            raise errors.ConfigError(f"depth ({depth}) and batch_s ({batch_s}) must be positive", key="depth")
        self.store = store if isinstance(store, ResultStore) else ResultStore(store or self.config.store)
        self.ray_address = ray_address
        self.max_attempts = max_attempts
        self.batch_s = batch_s
        self.depth = depth
        self.progress = progress
        cal = self.config.calibration
        if calibrate is not None:
            cal = type(cal)(enabled=calibrate, every_jobs=cal.every_jobs, drift_threshold=cal.drift_threshold)
        self.calibrator = Calibrator(cal, self.store)
        self._devices: list[FarmDevice] | None = None
        self._reference: dict[str, Any] = {}

    # -- discovery -------------------------------------------------------
    def discover(self) -> list[FarmDevice]:
        """Ask every agent for its devices (``ListDevices``).

        Returns:
            The available devices of the configured classes.

        Raises:
            AuthenticationError: an agent refused the token (names the agent).
            AgentUnavailable: no agent could be reached at all.
        """
        from nn_farm.farm.client import AgentClient

        devices, unreachable = [], []
        for agent in self.config.agents:
            client = AgentClient(agent.address, token=agent.token, root_cert=agent.root_cert, timeout_s=15.0)
            try:
                infos = client.list_devices()
            except errors.AuthenticationError as exc:
                raise errors.AuthenticationError(
                    f"agent {agent.address} refused our token ({exc}); check token/token_file in the farm "
                    f"config") from exc
            except errors.AgentUnavailable as exc:
                log.warning("skipping agent %s: %s", agent.address, exc)
                unreachable.append(agent.address)
                continue
            finally:
                client.close()
            for info in infos:
                if agent.devices and info.id not in agent.devices:
                    continue
                if self.config.device_classes and info.device_class not in self.config.device_classes:
                    continue
                if not info.available:
                    log.warning("device %s on %s is unavailable: %s", info.id, agent.address,
                                info.unavailable_reason)
                    continue
                devices.append(FarmDevice(agent=agent, info=info))
        if not devices and unreachable:
            raise errors.AgentUnavailable(f"no agent reachable: {unreachable}")
        return devices

    def devices(self) -> list[FarmDevice]:
        if self._devices is None:
            self._devices = self.discover()
        return self._devices

    def device_classes(self) -> dict[str, list[FarmDevice]]:
        classes: dict[str, list[FarmDevice]] = {}
        for d in self.devices():
            classes.setdefault(d.device_class, []).append(d)
        return classes

    def _pick_class(self, device_class: str | None) -> list[FarmDevice]:
        classes = self.device_classes()
        if device_class is None:
            if len(classes) != 1:
                raise errors.ConfigError(f"give device_class= (the farm has {sorted(classes) or 'none'})",
                                         key="device_class")
            device_class = next(iter(classes))
        if device_class not in classes:
            raise errors.DeviceUnavailable(f"no available device of class {device_class!r} "
                                           f"(classes: {sorted(classes)})")
        return classes[device_class]

    # -- actors ----------------------------------------------------------
    def _start_actors(self, devices: list[FarmDevice]) -> None:
        from nn_farm.actors.device import device_actor_class
        from nn_farm.actors.ray_init import init_ray, placement

        init_ray(self.ray_address)
        actor_cls = device_actor_class()
        for d in devices:
            if d.actor is None and d.alive:
                d.actor = actor_cls.options(**placement(d.agent.node_resource)).remote(
                    d.agent.address, d.id, token=d.agent.token, root_cert=d.agent.root_cert)

    def start(self, timeout: float | None = 120.0) -> "Farm":
        """Start every device's actor now and wait until each answers.

        Otherwise a node that is slow to start its worker joins the first run late, after
        faster nodes have taken most of the jobs.
        """
        import ray

        devices = [d for d in self.devices() if d.alive]
        self._start_actors(devices)
        ray.get([d.actor.ping.remote() for d in devices], timeout=timeout)
        return self

    def _reference_item(self, device: FarmDevice) -> dict | None:
        import ray

        runtime = device.info.runtime
        if runtime not in self._reference:
            data = reference_model(runtime)
            self._reference[runtime] = None if data is None else {
                "digest": digest_of(data), "format": reference_format(runtime), "data": ray.put(data)}
        ref = self._reference[runtime]
        return None if ref is None else {"index": _CALIBRATION, **ref}

    # -- profiling -------------------------------------------------------
    def profile(self, jobs: Iterable[Job | str | os.PathLike], *, device_class: str | None = None,
                policy: MeasurePolicy | None = None, stream: bool = False
                ) -> list[JobResult] | Iterator[JobResult]:
        """Measure every job on the devices of one class.

        Args:
            jobs: :class:`Job` records, or model file paths.
            device_class: the class to use (may be omitted when the farm has one).
            policy: the measurement policy (default :class:`MeasurePolicy`).
            stream: return an iterator yielding each result as it is stored,
                instead of the list in job order.

        Returns:
            One :class:`JobResult` per job: a measurement, or an error kind and
            message (failures are data). Jobs found in the store are returned
            with ``skipped`` True and are not measured again.

        Raises:
            ConfigError: no or unknown device class.
            AuthenticationError: an agent refused the token.
        """
        jobs = [j if isinstance(j, Job) else Job.from_path(j) for j in jobs]
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})[:5]
            raise errors.ConfigError(f"job names must be unique; repeated: {dupes}", key="jobs")
        run = _Run(self, jobs, self._pick_class(device_class), policy or MeasurePolicy())
        if stream:
            return run.results()
        by_index = {}
        for index, result in run.results_indexed():
            by_index[index] = result
        return [by_index[i] for i in range(len(jobs))]

    def status(self) -> list[dict]:
        """Every device with its agent's view (health, queue) and the store's (throughput, speed)."""
        from nn_farm.farm.client import AgentClient

        stats = {s["device_id"]: s for s in self.store.device_stats()}
        rows = []
        for agent in self.config.agents:
            client = AgentClient(agent.address, token=agent.token, root_cert=agent.root_cert, timeout_s=10.0)
            try:
                infos = client.list_devices()
                health = {d["device_id"]: d for d in client.health().get("devices", [])}
                err = ""
            except errors.FarmError as exc:
                infos, health, err = [], {}, f"{type(exc).__name__}: {exc}"
            finally:
                client.close()
            if err:
                rows.append({"agent": agent.address, "device_id": "-", "device_class": "-", "state": "unreachable",
                             "error": err})
            for info in infos:
                h = health.get(info.id, {})
                s = stats.get(info.id, {})
                rows.append({"agent": agent.address, "device_id": info.id, "device_class": info.device_class,
                             "runtime": f"{info.runtime} {info.runtime_version}",
                             "state": h.get("state", "available" if info.available else "unavailable"),
                             "queue": int(h.get("queue_length", info.queue_length)),
                             "measurements": int(h.get("measurements", 0)), "failures": int(h.get("failures", 0)),
                             "results": s.get("results", 0), "jobs_per_s": s.get("jobs_per_s", 0.0),
                             "speed_factor": s.get("speed_factor"), "drift": s.get("drift"),
                             "flagged": s.get("flagged", False), "error": info.unavailable_reason})
        return rows

    def close(self) -> None:
        """Stop this farm's device actors and close the store."""
        if self._devices:
            import ray

            for d in self._devices:
                if d.actor is not None:
                    try:
                        ray.kill(d.actor)
                    except Exception:  # already dead with its node
                        pass
                    d.actor = None
        self.store.close()

    def __enter__(self) -> "Farm":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Run:
    """One ``Farm.profile`` call: the scheduling loop and its bookkeeping."""

    def __init__(self, farm: Farm, jobs: list[Job], devices: list[FarmDevice], policy: MeasurePolicy):
        self.farm = farm
        self.store = farm.store
        self.jobs = jobs
        for d in devices:
            # A device retired by an earlier run gets another chance, unless its actor is gone.
            if not d.alive and not d.retired_reason.startswith("actor died"):
                d.alive, d.retired_reason, d.consecutive_failures = True, "", 0
        self.devices = [d for d in devices if d.alive]
        self.device_class = devices[0].device_class
        self.policy = policy
        self.policy_dict = policy.to_dict()
        self.phash = policy_hash(policy)
        self.versions = sorted({d.info.runtime_version for d in devices})
        self.states = [_JobState(j) for j in jobs]
        self.ready: collections.deque[int] = collections.deque()
        self.retry: collections.deque[int] = collections.deque()
        self.generating: dict[Any, int] = {}
        self.next_job = 0
        self.finished = 0
        self.measured = 0
        self.calibrating: set[str] = set()
        self.owner: dict[Any, FarmDevice] = {}  # in-flight batch -> its device
        # One measurement per model per call: jobs whose model another job of this
        # call already measures wait for its result, as a rerun would find it stored.
        self.leader: dict[str, int] = {}  # digest -> the job that measures it
        self.followers: dict[int, list[int]] = collections.defaultdict(list)
        self.gen_limit = 4
        now = time.perf_counter()
        for d in self.devices:
            d.done, d.started, d.device_s = 0, now, 0.0

    # -- the loop --------------------------------------------------------
    def results(self) -> Iterator[JobResult]:
        for _, r in self.results_indexed():
            yield r

    def results_indexed(self) -> Iterator[tuple[int, JobResult]]:
        import ray
        from tqdm import tqdm

        self.farm._start_actors(self.devices)
        self.gen_limit = max(4, int(ray.cluster_resources().get("CPU", 1)) * 2)
        bar = tqdm(total=len(self.jobs), desc=f"profile {self.device_class}", unit="job",
                   disable=not self.farm.progress, dynamic_ncols=True)
        last_postfix = 0.0
        try:
            while self.finished < len(self.jobs):
                out: list[tuple[int, JobResult]] = []
                self._prepare(out)
                if not any(d.alive for d in self.devices):
                    self._fail_rest(out)
                self._dispatch()
                waiting = list(self.owner) + list(self.generating)
                if waiting and not out:
                    done, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
                    # Take everything that is ready now, not just one: fewer loop turns.
                    if done:
                        done, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
                    for ref in done:
                        self._collect(ref, out)
                elif not waiting and not out:
                    # Nothing in flight, nothing finished, yet jobs remain: a bug, not a state to spin in.
                    raise RuntimeError(f"scheduler stalled with {len(self.jobs) - self.finished} job(s) left "
                                       f"(ready {len(self.ready)}, retry {len(self.retry)})")
                for index, result in self._with_followers(out):
                    self.finished += 1
                    bar.update(1)
                    yield index, result
                now = time.perf_counter()
                if now - last_postfix > 1.0:
                    bar.set_postfix_str(self._throughput(), refresh=False)
                    last_postfix = now
        finally:
            bar.set_postfix_str(self._throughput(), refresh=False)
            bar.close()

    def _with_followers(self, out: list) -> Iterator[tuple[int, JobResult]]:
        for index, result in out:
            yield index, result
            for f in self.followers.pop(index, ()):
                job = self.states[f].job
                yield f, replace(result, job_name=job.name, group=job.group, skipped=True)

    def _enqueue(self, index: int) -> None:
        leader = self.leader.setdefault(self.states[index].digest, index)
        if leader == index:
            self.ready.append(index)
        else:
            self.states[index].data_ref = None
            self.followers[leader].append(index)

    def _has_work(self) -> bool:
        return bool(self.ready or self.retry or self.generating or self.next_job < len(self.jobs))

    # -- feeding ---------------------------------------------------------
    def _buffer_target(self) -> int:
        alive = sum(d.alive for d in self.devices) or 1
        return max(64, alive * self.farm.depth * 32)

    def _prepare(self, out: list) -> None:
        """Move jobs from the input to the ready queue: hash, skip finished ones, start generators."""
        import ray

        while (self.next_job < len(self.jobs) and len(self.ready) < self._buffer_target()
               and len(self.generating) < self.gen_limit):
            index = self.next_job
            self.next_job += 1
            st = self.states[index]
            job = st.job
            if job.generate is not None:
                digest = self.store.digest_for_name(job.name, self.device_class, self.phash)
                if digest and self._skip_if_done(index, digest, out):
                    continue
                failed = self.store.final_failure_of(job.name, self.device_class, self.phash)
                if not digest and failed:
                    out.append((index, JobResult(job.name, self.device_class, "", error_kind=ErrorKind(failed[0]),
                                                 error=failed[1], skipped=True, group=job.group)))
                    continue
                meta, data = _generate_task().remote(job.generate)
                st.data_ref = data
                self.generating[meta] = index
                continue
            try:
                data, fmt = job.load()
            except OSError as exc:
                out.append((index, self._final(index, ErrorKind.INVALID_MODEL,
                                               f"cannot read model {job.path}: {exc.strerror or exc}")))
                continue
            st.digest, st.format = digest_of(data), fmt
            if self._skip_if_done(index, st.digest, out):
                continue
            # Small models ride inline in the actor call; big ones go through the
            # object store once and are fetched only by an actor whose agent lacks them.
            st.data_ref = data if len(data) <= _INLINE_BYTES else ray.put(data)
            self._enqueue(index)

    def _skip_if_done(self, index: int, digest: str, out: list) -> bool:
        st = self.states[index]
        st.digest = digest
        if self.store.is_done(self.device_class, digest, self.phash, self.versions):
            m = self.store.measurement(self.device_class, digest, self.phash)
            out.append((index, JobResult(st.job.name, self.device_class, digest, measurement=m,
                                         device_id=m.device_id if m else "", skipped=True, group=st.job.group)))
            return True
        failed = self.store.finally_failed(self.device_class, digest, self.phash)
        if failed:
            out.append((index, JobResult(st.job.name, self.device_class, digest, error_kind=ErrorKind(failed[0]),
                                         error=failed[1], skipped=True, group=st.job.group)))
            return True
        return False

    def _generated(self, ref, out: list) -> None:
        import ray

        index = self.generating.pop(ref)
        st = self.states[index]
        try:
            (digest, fmt) = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            try:  # read the twin error too, or Ray logs it as unhandled
                ray.get(st.data_ref)
            except ray.exceptions.RayError:
                pass
            st.data_ref = None
            out.append((index, self._final(index, ErrorKind.GENERATION_ERROR,
                                           f"generator of {st.job.name} raised {type(cause).__name__}: {cause}")))
            return
        except ray.exceptions.RayError as exc:  # the worker or its node died: the job is not at fault
            log.warning("generator of %s lost (%s); running it again", st.job.name, exc)
            meta, data = _generate_task().remote(st.job.generate)
            st.data_ref = data
            self.generating[meta] = index
            return
        st.format = fmt or st.job.format
        self.store.remember_name(st.job.name, self.device_class, self.phash, digest)
        if not self._skip_if_done(index, digest, out):
            self._enqueue(index)

    # -- dispatching -----------------------------------------------------
    def _batch_size(self, device: FarmDevice, alive: int) -> int:
        per_job = device.job_s if device.job_s > 0 else self.farm.batch_s  # unknown: one job first
        size = max(1, int(self.farm.batch_s / per_job))
        # At the tail, split what is left so every device gets a share.
        left = len(self.ready) + len(self.retry)
        tail = math.ceil(left / max(1, alive * self.farm.depth))
        return max(1, min(size, tail, 256))

    def _dispatch(self) -> None:
        alive = [d for d in self.devices if d.alive]
        for d in alive:
            while len(d.inflight) < self.farm.depth and (self.ready or self.retry):
                if self._calibration_due(d):
                    # The reference runs under its own policy, so it travels alone.
                    self.calibrating.add(d.id)
                    ref = d.actor.run_batch.remote([self.farm._reference_item(d)], REFERENCE_POLICY.to_dict())
                    d.inflight.append((ref, [_CALIBRATION]))
                    self.owner[ref] = d
                    continue
                indices = self._take(d, self._batch_size(d, len(alive)))
                if not indices:
                    break
                items = []
                for index in indices:
                    st = self.states[index]
                    st.tried.add(d.id)
                    items.append({"index": index, "digest": st.digest, "format": st.format,
                                  "data": st.data_ref, "inputs": st.job.inputs})
                ref = d.actor.run_batch.remote(items, self.policy_dict)
                d.inflight.append((ref, indices))
                self.owner[ref] = d

    def _calibration_due(self, d: FarmDevice) -> bool:
        cal = self.farm.calibrator
        return (cal.config.enabled and d.id not in self.calibrating and cal.due(d.id)
                and self.farm._reference_item(d) is not None)

    def _take(self, device: FarmDevice, n: int) -> list[int]:
        taken: list[int] = []
        # Retries first, preferring jobs this device has not tried; one it has
        # tried goes back to it only when no other live device could take it.
        for _ in range(len(self.retry)):
            if len(taken) >= n:
                break
            index = self.retry.popleft()
            st = self.states[index]
            others = [d for d in self.devices if d.alive and d.id not in st.tried]
            if device.id not in st.tried or not others:
                taken.append(index)
            else:
                self.retry.append(index)
        while len(taken) < n and self.ready:
            taken.append(self.ready.popleft())
        return taken

    # -- collecting ------------------------------------------------------
    def _collect(self, ref, out: list) -> None:
        import ray

        if ref in self.generating:
            self._generated(ref, out)
            return
        device, indices = self._owner(ref)
        try:
            outcomes = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            # A bug inside the actor's call, not a dead device: the jobs go elsewhere.
            log.error("device actor %s raised: %s", device.id, exc)
            outcomes = [_lost(i, ErrorKind.UNKNOWN, f"device actor {device.id} raised {exc.cause!r}")
                        for i in indices]
        except ray.exceptions.RayError as exc:
            # The actor (or its node) died: everything it held goes to other devices.
            self._retire(device, f"actor died: {type(exc).__name__}")
            outcomes = [_lost(i, ErrorKind.ACTOR_DIED, f"device actor {device.id} died: {type(exc).__name__}")
                        for i in indices]
        for o in outcomes:
            if o["index"] == _CALIBRATION:
                self._calibrated(device, o)
                continue
            device.device_s += o["device_s"]
            if o["ok"]:
                self._succeeded(device, o, out)
            else:
                self._attempt_failed(device, o, out)

    def _owner(self, ref) -> tuple[FarmDevice, list[int]]:
        device = self.owner.pop(ref)
        for k, (r, indices) in enumerate(device.inflight):
            if r == ref:
                del device.inflight[k]
                return device, indices
        raise KeyError(ref)

    def _succeeded(self, device: FarmDevice, o: dict, out: list) -> None:
        index = o["index"]
        st = self.states[index]
        st.attempts += 1
        m = o["measurement"]
        device.done += 1
        if device.done == 1:
            device.first_done = time.perf_counter()
        device.consecutive_failures = 0
        device.job_s = o["device_s"] if device.job_s == 0 else 0.8 * device.job_s + 0.2 * o["device_s"]
        self.farm.calibrator.count_job(device.id)
        result = JobResult(st.job.name, self.device_class, st.digest, measurement=m, attempts=st.attempts,
                           device_id=device.id, group=st.job.group)
        stored = self.store.add_result(result, self.phash, st.job.meta, flag=self.farm.calibrator.flag_for(device.id))
        if not stored:
            log.info("%s: a result for %s was already stored; kept the first", st.job.name, st.digest[:12])
        self.measured += 1
        out.append((index, result))

    def _attempt_failed(self, device: FarmDevice, o: dict, out: list) -> None:
        index = o["index"]
        st = self.states[index]
        kind = ErrorKind(o["error_kind"])
        if o["attempted"]:
            st.attempts += 1
        attempt = JobResult(st.job.name, self.device_class, st.digest, error_kind=kind, error=o["error"],
                            attempts=st.attempts, device_id=device.id, group=st.job.group)
        if not kind.retryable:
            self.store.add_failure(attempt, self.phash, final=True)
            out.append((index, attempt))
            return
        device.consecutive_failures += 1
        if kind in (ErrorKind.AUTHENTICATION, ErrorKind.AGENT_UNAVAILABLE, ErrorKind.DEVICE_UNAVAILABLE):
            self._retire(device, o["error"])
        elif device.consecutive_failures >= 3 and any(d.alive and d is not device for d in self.devices):
            # Crashes and time-outs may be the models' fault: the last device standing keeps going.
            self._retire(device, f"{device.consecutive_failures} failures in a row; last: {o['error']}")
        if st.attempts >= self.farm.max_attempts:
            self.store.add_failure(attempt, self.phash, final=True)
            attempt.error = f"gave up after {st.attempts} attempt(s); last: {o['error']}"
            out.append((index, attempt))
            return
        if o["attempted"]:
            self.store.add_failure(attempt, self.phash, final=False)
        self.retry.append(index)

    def _calibrated(self, device: FarmDevice, o: dict) -> None:
        cal = self.farm.calibrator
        self.calibrating.discard(device.id)
        cal.state(device.id, device.device_class).jobs_since = 0
        if not o["ok"]:
            if ErrorKind(o["error_kind"]) == ErrorKind.ACTOR_DIED:
                return
            cal.failed(device.id, device.device_class, o["error"])
            return
        m = o["measurement"]
        cal.record(device.id, device.device_class, m.runtime_version, m.mean_ms)

    def _retire(self, device: FarmDevice, reason: str) -> None:
        if device.alive:
            log.warning("device %s retired for this run: %s", device.id, reason)
            device.alive = False
            device.retired_reason = reason

    def _fail_rest(self, out: list) -> None:
        """No live device is left: every job not yet finished fails with NO_DEVICE."""
        reasons = "; ".join(f"{d.id}: {d.retired_reason}" for d in self.devices) or "none"
        pending = list(self.ready) + list(self.retry)
        self.ready.clear()
        self.retry.clear()
        while self.next_job < len(self.jobs):
            pending.append(self.next_job)
            self.next_job += 1
        for index in pending:
            out.append((index, self._final(index, ErrorKind.NO_DEVICE,
                                           f"no live device of class {self.device_class} ({reasons})")))
        # Lost generators cannot finish either: their jobs fail the same way.
        if not any(d.alive for d in self.devices):
            for ref, index in list(self.generating.items()):
                self.generating.pop(ref)
                out.append((index, self._final(index, ErrorKind.NO_DEVICE,
                                               f"no live device of class {self.device_class} ({reasons})")))

    def _final(self, index: int, kind: ErrorKind, message: str) -> JobResult:
        st = self.states[index]
        result = JobResult(st.job.name, self.device_class, st.digest, error_kind=kind, error=message,
                           attempts=st.attempts, group=st.job.group)
        self.store.add_failure(result, self.phash, final=True)
        return result

    def _throughput(self) -> str:
        """Jobs per second per device, counted from each device's first result."""
        now = time.perf_counter()
        rates = {d.id: (d.done - 1) / max(now - d.first_done, 1e-6) for d in self.devices if d.done > 1}
        if not rates:
            return ""
        if len(rates) <= 4:
            return " ".join(f"{name[:14]}:{rate:.1f}/s" for name, rate in rates.items())
        r = sorted(rates.values())
        return f"{len(r)} devices {r[0]:.1f}..{r[len(r) // 2]:.1f}..{r[-1]:.1f} job/s (min..median..max)"


def _lost(index: int, kind: ErrorKind, message: str) -> dict:
    """The outcome of a job whose batch never came back."""
    return {"index": index, "ok": False, "measurement": None, "error_kind": int(kind), "error": message,
            "attempted": True, "device_s": 0.0}


_GENERATE = None


def _generate_task():
    """The Ray task over :func:`_generate` (built once, lazily: it imports ray)."""
    global _GENERATE
    if _GENERATE is None:
        import ray

        _GENERATE = ray.remote(num_returns=2)(_generate)
    return _GENERATE
